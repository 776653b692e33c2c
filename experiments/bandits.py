"""Bandit experiments with the README's settings: ``python experiments/bandits.py wheel`` (or digits, fashion).

``python experiments/bandits.py wheel --protocol riquelme2018`` plays the published setting.
"""

import sys

from bayes_diglm.cli import main

if __name__ == "__main__":
    sys.exit(main(["bandit", *(sys.argv[1:] or ["wheel"])]))
