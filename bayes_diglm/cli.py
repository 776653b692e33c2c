"""The ``bayes-diglm`` command line (also ``python -m bayes_diglm``)."""

from __future__ import annotations

import argparse
import sys

from . import __version__

__all__ = ["main", "build_parser"]


def _cmd_synthetic(args) -> int:
    from .experiments.synthetic import run_synthetic

    result = run_synthetic(args.out, epochs=args.epochs, seed=args.seed, quiet=args.quiet or None)
    print(result["table"])
    print(f"\nwrote {result['out']}/ (metrics.json, table.md)")
    return 0


def _cmd_demo(args) -> int:
    return _cmd_synthetic(args)


def _add_common(p: argparse.ArgumentParser, out: str) -> None:
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument("--out", default=out, help=f"output folder (default: {out})")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bayes-diglm",
        description="Hybrid models with deep invertible features (DIGLM): flows, Bayesian GLM heads, experiments.",
    )
    parser.add_argument("--version", action="version", version=f"bayes-diglm {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("demo", help="the main job on embedded data (quick)",
                       description="Run the package's main job quickly on data shipped with the install.")
    _add_common(p, "results/synthetic")
    p.add_argument("--epochs", type=int, default=40, help="training epochs (default: 40)")
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser("synthetic", help="hybrid vs discriminative DIGLM on two moons",
                       description="Train hybrid and discriminative DIGLMs on a 2-D synthetic set.")
    _add_common(p, "results/synthetic")
    p.add_argument("--epochs", type=int, default=40, help="training epochs (default: 40)")
    p.set_defaults(func=_cmd_synthetic)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    return args.func(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
