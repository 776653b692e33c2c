"""The active experiment with the settings behind docs/joint.md: ``python experiments/active.py [--quick]``."""

import sys

from bayes_diglm.cli import main

if __name__ == "__main__":
    sys.exit(main(["active", *sys.argv[1:]]))
