"""The ``bayes-diglm`` command line (also ``python -m bayes_diglm``).

Each subcommand lives beside its pipeline: ``bayes_diglm.experiments.<module>.register(subparsers)`` adds a
parser whose ``func`` default runs it. ``demo`` is the main job's quick configuration.

The experiment modules import torch, Pyro and the data loaders, which takes seconds; ``main`` imports only the
module of the command it runs, so ``bayes-diglm --help`` (the list of commands, from :data:`COMMANDS`) starts
in a fraction of a second. ``tests/test_cli.py`` checks that each one-line help below is the one its module
registers.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from . import __version__

__all__ = ["main", "build_parser", "COMMANDS", "USER_ERRORS", "error_line"]

#: Each command, the module of ``bayes_diglm.experiments`` that registers it, and its one-line help, in the order
#: ``--help`` lists them.
COMMANDS: dict[str, tuple[str, str]] = {
    "flights": ("flights", "flight-delay regression: Bayesian DIGLM vs baselines (the main job)"),
    "classify": ("classification",
                 "Glow DIGLM on MNIST (or Fashion-MNIST): hybrid vs discriminative, Bayesian heads, OOD"),
    "ood": ("ood", "out-of-distribution scores: score inputs against a saved model, or measure every score"),
    "bandit": ("bandits", "Thompson-sampling contextual bandits (wheel, digits, fashion, statlog)"),
    "synthetic": ("synthetic", "hybrid vs discriminative DIGLM on two moons"),
    "scale": ("scale", "streaming 5M rows; distributed training under torchrun"),
    "sample": ("sampling", "class-conditional MNIST samples from a Glow DIGLM's joint model"),
    "semisupervised": ("semisupervised", "semi-supervised Glow DIGLM on MNIST with 100 / 1,000 / all labels"),
    "active": ("active", "active learning on MNIST: BALD vs entropy vs random on a Laplace head"),
    "mixed": ("mixed", "mixed-effects heads against statsmodels on lme4's data sets"),
    "summarize": ("summarize", "mean +- spread over runs (seeds) of one experiment, as Markdown and JSON tables"),
}

DEMO_HELP = ("the main job, quick: US flights 2001 when `make data` has fetched them, otherwise NYC flights 2013 "
             "(installed with the package)")


def _import_command_module(command: str):
    """The experiment module behind ``command``, or None where this checkout does not have it."""
    name = f"{__package__}.experiments.{COMMANDS[command][0]}"
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as err:
        if err.name != name:
            raise
        return None


def build_parser(commands: list[str] | tuple[str, ...] | None = None) -> argparse.ArgumentParser:
    """The argument parser, with the full parsers of ``commands`` (all of them by default).

    Parameters
    ----------
    commands : sequence of str, optional
        Commands whose modules are imported and whose full parsers (options, ``func``) are registered; every
        other command gets a placeholder with its one-line help, enough for ``bayes-diglm --help``. ``None``
        registers every command and ``demo``, ``()`` none (no experiment module is imported).

    Returns
    -------
    argparse.ArgumentParser
    """
    wanted = ("demo", *COMMANDS) if commands is None else tuple(commands)
    unknown = [c for c in wanted if c not in COMMANDS and c != "demo"]
    if unknown:
        raise ValueError(f"unknown commands {unknown}; expected names from {sorted(COMMANDS)} or 'demo'")
    if "demo" in wanted:  # the demo runs the main job's quick configuration: flights, or synthetic without it
        wanted = (*wanted, "flights", "synthetic")
    parser = _OneLineParser(
        prog="bayes-diglm",
        description="Hybrid models with deep invertible features (DIGLM): flows, Bayesian GLM heads, experiments.",
    )
    parser.add_argument("--version", action="version", version=f"bayes-diglm {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = sub.add_parser("demo", help=DEMO_HELP, description="Run the package's main job in its quick configuration.")
    for name, (_, help_text) in COMMANDS.items():
        module = _import_command_module(name) if name in wanted else None
        if module is not None:
            module.register(sub)
        elif name not in wanted:
            sub.add_parser(name, help=help_text, add_help=False)
    if "demo" in wanted:
        from .experiments.common import add_common_arguments

        add_common_arguments(demo, "results/demo")
        main_job = "flights" if "flights" in sub.choices and sub.choices["flights"].get_default("demo") \
            else "synthetic"
        demo.set_defaults(func=lambda args: sub.choices[main_job].get_default("demo")(args), main_job=main_job)
    return parser


class _OneLineParser(argparse.ArgumentParser):
    """argparse's parser whose errors are one line on stderr (``bayes-diglm flights: error: argument --max-train:
    ...``) and exit status 2, like every other failure on user input; ``--help`` shows the usage."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {_one_line(message)}\n")


#: what a failure on user input raises: bad values and files (ValueError, TypeError; CheckpointError and pandas'
#: parser errors are ValueErrors), any OSError on an input or output path (missing, read-only, a file where a folder
#: is needed, a corrupt image), a diverging computation. Anything else is a bug, and keeps its traceback.
USER_ERRORS = (ValueError, TypeError, OSError, FloatingPointError)


def _one_line(message: str) -> str:
    return " ".join(str(message).split())


def error_line(err: BaseException) -> str:
    """The one line that names a user-input failure: an OSError's path and reason, else the error's message."""
    if isinstance(err, OSError) and err.filename is not None and err.strerror:
        where = err.filename if err.filename2 is None else f"{err.filename} -> {err.filename2}"
        return _one_line(f"{where}: {err.strerror}")
    return _one_line(str(err) or type(err).__name__)


def _command_in(argv: list[str]) -> str | None:
    """The command named in ``argv``: its first argument that is not an option (the top level takes no values)."""
    return next((a for a in argv if not a.startswith("-")), None)


def main(argv: list[str] | None = None) -> int:
    """Run ``bayes-diglm`` with ``argv`` (default: ``sys.argv[1:]``); return the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    command = _command_in(argv)
    parser = build_parser([command] if command in COMMANDS or command == "demo" else [])
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except USER_ERRORS as err:
        # Bad input, a missing data set, an unreadable or unsafe file, a diverging loss: a message, not a traceback.
        print(f"bayes-diglm {args.command}: error: {error_line(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"bayes-diglm {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
