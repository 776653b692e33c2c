"""The command line: help for every command, the module entry point, and clean errors."""

import argparse
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from bayes_diglm.cli import build_parser, error_line, main


def _commands():
    parser = build_parser()
    action = next(a for a in parser._subparsers._group_actions if a.dest == "command")
    return sorted(action.choices)


def test_help_lists_commands(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for name in _commands():
        assert name in out


@pytest.mark.parametrize("command", _commands())
def test_each_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert "usage: bayes-diglm" in capsys.readouterr().out


def test_no_command_prints_help_and_fails(capsys):
    assert main([]) == 2
    assert "COMMAND" in capsys.readouterr().out


def test_python_dash_m_entry_point():
    result = subprocess.run([sys.executable, "-m", "bayes_diglm", "--version"], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0
    assert "bayes-diglm" in result.stdout


def test_synthetic_command_writes_results(tmp_path, capsys):
    import json

    assert main(["synthetic", "--quick", "--epochs", "2", "--out", str(tmp_path / "syn")]) == 0
    metrics = json.loads((tmp_path / "syn" / "metrics.json").read_text())
    assert (metrics["configuration"], metrics["n_train"], metrics["epochs"]) == ("quick", 500, 2)
    captured = capsys.readouterr()
    assert "| model |" in captured.out
    assert "[1/2] training hybrid" in captured.err and "[2/2] training discriminative" in captured.err


# -- bad input: one line on stderr naming the flag or the path and the problem, exit status 2, no traceback ---------
# One table of bad command lines (options out of range, missing, unreadable or unwritable paths, corrupt images,
# CSV files without a header or that pandas cannot parse, garbage model files), run in-process; each row names what
# its one line must mention.

D = 3


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A saved small model, a good CSV of rows, and the bad files the table below points at."""
    root = tmp_path_factory.mktemp("cli")
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, D)).astype("float32")
    from bayes_diglm import DIGLMRegressor

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
        "zero --epochs": (["synthetic", "--epochs", "0", "--quiet"], "argument --epochs"),
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


def test_cli_never_uses_a_shell():
    import pathlib

    src = pathlib.Path(__file__).resolve().parents[1] / "bayes_diglm"
    for path in src.rglob("*.py"):
        text = path.read_text()
        assert "shell=True" not in text and "os.system(" not in text, path


# -- the lazy command table and the commands the docs name ----------------------------------------------------

ROOT = Path(__file__).resolve().parents[1]
DOC_PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def test_command_table_matches_the_registered_help():
    from bayes_diglm.cli import COMMANDS

    parser = build_parser()
    action = next(a for a in parser._subparsers._group_actions if a.dest == "command")
    registered = {a.dest: a.help for a in action._choices_actions}
    assert {name: help_text for name, (_, help_text) in COMMANDS.items()} == {
        name: registered[name] for name in COMMANDS}


def test_top_level_help_imports_no_torch_pyro_or_experiment():
    code = ("import sys\nfrom bayes_diglm.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'pyro', 'sklearn', 'numpy')"
            " or m.startswith('bayes_diglm.experiments'))\nprint('HEAVY', heavy)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "HEAVY []" in result.stdout, result.stdout[-2000:]
    assert "classify" in result.stdout


def _documented_invocations() -> list[tuple[str, ...]]:
    """Every ``bayes-diglm COMMAND [SUBCOMMAND] [--options]`` the README and the docs pages write."""
    found = set()
    for page in DOC_PAGES:
        for line in page.read_text().splitlines():
            for match in re.finditer(r"bayes-diglm ([a-z][a-z0-9]*)([^`#]*)", line):
                words = [w.strip("[]()") for w in match.group(2).split()]
                options = tuple(sorted({m.group(0) for w in words if (m := re.match(r"--[a-z][a-z-]*", w))}))
                for second in re.split(r"\\?\|", words[0]) if words else [""]:  # `bandit wheel|digits|fashion`
                    found.add((match.group(1), second, options))
    return sorted(found)


@pytest.mark.parametrize("invocation", _documented_invocations(), ids=lambda t: " ".join(filter(None, t[:2])))
def test_every_documented_command_and_option_exists(invocation, capsys):
    command, second, options = invocation
    argv = [command]
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0, f"the docs name `bayes-diglm {command}`, which does not exist"
    parser = build_parser([command])
    sub = parser._subparsers._group_actions[0].choices[command]
    nested = [a for a in sub._actions if isinstance(a, argparse._SubParsersAction)]
    if nested and second in nested[0].choices:
        argv.append(second)
        sub = nested[0].choices[second]
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--help"])
    assert exit_info.value.code == 0
    unknown = [o for o in options if o not in sub._option_string_actions]
    assert not unknown, f"the docs give `bayes-diglm {' '.join(argv)}` options it does not take: {unknown}"
