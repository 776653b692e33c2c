"""The command line: help for every command, the module entry point, and clean errors."""

import argparse
import re
import subprocess
import sys
from pathlib import Path

import pytest

from bayes_diglm.cli import build_parser, main


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


def test_bad_input_gives_a_message_not_a_traceback(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:  # refused by the option's type, as argparse refuses a bad choice
        main(["synthetic", "--epochs", "0", "--quiet", "--out", str(tmp_path / "x")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "argument --epochs" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


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
