"""``bayes-diglm summarize``: the tables of several runs (seeds) of one experiment as mean +- spread."""

from __future__ import annotations

import json
import re
from pathlib import Path

from ..evaluation.spread import SPREADS, aggregate_tables, format_spread
from .common import json_ready, markdown_table, pivot

__all__ = ["TABLES", "load_runs", "summarize_runs", "register"]

_HYBRID_LAMBDA = re.compile(r"DIGLM hybrid \(lambda=[^)]*\)")


def _flights_rows(metrics: dict) -> list[dict]:
    # lambda is tuned per run on the validation slice: rows are matched by role, the chosen values listed per run
    return [{**r, "model": _HYBRID_LAMBDA.sub("DIGLM hybrid (lambda tuned)", r["model"])} for r in metrics["rows"]]


#: Per experiment (``metrics.json``'s ``experiment``): the tables to summarise, each ``(title, rows of one
#: run's metrics, key columns)``; optionally ``glance`` (which of them to show as AUROCs, a column per
#: combination of the given columns); and the columns of a table of the runs (label: ``metrics.json`` key).
TABLES: dict[str, dict] = {
    "classification": {
        "tables": [
            ("Table 1: test error, NLL, calibration and OOD behaviour per model and head",
             lambda m: m["rows"], ("model", "head")),
            ("Density: log p(x) (nats) per set", lambda m: m["density_rows"], ("model", "set")),
            ("OOD detection: AUROC, AUPR, FPR at 95% TPR per model, score and OOD set",
             lambda m: m["ood_rows"], ("model", "score", "OOD set")),
        ],
        "glance": (2, ("model", "OOD set")),
        "runs": {"pipeline (s)": "seconds"},
    },
    "ood": {
        "tables": [("OOD detection: AUROC, AUPR, FPR at 95% TPR per score and OOD set", lambda m: m["rows"],
                    ("score", "OOD set")),
                   ("Selective prediction on the test set", lambda m: m["selective_rows"], ("score",))],
        "glance": (0, ("OOD set",)),
        "runs": {"test accuracy": "test_accuracy", "pipeline (s)": "seconds"},
    },
    "flights": {
        "tables": [("Test metrics per model (the hybrid's lambda tuned per run on the validation slice)",
                    _flights_rows, ("model",))],
        "runs": {"hybrid lambda chosen": "px_weight_chosen", "pipeline (s)": "seconds"},
    },
}


def load_runs(dirs) -> list[dict]:
    """The ``metrics.json`` of each run folder in ``dirs``, checked to be runs of one experiment and
    configuration with distinct seeds; each gains ``"_dir"`` (its folder)."""
    dirs = [Path(d) for d in ([dirs] if isinstance(dirs, str | Path) else dirs)]
    if not dirs:
        raise ValueError("summarize needs at least one run folder")
    runs = []
    for d in dirs:
        path = d / "metrics.json" if d.is_dir() else d
        if not path.is_file():
            raise FileNotFoundError(f"no metrics.json in {str(d)!r}: pass the folders the runs wrote (--out)")
        runs.append({**json.loads(path.read_text()), "_dir": str(path.parent)})
    for field in ("experiment", "configuration", "dataset", "config"):
        values = {json.dumps({k: v for k, v in r[field].items() if k != "seed"} if isinstance(r.get(field), dict)
                             else r.get(field), sort_keys=True) for r in runs}
        if len(values) > 1:
            raise ValueError(f"the runs differ in {field}: {sorted(values)}; summarize runs of one experiment and "
                             "configuration only")
    experiment = runs[0].get("experiment")
    if experiment not in TABLES:
        raise ValueError(f"cannot summarize experiment {experiment!r}; known: {sorted(TABLES)}")
    seeds = [r.get("seed") for r in runs]
    if len(set(map(str, seeds))) < len(seeds):
        raise ValueError(f"two runs have the same seed (seeds {seeds}): each run must be another seed")
    return runs


