"""The command line: help for every command, the module entry point, and clean errors."""

import subprocess
import sys

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
    assert main(["synthetic", "--epochs", "2", "--quiet", "--out", str(tmp_path / "syn")]) == 0
    assert (tmp_path / "syn" / "metrics.json").is_file()
    assert "| model |" in capsys.readouterr().out


def test_bad_input_gives_a_message_not_a_traceback(tmp_path, capsys):
    assert main(["synthetic", "--epochs", "0", "--quiet", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "error:" in err and "Traceback" not in err


def test_cli_never_uses_a_shell():
    import pathlib

    src = pathlib.Path(__file__).resolve().parents[1] / "bayes_diglm"
    for path in src.rglob("*.py"):
        text = path.read_text()
        assert "shell=True" not in text and "os.system(" not in text, path
