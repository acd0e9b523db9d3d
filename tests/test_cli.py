"""The shared command-line plumbing: every command's --help shows each default once, usage
errors are one line, output checks refuse what would block or fail later."""

from __future__ import annotations

import argparse
import os

import pytest

from bench.jobs import submit
from bench.perf import calibrate
from bench.report import figures, plot
from bench.sweep import args as sweep_args
from pgti_core.cli import ArgumentParser, bounded, check_output_dir, check_output_file
from pgti_core.train import __main__ as train

PARSERS = {
    "bench.run": sweep_args.build_parser,
    "bench.plot": plot.build_parser,
    "bench.figures": figures.build_parser,
    "bench.calibrate": calibrate.build_parser,
    "bench.submit": submit.build_parser,
    "pgti_core.train": train.build_parser,
}


def _help_of(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    formatter = parser._get_formatter()
    return formatter._expand_help(action) if action.help else ""


@pytest.mark.parametrize("command", PARSERS)
def test_every_default_is_shown_once(command):
    parser = PARSERS[command]()
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction) or action.required:
            continue
        text = _help_of(parser, action).lower()
        flag = action.option_strings[0] if action.option_strings else action.dest
        if isinstance(action, argparse._StoreTrueAction):
            assert "default" not in text, (flag, text)  # a flag is off unless given
            continue
        if not action.option_strings and action.default is None:
            continue  # a required positional
        assert text.count("default") == 1, (flag, text)


@pytest.mark.parametrize("command", PARSERS)
def test_help_exits_zero_and_usage_errors_are_one_line(command, capsys):
    parser = PARSERS[command]()
    with pytest.raises(SystemExit) as exc:
        parser.parse_args(["--help"])
    assert exc.value.code == 0 and "usage:" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:
        parser.parse_args(["--no-such-option"])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and len(err.strip().splitlines()) == 1 and "--help" in err


def test_bounded_rejects_out_of_range_and_non_finite():
    parse = bounded(float, 0.5, 2)
    assert parse("1.5") == 1.5
    for bad in ("0.1", "3", "nan", "inf", "-inf", "x"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse(bad)
    assert bounded(int, 1)("123456789") == 123456789


def test_output_checks_create_nothing(tmp_path):
    check_output_file(tmp_path / "a" / "b" / "out.json")
    check_output_dir(tmp_path / "c" / "d")
    assert list(tmp_path.iterdir()) == []
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(ValueError, match="FIFO"):
        check_output_file(tmp_path / "fifo")
    with pytest.raises(ValueError, match="not a directory"):
        check_output_dir(tmp_path / "fifo")


def test_the_one_line_error_folds_a_multi_line_message(capsys):
    parser = ArgumentParser(prog="x")
    with pytest.raises(SystemExit):
        parser.error("first\nsecond")
    assert capsys.readouterr().err == "x: error: first second (see --help)\n"
