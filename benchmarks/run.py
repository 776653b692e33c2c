"""Run every benchmark (``benchmarks/bench_*.py``), print one table of ratios, write benchmarks/results.json.

Each figure is a ratio of two timings measured side by side in the same run (medians of repeats), so the
shared machine's load changes both alike; each row's name says which side is divided by which.
``--quick`` runs fewer repeats on smaller inputs (a smoke check).

A module's ``run(quick)`` returns (or yields) rows, dicts with ``name``, ``ratio`` and ``detail``, or
``(label, thunk)`` pairs whose thunk returns a row or a list of rows when called. A thunk (or the module
itself) that raises becomes one row named by its label with ratio ``nan`` and the error in the detail, and
the run goes on with the next one: one broken comparison never costs the rest of the table.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import platform
import sys
import time
import traceback
from collections.abc import Iterator
from pathlib import Path

HERE = Path(__file__).resolve().parent

__all__ = ["collect_rows", "format_table", "main"]


def _load(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _error_row(label: str, exc: BaseException) -> dict:
    where = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
    at = f" at {Path(where.filename).name}:{where.lineno}" if where else ""
    return {"name": label, "ratio": math.nan, "detail": f"ERROR {type(exc).__name__}: {exc}{at}"[:300],
            "error": True}


def _rows_of(name: str, module, quick: bool) -> Iterator[dict]:
    """Every row of one module, errors turned into rows (see the module docstring)."""
    try:
        items = iter(module.run(quick=quick))
        while True:
            try:
                item = next(items)
            except StopIteration:
                return
            if isinstance(item, dict):
                yield item
                continue
            label, thunk = item
            t0 = time.perf_counter()
            try:
                result = thunk()
            except Exception as exc:  # noqa: BLE001 - a failing row is reported, the run goes on
                print(f"  {label}: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
                yield _error_row(label, exc)
                continue
            print(f"  {label}: {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
            yield from ([result] if isinstance(result, dict) else result)
    except Exception as exc:  # noqa: BLE001 - the module's own set-up failed
        print(f"  {name}: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        yield _error_row(f"{name} (the module failed before its remaining rows)", exc)


def collect_rows(names: list[str] | None = None, quick: bool = False) -> list[dict]:
    """Run the ``bench_<name>`` modules (all by default) in name order; their rows, errors included."""
    rows = []
    for path in sorted(HERE.glob("bench_*.py")):
        name = path.stem.removeprefix("bench_")
        if names and name not in names:
            continue
        t0 = time.perf_counter()
        print(f"running {path.name} ... (load {os.getloadavg()[0]:.1f})", file=sys.stderr, flush=True)
        try:
            module = _load(path)
        except Exception as exc:  # noqa: BLE001 - e.g. a missing optional library at import
            rows.append({"benchmark": name, **_error_row(f"{name} (import failed)", exc)})
            continue
        for row in _rows_of(name, module, quick):
            rows.append({"benchmark": name, **row})
            print(f"  -> {row['ratio']:.3f}  {row['name']}", file=sys.stderr, flush=True)
        print(f"  done in {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    return rows


def format_table(rows: list[dict]) -> str:
    width = max((len(r["name"]) for r in rows), default=10)
    lines = [f"| {'measurement (A / B)':<{width}} | ratio | detail |", f"|{'-' * (width + 2)}|------:|--------|"]
    lines += [f"| {r['name']:<{width}} | {r['ratio']:.3f} | {r.get('detail', '')} |" for r in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats, smaller inputs")
    parser.add_argument("--only", nargs="*", default=None, help="run only these bench_<name> modules")
    parser.add_argument("--out", default=str(HERE / "results.json"), help="where to write the JSON")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args(argv)
    if args.threads is not None and args.threads < 1:
        parser.error(f"--threads must be a positive integer, got {args.threads}")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    started, load = time.strftime("%Y-%m-%d %H:%M:%S"), os.getloadavg()
    t0 = time.perf_counter()
    rows = collect_rows(args.only, quick=args.quick)
    print("\n" + format_table(rows))
    errors = sum(bool(r.get("error")) for r in rows)
    summary = (f"{len(rows)} rows, {errors} failed, {time.perf_counter() - t0:.0f} s; load average "
               f"{load[0]:.1f} at the start, {os.getloadavg()[0]:.1f} at the end, {os.cpu_count()} cores")
    print(f"\n{summary}")
    Path(args.out).write_text(json.dumps({"machine": f"{platform.machine()}, Python {platform.python_version()}",
                                          "written": started, "quick": args.quick, "summary": summary,
                                          "rows": rows}, indent=2, default=str) + "\n")
    print(f"wrote {args.out}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
