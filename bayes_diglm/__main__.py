"""``python -m bayes_diglm``: the command line."""

import sys

from .cli import main

sys.exit(main())
