"""Mutation fuzzing of the loaders that read bytes a user may have received (used by the tests and ``make fuzz``).

A *target* turns a file into a result or raises. The fuzzer starts from valid files (seeds), applies seeded
random mutations (bit flips, byte overwrites, truncation, insertion, deletion, duplicated blocks, 32-bit size
fields set to extreme values) and checks that every mutated file gives either a result or one of the named
errors a loader documents, whose message names the file. Anything else (a raw ``IndexError``, ``KeyError``,
``TypeError``, ``struct.error``, a ``MemoryError`` from a size the file declared, an error that does not say
which file) is a finding.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

__all__ = ["Finding", "FuzzReport", "FuzzTarget", "fuzz", "mutate", "mutate_json", "mutate_tree"]

#: 32-bit values that break size fields: zero, one, huge, sign bit, all ones
_EXTREME_U32 = (0, 1, 2**31, 2**31 - 1, 2**32 - 1, 2**24, 65535)


def mutate(data: bytes, rng: np.random.Generator, max_ops: int = 4) -> bytes:
    """Return a mutated copy of ``data``: between 1 and ``max_ops`` random edits."""
    buf = bytearray(data)
    for _ in range(int(rng.integers(1, max_ops + 1))):
        op = int(rng.integers(0, 8))
        n = len(buf)
        if op == 0 and n:  # flip one bit
            i = int(rng.integers(0, n))
            buf[i] ^= 1 << int(rng.integers(0, 8))
        elif op == 1 and n:  # overwrite a run of bytes with random ones
            i = int(rng.integers(0, n))
            k = int(rng.integers(1, 9))
            buf[i:i + k] = rng.integers(0, 256, min(k, n - i), dtype=np.uint8).tobytes()
        elif op == 2 and n:  # truncate
            del buf[int(rng.integers(0, n)):]
        elif op == 3:  # insert random bytes
            i = int(rng.integers(0, n + 1))
            buf[i:i] = rng.integers(0, 256, int(rng.integers(1, 17)), dtype=np.uint8).tobytes()
        elif op == 4 and n:  # delete a run
            i = int(rng.integers(0, n))
            del buf[i:i + int(rng.integers(1, 33))]
        elif op == 5 and n >= 4:  # a 32-bit field (size, count, offset) set to an extreme value
            i = int(rng.integers(0, n - 3))
            value = _EXTREME_U32[int(rng.integers(0, len(_EXTREME_U32)))]
            buf[i:i + 4] = value.to_bytes(4, "big" if rng.random() < 0.5 else "little")
        elif op == 6 and n:  # duplicate a block
            i = int(rng.integers(0, n))
            block = buf[i:i + int(rng.integers(1, 65))]
            j = int(rng.integers(0, n + 1))
            buf[j:j] = block
        elif op == 7 and n:  # set a byte to a boundary value
            buf[int(rng.integers(0, n))] = int(rng.choice([0x00, 0x7F, 0x80, 0xFF]))
    return bytes(buf)


_ODD_VALUES = (-0.1, 1.5, 0.5001, 1e308, -1e308, "0.5", None, True, [], {}, 2**70, float("nan"), float("inf"))


def mutate_json(data: bytes, rng: np.random.Generator) -> bytes:
    """Half the time :func:`mutate`; otherwise a structural edit of a JSON document's values.

    Edits: a list element replaced by an odd value (out of range, wrong type, NaN, huge), elements deleted or
    appended, a key renamed, the document wrapped in a list.
    """
    if rng.random() < 0.5:
        return mutate(data, rng)
    try:
        doc = json.loads(data)
    except ValueError:
        return mutate(data, rng)
    lists = [v for v in (doc.values() if isinstance(doc, dict) else [doc]) if isinstance(v, list) and v]
    op = int(rng.integers(0, 5))
    if op <= 1 and lists:
        values = lists[int(rng.integers(0, len(lists)))]
        for _ in range(int(rng.integers(1, 4))):
            values[int(rng.integers(0, len(values)))] = _ODD_VALUES[int(rng.integers(0, len(_ODD_VALUES)))]
    elif op == 2 and lists:
        values = lists[0]
        i = int(rng.integers(0, len(values)))
        del values[i:i + int(rng.integers(1, 800))]
    elif op == 3 and lists:
        lists[0].extend([0.0] * int(rng.integers(1, 800)))
    elif isinstance(doc, dict) and doc:
        key = next(iter(doc))
        doc[key + "x"] = doc.pop(key)
    else:
        doc = [doc]
    return json.dumps(doc).encode()


#: what an edited field becomes: wrong types, out-of-range and non-finite numbers, sizes that would allocate or build
#: far more than the file holds
_ODD_FIELDS = (None, "x", -1, 0, 10**6, 10**7, 2**63, -1e300, 1e30, float("nan"), float("inf"), [], {}, True,
               [10**7], "float16", "bayes_diglm.__main__:main")


def _leaves(tree, path=()):
    """Every (path, value) of a checkpoint tree: dict keys and list positions down to tensors and scalars."""
    yield path, tree
    if isinstance(tree, dict):
        for k, v in tree.items():
            yield from _leaves(v, (*path, k))
    elif isinstance(tree, list | tuple):
        for i, v in enumerate(tree):
            yield from _leaves(v, (*path, i))


def _edited_tensor(t: torch.Tensor, rng: np.random.Generator):
    op = int(rng.integers(0, 6))
    if op == 0 and t.is_floating_point() and t.numel():
        return t.clone().fill_(float("nan"))
    if op == 1 and t.is_floating_point() and t.numel():
        flat = t.clone().reshape(-1)
        flat[int(rng.integers(0, flat.numel()))] = float(rng.choice([1e30, -1e30, 3e38]))
        return flat.reshape(t.shape)
    if op == 2 and t.is_floating_point():
        return t.to(torch.float16)
    if op == 3 and t.dim() and t.shape[0] > 1:
        return t[:-1].clone()
    if op == 4:
        return torch.zeros((*t.shape, 2), dtype=t.dtype)
    return t.clone() * float(rng.choice([2.0, -1.0, 0.5]))


def mutate_tree(tree, rng: np.random.Generator, max_ops: int = 3):
    """Return an edited copy of a checkpoint's content (dicts, lists, tensors, numbers, strings): between 1 and
    ``max_ops`` edits at random fields: a value replaced by an odd one (wrong type, NaN, 1e30, 10**7, a module
    path ...), a key deleted, a tensor filled with NaN, given an overflowing entry, cast to float16, cut short or
    reshaped. The caller re-saves it (re-checksummed, re-signed) to test what a loader makes of a file edited by
    someone who can recompute its checksum."""
    import copy

    tree = copy.deepcopy(tree)
    for _ in range(int(rng.integers(1, max_ops + 1))):
        fields = [(p, v) for p, v in _leaves(tree) if p]
        if not fields:
            break
        path, value = fields[int(rng.integers(0, len(fields)))]
        parent = tree
        for part in path[:-1]:
            parent = parent[part]
        last = path[-1]
        if isinstance(parent, tuple):
            continue
        if isinstance(value, torch.Tensor):
            parent[last] = _edited_tensor(value, rng)
        elif isinstance(parent, dict) and rng.random() < 0.25:
            del parent[last]
        else:
            parent[last] = _ODD_FIELDS[int(rng.integers(0, len(_ODD_FIELDS)))]
    return tree


@dataclass
class FuzzTarget:
    """A loader under test.

    ``load(path)`` reads the file; ``allowed`` are the exception types it may raise for a bad file; ``seeds``
    are valid files' bytes; ``check(result)`` (optional) validates a successful result and raises
    ``AssertionError`` when it is wrong; ``suffix`` is the file name's ending (some loaders dispatch on it).
    """

    name: str
    load: Callable[[Path], object]
    seeds: Sequence[bytes]
    allowed: tuple[type[BaseException], ...] = (ValueError,)
    check: Callable[[object], None] | None = None
    suffix: str = ".bin"
    #: ``mutator(data, rng) -> bytes``; default :func:`mutate` (byte-level). Structure-aware mutators (a JSON
    #: value of the wrong type, a number out of range) reach past a format's parser.
    mutator: Callable[[bytes, np.random.Generator], bytes] | None = None
    #: whether the seeds must load and pass ``check`` first (False for a target whose every input must be refused)
    check_seeds: bool = True


@dataclass
class Finding:
    target: str
    iteration: int
    error: str
    data: bytes = field(repr=False)


@dataclass
class FuzzReport:
    target: str
    inputs: int = 0
    ok: int = 0
    refused: int = 0
    seconds: float = 0.0
    slowest_s: float = 0.0
    findings: list[Finding] = field(default_factory=list)

    def summary(self) -> str:
        return (f"{self.target}: {self.inputs} inputs in {self.seconds:.1f} s ({self.ok} loaded, {self.refused} "
                f"refused with a named error, {len(self.findings)} findings; slowest {self.slowest_s * 1e3:.0f} ms)")


def fuzz(target: FuzzTarget, iterations: int, *, seed: int = 0, time_limit_s: float | None = None,
         slow_s: float = 10.0) -> FuzzReport:
    """Run ``iterations`` mutated inputs (or until ``time_limit_s``) against ``target``.

    An input is a finding when the loader raises something outside ``target.allowed``, raises an allowed error
    whose message does not name the file, returns a result that ``target.check`` rejects, or takes longer than
    ``slow_s`` seconds (a hang in the making).
    """
    if not target.seeds:
        raise ValueError(f"target {target.name!r} has no seed files")
    rng = np.random.default_rng(seed)
    report = FuzzReport(target.name)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"input{target.suffix}"
        for k, seed_bytes in enumerate(target.seeds if target.check_seeds else ()):  # else only error paths
            path.write_bytes(seed_bytes)
            problem = _run_one(target, path)
            if problem is not None:
                raise ValueError(f"seed {k} of target {target.name!r} does not load cleanly: {problem}")
        for i in range(iterations):
            if time_limit_s is not None and time.perf_counter() - start > time_limit_s:
                break
            base = target.seeds[int(rng.integers(0, len(target.seeds)))]
            data = (target.mutator or mutate)(base, rng)
            path.write_bytes(data)
            t0 = time.perf_counter()
            problem = _run_one(target, path)
            elapsed = time.perf_counter() - t0
            report.slowest_s = max(report.slowest_s, elapsed)
            report.inputs += 1
            if problem is None and elapsed > slow_s:
                problem = f"took {elapsed:.1f} s"
            if problem == "refused":
                report.refused += 1
            elif problem is None:
                report.ok += 1
            else:
                report.findings.append(Finding(target.name, i, problem, data))
            os.utime(path)  # loaders that cache by mtime must not see a stale file
    report.seconds = time.perf_counter() - start
    return report


def _run_one(target: FuzzTarget, path: Path) -> str | None:
    try:
        result = target.load(path)
    except target.allowed as err:
        if path.name not in str(err):
            return f"{type(err).__name__} that does not name the file: {err}"
        return "refused"
    except Exception as err:  # noqa: BLE001 - anything else is what the fuzzer looks for
        return f"{type(err).__module__}.{type(err).__name__}: {str(err)[:300]}"
    if target.check is not None:
        try:
            target.check(result)
        except AssertionError as err:
            return f"wrong result: {err}"
    return None
