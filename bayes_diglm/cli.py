"""The ``bayes-diglm`` command line (also ``python -m bayes_diglm``).

Each subcommand lives beside its pipeline: ``bayes_diglm.experiments.<module>.register(subparsers)`` adds a
parser whose ``func`` default runs it. ``demo`` is the main job's quick configuration.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from . import __version__
from .experiments.common import add_common_arguments

__all__ = ["main", "build_parser"]

# Modules in bayes_diglm.experiments that register subcommands, in the order --help lists them.
COMMAND_MODULES = ("flights", "classification", "ood", "bandits", "synthetic", "scale", "sampling", "semisupervised",
                   "active", "mixed")


def _registered(sub) -> dict[str, argparse.ArgumentParser]:
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"{__package__}.experiments.{name}")
        except ModuleNotFoundError as err:
            if err.name != f"{__package__}.experiments.{name}":
                raise
            continue
        module.register(sub)
    return sub.choices


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bayes-diglm",
        description="Hybrid models with deep invertible features (DIGLM): flows, Bayesian GLM heads, experiments.",
    )
    parser.add_argument("--version", action="version", version=f"bayes-diglm {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = sub.add_parser("demo", help="the main job, quick, on data shipped with the install",
                          description="Run the package's main job in its quick configuration.")
    add_common_arguments(demo, "results/demo")
    choices = _registered(sub)
    main_job = "flights" if "flights" in choices else "synthetic"
    demo.set_defaults(func=lambda args: choices[main_job].get_default("demo")(args), main_job=main_job)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except (ValueError, TypeError, FileNotFoundError, PermissionError, IsADirectoryError, FloatingPointError) as err:
        # Bad input, a missing data set, an unreadable or unsafe file, a diverging loss: a message, not a traceback.
        print(f"bayes-diglm {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"bayes-diglm {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
