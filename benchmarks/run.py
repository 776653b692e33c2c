"""Run every benchmark (``benchmarks/bench_*.py``), print one table of ratios, write benchmarks/results.json.

Each figure is a ratio of two timings measured side by side in the same run (medians of repeats), so the
shared machine's load changes both alike. ``--quick`` runs fewer repeats on smaller inputs (a smoke check).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _load(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats, smaller inputs")
    parser.add_argument("--only", nargs="*", default=None, help="run only these bench_<name> modules")
    parser.add_argument("--out", default=str(HERE / "results.json"), help="where to write the JSON")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    rows = []
    for path in sorted(HERE.glob("bench_*.py")):
        name = path.stem.removeprefix("bench_")
        if args.only and name not in args.only:
            continue
        t0 = time.perf_counter()
        print(f"running {path.name} ...", file=sys.stderr, flush=True)
        for row in _load(path).run(quick=args.quick):
            rows.append({"benchmark": name, **row})
        print(f"  done in {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    width = max((len(r["name"]) for r in rows), default=10)
    print(f"\n| {'measurement':<{width}} | ratio | detail |\n|{'-' * (width + 2)}|------:|--------|")
    for r in rows:
        print(f"| {r['name']:<{width}} | {r['ratio']:.3f} | {r.get('detail', '')} |")
    Path(args.out).write_text(json.dumps({"machine": f"{platform.machine()}, Python {platform.python_version()}",
                                          "written": time.strftime("%Y-%m-%d %H:%M:%S"), "quick": args.quick,
                                          "rows": rows}, indent=2) + "\n")
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
