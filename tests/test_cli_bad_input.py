"""The command line's answer to bad user input, run in-process: one line on stderr naming the flag or the path and
the problem, exit status 2, never a traceback.

One table of bad command lines (options out of range, missing, unreadable or unwritable paths, corrupt images,
CSV files without a header or that pandas cannot parse, garbage model files); each row names what its one line
must mention.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pytest

from bayes_diglm import DIGLMRegressor
from bayes_diglm.cli import error_line, main

D = 3


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A saved small model, a good CSV of rows, and the bad files the table below points at."""
    root = tmp_path_factory.mktemp("cli")
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, D)).astype("float32")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = DIGLMRegressor(epochs=1, quiet=True, flow_kwargs={"num_layers": 1, "hidden_dims": (4,)}).fit(
            X, X[:, 0])
    model.save(root / "model.pt")
    (root / "rows.csv").write_text("a,b,c\n" + "\n".join(",".join(f"{v:.3f}" for v in row) for row in X[:5]))
    (root / "no_header.csv").write_text("\n".join(",".join(f"{v:.3f}" for v in row) for row in X[:5]))
    (root / "unparsable.csv").write_text('a,b,c\n1,2,3\n"4,5,6\n')
    (root / "empty.csv").write_text("")
    (root / "garbage.pt").write_bytes(b"not a checkpoint at all")
    images = root / "images"
    images.mkdir()
    (images / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(64))
    truncated = root / "truncated"
    truncated.mkdir()
    from PIL import Image

    Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8)).save(truncated / "cut.png")
    data = (truncated / "cut.png").read_bytes()
    (truncated / "cut.png").write_bytes(data[: len(data) - 30])
    (root / "a_file").write_text("a file where a folder is needed")
    return root


def _bad_lines(root):
    model, rows = str(root / "model.pt"), str(root / "rows.csv")
    score = ["ood", "score", "--model", model, "--input"]
    return {
        "negative --max-train": (["flights", "--max-train", "-5"], "--max-train"),
        "zero --epochs": (["synthetic", "--epochs", "0"], "--epochs"),
        "text --seed": (["ood", "score", "--model", model, "--input", rows, "--seed", "a"], "--seed"),
        "zero --draws": ([*score, rows, "--draws", "0"], "--draws"),
        "missing model": (["ood", "score", "--model", str(root / "nothing.pt"), "--input", rows], "nothing.pt"),
        "garbage model": (["ood", "score", "--model", str(root / "garbage.pt"), "--input", rows], "garbage.pt"),
        "missing input": ([*score, str(root / "nothing.csv")], "nothing.csv"),
        "corrupt png": ([*score, str(root / "images")], "broken.png"),
        "truncated png": ([*score, str(root / "truncated")], "cut.png"),
        "csv without header": ([*score, str(root / "no_header.csv")], "no header row"),
        "csv pandas cannot parse": ([*score, str(root / "unparsable.csv")], "unparsable.csv"),
        "empty csv": ([*score, str(root / "empty.csv")], "empty.csv"),
        "output under a file": ([*score, rows, "--out", str(root / "a_file" / "scores.csv")], "a_file"),
        "output is a folder": ([*score, rows, "--out", str(root / "images")], "images"),
    }


CASES = list(_bad_lines(Path(".")))  # the case names (the paths are filled in per test)


@pytest.mark.parametrize("case", CASES)
def test_bad_command_line_is_one_line_naming_the_flag_or_path(files, case, capsys):
    argv, named = _bad_lines(files)[case]
    try:
        status = main(argv)
    except SystemExit as exit_info:  # argparse's refusal of an option
        status = exit_info.code
    err = capsys.readouterr().err
    assert status == 2, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "error:" in lines[0] and named in lines[0], lines[0]


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_output_folder(files, capsys, tmp_path):
    folder = tmp_path / "read_only"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        status = main(["ood", "score", "--model", str(files / "model.pt"), "--input", str(files / "rows.csv"),
                       "--out", str(folder / "scores.csv")])
    finally:
        folder.chmod(0o700)
    err = capsys.readouterr().err
    assert status == 2 and "read_only" in err and len(err.strip().splitlines()) == 1


def test_the_good_command_line_still_works(files, capsys, tmp_path):
    out = tmp_path / "scores.csv"
    assert main(["ood", "score", "--model", str(files / "model.pt"), "--input", str(files / "rows.csv"),
                 "--out", str(out)]) == 0
    assert out.read_text().count("\n") == 6  # header and five rows


def test_error_line_names_both_paths_of_an_oserror():
    err = OSError(18, "Invalid cross-device link", "/a/b", None, "/c/d")
    assert error_line(err) == "/a/b -> /c/d: Invalid cross-device link"
    assert error_line(ValueError("two\nlines")) == "two lines"