def summarize_runs(dirs, out=None, *, spread: str = "sd", digits: int = 3) -> dict:
    """Mean +- spread over the runs in ``dirs`` of every table of their experiment (:data:`TABLES`).

    Parameters
    ----------
    dirs : sequence of path-like
        Folders written by runs of one experiment and configuration with different seeds (each holds the
        run's ``metrics.json``).
    out : path-like, optional
        Folder to write ``summary.md`` and ``summary.json`` into.
    spread : {"sd", "se"}, default "sd"
        Standard deviation over runs (``ddof = 1``) or standard error of the mean.
    digits : int, default 3
        Decimals in the Markdown tables.

    Returns
    -------
    dict
        ``markdown`` (the text of ``summary.md``), ``summary`` (what ``summary.json`` holds: every cell's
        mean, sd, se, min, max, n and per-run values) and ``out``.
    """
    if spread not in SPREADS:
        raise ValueError(f"spread must be one of {SPREADS}, got {spread!r}")
    runs = load_runs(dirs)
    spec = TABLES[runs[0]["experiment"]]
    n = len(runs)
    word = "standard deviation over runs (ddof 1)" if spread == "sd" else "standard error of the mean over runs"
    first = runs[0]
    what = ", ".join(str(first[k]) for k in ("configuration", "dataset") if first.get(k))
    header = (f"{first['experiment']}{f' ({what})' if what else ''}: {n} run{'s' if n > 1 else ''}, seeds "
              f"{', '.join(str(r.get('seed')) for r in runs)}; every cell is mean +- {spread} ({word}); "
              f"a cell with (n=k) was measured in k of the {n} runs.")
    run_rows = [{"seed": r.get("seed"), **{label: r.get(key) for label, key in spec["runs"].items()},
                 "folder": r["_dir"]} for r in runs]
    sections, tables = [header, "Runs:", markdown_table(run_rows, digits=digits)], []
    for title, rows_of, keys in spec["tables"]:
        aggregated = aggregate_tables([rows_of(r) for r in runs], keys)
        tables.append({"title": title, "keys": list(keys), "rows": aggregated})
        sections += [f"{title} (mean +- {spread}, {n} runs)",
                     markdown_table(format_spread(aggregated, spread=spread, digits=digits, runs=n))]
    if "glance" in spec:  # right after the runs: the AUROCs as the experiment prints them, a column per set
        which, columns = spec["glance"]
        shown = format_spread(tables[which]["rows"], spread=spread, digits=digits, runs=n)
        sections[3:3] = [f"OOD detection at a glance: AUROC (mean +- {spread}, {n} runs), a row per score, a column "
                         f"per {' and '.join(columns)}; OOD = positive",
                         markdown_table(pivot(shown, "score", columns, "auroc"))]
    markdown = "\n\n".join(sections)
    summary = {"experiment": first["experiment"], "configuration": first.get("configuration"),
               "dataset": first.get("dataset"), "spread": spread, "runs": run_rows, "tables": tables}
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "summary.md").write_text(markdown + "\n")
        (out / "summary.json").write_text(json.dumps(json_ready(summary), indent=2) + "\n")
    return {"markdown": markdown, "summary": summary, "out": None if out is None else str(out)}


def _cli_run(args) -> int:
    result = summarize_runs(args.runs, args.out, spread=args.spread, digits=args.digits)
    print(result["markdown"])
    if result["out"]:
        print(f"\nwrote {result['out']}/ (summary.md, summary.json)")
    return 0


def register(subparsers) -> None:
    """Add the ``summarize`` subcommand."""
    p = subparsers.add_parser(
        "summarize", help="mean +- spread over runs (seeds) of one experiment, as Markdown and JSON tables",
        description="Read the metrics.json of several runs of one experiment (classify, ood evaluate, flights or "
                    "demo; same configuration, different --seed) and write every table as mean +- standard "
                    "deviation (or standard error) over the runs.")
    p.add_argument("runs", nargs="+", metavar="DIR", help="folders written by the runs (their --out)")
    p.add_argument("--out", default=None, help="folder for summary.md and summary.json (default: print only)")
    p.add_argument("--spread", choices=SPREADS, default="sd",
                   help="sd: standard deviation over runs; se: standard error of the mean (default: sd)")
    p.add_argument("--digits", type=int, default=3, help="decimals in the tables (default: 3)")
    p.set_defaults(func=_cli_run)
