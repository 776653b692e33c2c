"""What every experiment shares: its common options, progress lines, ``metrics.json``, a Markdown ``table.md``."""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import platform
import resource
import sys
import time
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from .._validation import check_count, check_seed

__all__ = ["add_common_arguments", "markdown_table", "write_results", "machine_description", "json_ready",
           "summarized_warnings", "StageLog", "pivot", "count_arg", "size_arg", "seed_arg", "weight_arg",
           "fraction_arg", "single_threaded", "peak_rss_mb", "print_summary"]


def _option_type(name: str, parse, check):
    """An argparse ``type=``: ``parse`` the text, then the package's input rule ``check``; either failing is an
    ``ArgumentTypeError``, which argparse prints naming the flag (``argument --max-train: ...``)."""
    def convert(text: str):
        try:
            return check(parse(text))
        except (TypeError, ValueError) as err:
            raise argparse.ArgumentTypeError(f"{text!r} is not {name} ({err})") from None
    convert.__name__ = name.replace(" ", "_")
    return convert


def _at_least(low: float):
    def check(v):
        if not (math.isfinite(v) and v >= low):
            raise ValueError(f"must be >= {low}")
        return v
    return check


#: argparse types of the options that take counts, sizes, seeds and weights: the one input rule of
#: :mod:`bayes_diglm._validation`, checked when the command line is parsed
count_arg = _option_type("a positive integer", int, lambda v: check_count(v, "the value"))
size_arg = _option_type("a non-negative integer", int, lambda v: check_count(v, "the value", minimum=0))
seed_arg = _option_type("a seed", int, check_seed)
weight_arg = _option_type("a non-negative number", float, _at_least(0.0))


def _open_unit(v: float) -> float:
    if not 0.0 < v < 1.0:
        raise ValueError("must lie in (0, 1)")
    return v


fraction_arg = _option_type("a number in (0, 1)", float, _open_unit)


def add_common_arguments(p: argparse.ArgumentParser, out: str) -> None:
    """The options every experiment's subcommand shares: --seed, --out, --quiet."""
    p.add_argument("--seed", type=seed_arg, default=0, help="random seed (default: 0)")
    p.add_argument("--out", default=out, help=f"output folder (default: {out})")
    p.add_argument("--quiet", action="store_true", help="no progress lines or bars")


class StageLog:
    """One line on stderr per stage of a long run, with the seconds since the run began; silent when quiet.

    A run announces each stage as it starts (``log("training the hybrid flow")``), so a log file shows what
    it is doing and how long each stage took, terminal or not. With a tqdm ``bar`` the line also becomes the
    bar's description, is written through ``tqdm.write`` (so it does not break a bar drawn on a terminal), and
    ``update`` / ``close`` reach the bar.

    Every stage's wall seconds (from its line to the next one, or to the end of the ``with`` block) are kept in
    ``stage_seconds``, in order, summed over stages announced with the same text, and the process's CPU
    seconds over the same spans in ``stage_cpu_seconds``: the per-stage profile a run writes into its
    ``metrics.json``. On a shared machine the wall clock also counts the time other processes held the cores;
    for a single-threaded run the CPU seconds are close to what the stage takes on a quiet machine.

    Parameters
    ----------
    label : str
        What runs, the first word of every line (the command's name).
    quiet : bool or None, default None
        True: no lines. None or False: a line per stage (a bar, if any, keeps its own rule).
    bar : tqdm.tqdm, optional
        A progress bar the stages describe.
    stream : file-like, optional
        Where the lines go (default: ``sys.stderr`` at the time of each line).

    Examples
    --------
    >>> import io
    >>> out = io.StringIO()
    >>> log = StageLog("demo", stream=out)
    >>> log("loading data")
    >>> out.getvalue().startswith("demo      0 s  loading data")
    True
    >>> list(log.stage_seconds)
    ['loading data']
    """

    def __init__(self, label: str, *, quiet: bool | None = None, bar=None, stream=None):
        if not isinstance(label, str) or not label:
            raise ValueError(f"label must be a non-empty string, got {label!r}")
        self.label, self.quiet, self.bar, self.stream = label, bool(quiet), bar, stream
        self.started = time.perf_counter()
        self.stage_seconds: dict[str, float] = {}
        self.stage_cpu_seconds: dict[str, float] = {}
        self._current: tuple[str, float, float] | None = None

    def elapsed(self) -> float:
        """Seconds since this log was made."""
        return time.perf_counter() - self.started

    def __call__(self, message: str) -> None:
        """Announce the stage ``message`` (and describe the bar with it); the previous stage ends here."""
        self._end_stage()
        self._current = (message, time.perf_counter(), time.process_time())
        self.stage_seconds.setdefault(message, 0.0)
        self.stage_cpu_seconds.setdefault(message, 0.0)
        if self.bar is not None:
            self.bar.set_description(message)
        if self.quiet:
            return
        line = f"{self.label} {self.elapsed():6.0f} s  {message}"
        stream = self.stream if self.stream is not None else sys.stderr
        if self.bar is not None and not getattr(self.bar, "disable", True):
            from tqdm.auto import tqdm

            tqdm.write(line, file=stream)
        else:
            print(line, file=stream, flush=True)

    def _end_stage(self) -> None:
        if self._current is not None:
            message, began, cpu = self._current
            self.stage_seconds[message] += time.perf_counter() - began
            self.stage_cpu_seconds[message] += time.process_time() - cpu
            self._current = None

    def update(self, n: int = 1) -> None:
        """Advance the bar (if any) by ``n``."""
        if self.bar is not None:
            self.bar.update(n)

    def __enter__(self) -> StageLog:
        return self

    def __exit__(self, *exc) -> None:
        self._end_stage()
        if self.bar is not None:
            self.bar.close()


