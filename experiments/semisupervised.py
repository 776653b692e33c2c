"""Semi-supervised DIGLM with the settings behind docs/joint.md: ``python experiments/semisupervised.py [--quick]``."""

import sys

from bayes_diglm.cli import main

if __name__ == "__main__":
    sys.exit(main(["semisupervised", *sys.argv[1:]]))
