"""Mixed effects beside statsmodels on lme4's data sets: ``python experiments/mixed.py`` (see docs/mixed.md)."""

import sys

from bayes_diglm.cli import main

if __name__ == "__main__":
    sys.exit(main(["mixed", *sys.argv[1:]]))