def _fmt(value, digits: int) -> str:
    if isinstance(value, float | np.floating):
        if not math.isfinite(value):
            return str(value)
        return f"{value:.{digits}f}" if abs(value) < 1e5 else f"{value:.3e}"
    return str(value)


def markdown_table(rows: list[dict], columns: list[str] | None = None, digits: int = 3) -> str:
    """Format a list of dicts as a GitHub Markdown table (columns in first-seen order unless given)."""
    if not rows:
        return ""
    if columns is None:
        columns = list(dict.fromkeys(k for r in rows for k in r))
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    for r in rows:
        lines.append("| " + " | ".join(_fmt(r.get(c, ""), digits) for c in columns) + " |")
    return "\n".join(lines)


def pivot(rows: list[dict], index: str, columns: tuple[str, ...], value: str) -> list[dict]:
    """A row per value of ``index``, a column per combination of ``columns`` (joined by spaces) holding
    ``value`` (blank where a combination was not measured): e.g. the OOD AUROCs at a glance, a row per score
    and a column per model and OOD set."""
    out: dict[str, dict] = {}
    for r in rows:
        out.setdefault(r[index], {index: r[index]})[" ".join(str(r[c]) for c in columns)] = r[value]
    return list(out.values())


def json_ready(obj):
    """Convert NumPy/torch scalars and arrays (recursively) into plain JSON types."""
    if isinstance(obj, dict):
        return {str(k): json_ready(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_ready(v) for v in obj]
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    return obj


@contextlib.contextmanager
def single_threaded(num_threads: int | None = 1):
    """Run torch and BLAS (NumPy / SciPy) with ``num_threads`` threads, restored afterwards; None leaves them
    alone. On a small shared machine extra threads only contend (a Glow step ran 10x slower with a second thread
    on a loaded 2-core machine)."""
    if num_threads is None:
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(int(num_threads))
    try:
        with threadpool_limits(int(num_threads)):
            yield
    finally:
        torch.set_num_threads(old)


def peak_rss_mb() -> float:
    """This process's peak resident memory so far in MiB (Linux reports kilobytes, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024.0 * 1024.0) if sys.platform == "darwin" else peak / 1024.0


def machine_description() -> str:
    import os

    return f"{platform.machine()}, {os.cpu_count()} CPU cores, Python {platform.python_version()}"


def print_summary(result: dict, files: str, *, lines: tuple[str, ...] = ()) -> int:
    """Print what a subcommand's run returned: its Markdown ``table``, any further ``lines``, then where it wrote
    ``files`` (``result["out"]``) and, when ``result`` has ``seconds``, how long it took. Returns 0, the exit
    status of a run that got this far.

    Examples
    --------
    >>> print_summary({"table": "| a |", "out": "results/x", "seconds": 3.2}, "table.md")
    | a |
    <BLANKLINE>
    wrote results/x/ (table.md) in 3 s
    0
    """
    if not isinstance(result, dict) or not {"table", "out"} <= set(result):
        raise ValueError("result must be a dict holding 'table' and 'out'")
    print(result["table"])
    for line in lines:
        print(f"\n{line}")
    took = f" in {result['seconds']:.0f} s" if "seconds" in result else ""
    print(f"\nwrote {result['out']}/ ({files}){took}")
    return 0


def write_results(out_dir: str | Path, metrics: dict, table: str) -> Path:
    """Write ``metrics.json`` and ``table.md`` into ``out_dir`` (created if needed); return the folder."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    metrics = {**metrics, "written": time.strftime("%Y-%m-%d %H:%M:%S"), "machine": machine_description()}
    (out / "metrics.json").write_text(json.dumps(json_ready(metrics), indent=2) + "\n")
    (out / "table.md").write_text(table + "\n")
    return out


@contextlib.contextmanager
def summarized_warnings(label: str, category: type[Warning] = RuntimeWarning, stream=None):
    """Collect the ``category`` warnings raised inside; on exit print one summary of them to ``stream``.

    A long pipeline repeats the same numerical warning (an overflow in one metric, a log of zero) once per
    model and data set, each with its source line; the summary gives each distinct message once, with its
    count and where it came from. Warnings of other categories are shown as usual. Yields the list that the
    distinct messages are appended to, ``{"message", "category", "where", "count"}`` each (for
    ``metrics.json``).
    """
    summary: list[dict] = []
    caught: list = []
    try:
        with warnings.catch_warnings(record=True) as record:
            warnings.simplefilter("always", category)
            try:
                yield summary
            finally:
                caught = list(record)
    finally:
        # After the recording has stopped: inside it, showwarning appends to the record being read.
        _report_warnings(caught, label, category, summary, stream)


def _report_warnings(caught: list, label: str, category: type[Warning], summary: list[dict], stream) -> None:
    for w in caught:
        if not issubclass(w.category, category):
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    mine = [w for w in caught if issubclass(w.category, category)]
    counts = Counter((str(w.message), w.category.__name__, f"{Path(w.filename).name}:{w.lineno}") for w in mine)
    summary.extend({"message": m, "category": c, "where": where, "count": n} for (m, c, where), n in counts.items())
    if summary:
        lines = [f"{label}: {len(mine)} {category.__name__}s, {len(summary)} distinct:"]
        lines += [f"  {d['count']} x {d['category']}: {d['message']} ({d['where']})" for d in summary]
        print("\n".join(lines), file=stream if stream is not None else sys.stderr, flush=True)
