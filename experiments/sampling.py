"""The sampling experiment with the settings behind docs/joint.md: ``python experiments/sampling.py [--quick]``."""

import sys

from bayes_diglm.cli import main

if __name__ == "__main__":
    sys.exit(main(["sample", *sys.argv[1:]]))
