# Quick start: `make demo` (set up + main job) and `make test` (set up + tests). Both work from a clean clone.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
SYSSTAMP := $(VENV)/.system-packages
FASHION_DIR := /usr/share/datasets/fashion-mnist

.PHONY: setup demo test test-all bench lint clean system-packages

$(STAMP): setup.py pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

# Debian's Fashion-MNIST package for the image tests and experiment: installed when we run as root with apt,
# otherwise the tests that need it skip with a reason.
$(SYSSTAMP): | $(STAMP)
	@if [ -d $(FASHION_DIR) ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null) \
		|| echo "warning: could not install dataset-fashion-mnist; image tests will skip"; \
	else echo "note: not root or no apt-get: dataset-fashion-mnist not installed; image tests will skip"; fi
	touch $(SYSSTAMP)

system-packages: $(SYSSTAMP)

demo: $(STAMP)
	$(VENV)/bin/bayes-diglm demo

test: $(STAMP) $(SYSSTAMP)
	$(PY) -m pytest -q

test-all: $(STAMP) $(SYSSTAMP)
	$(PY) -m pytest -q -m ''

BENCHSTAMP := $(VENV)/.installed-bench

$(BENCHSTAMP): $(STAMP)
	$(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev,bench]'
	touch $(BENCHSTAMP)

# One torch thread: on a shared 2-core machine a second thread mostly adds contention (benchmarks/README.md).
bench: $(BENCHSTAMP)
	$(PY) benchmarks/run.py --threads 1

lint: $(STAMP)
	$(PY) -m ruff check .

clean:
	rm -rf $(VENV) results .pytest_cache .ruff_cache
