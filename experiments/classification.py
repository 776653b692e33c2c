"""MNIST (default) or Fashion-MNIST classification and OOD experiment: ``python experiments/classification.py``.

Default configuration (about 20-30 minutes on 2 CPU cores); pass ``--quick`` for the small one, ``--device cuda``
for the larger GPU configuration, ``--out DIR`` for another folder (the run resumes from ``DIR/checkpoints``).
"""

import sys

from bayes_diglm.cli import main

if __name__ == "__main__":
    sys.exit(main(["classify", *sys.argv[1:]]))
