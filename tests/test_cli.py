"""The command line: the demo trains and its loss falls; info reports the machine."""

from __future__ import annotations

import re
import subprocess
import sys


def _run(*args):
    return subprocess.run(
        [sys.executable, "-m", "gpugrad", *args], capture_output=True, text=True, timeout=120
    )


def test_demo_shows_the_seed_example_and_a_falling_loss():
    result = _run("demo", "--steps", "200")
    assert result.returncode == 0, result.stderr
    assert "df/dx = 4, df/dy = 4, df/dz = -2" in result.stdout
    losses = [float(v) for v in re.findall(r"loss (\d+\.\d+)", result.stdout)]
    assert len(losses) == 11 and losses[-1] < losses[0] / 3


def test_info_reports_versions_and_cuda_status():
    result = _run("info")
    assert result.returncode == 0, result.stderr
    assert "gpugrad" in result.stdout and "CUDA:" in result.stdout


def test_version_and_help_list_every_command_in_plain_text():
    import gpugrad as gg

    version = _run("--version")
    assert version.returncode == 0 and version.stdout.strip() == f"gpugrad {gg.__version__}"
    top = _run("--help").stdout
    for command in ("demo", "info", "train", "predict", "check", "bench"):
        assert re.search(rf"^\s+{command}\s+\S", top, re.M), f"{command} missing:\n{top}"
    assert "``" not in top


def test_every_option_of_every_command_has_help():
    import argparse

    from gpugrad.cli import build_parser

    parser = build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    assert set(sub.choices) == {"demo", "info", "train", "predict", "check", "bench"}
    for name, command in sub.choices.items():
        for action in command._actions:
            assert action.help, f"gpugrad {name} {'/'.join(action.option_strings)} has no help"


def test_a_usage_error_is_one_line():
    result = _run("train", "--hidden", "a")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "gpugrad train: argument --hidden: expected sizes like 128,64, got 'a' "
        "(see gpugrad train --help)"
    ]


def test_an_exception_reaching_main_is_reported_as_a_bug(monkeypatch, capsys):
    import gpugrad.cli as cli

    def broken(args):
        raise ZeroDivisionError("deliberately")

    monkeypatch.setattr(cli, "_info", broken)
    assert cli.main(["info"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and "ZeroDivisionError: deliberately" in err
    assert err.strip().splitlines()[-1].startswith("gpugrad ")
    assert "is a bug in gpugrad" in err and "please report it" in err
