"""Flight-delay experiment with the README's settings: ``python experiments/flights.py [--quick] [--out DIR]``."""

import sys

from bayes_diglm.cli import main

if __name__ == "__main__":
    sys.exit(main(["flights", *sys.argv[1:]]))
