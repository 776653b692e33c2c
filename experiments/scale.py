"""Streaming at the paper's scale: ``python experiments/scale.py [--rows 5000000]`` (see docs/scale.md).

Distributed training runs under torchrun instead:
``torchrun --standalone --nproc-per-node 2 -m bayes_diglm scale train --distributed``.
"""

import sys

from bayes_diglm.cli import main

if __name__ == "__main__":
    sys.exit(main(["scale", "stream", *sys.argv[1:]]))
