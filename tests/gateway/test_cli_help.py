"""Every ``crowdex`` subcommand and flag says what it does: ``--help`` works at every level
(``crowdex bench --help`` and ``crowdex bench NAME --help`` too), and no option is bare."""

from __future__ import annotations

import argparse
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

from gateway import cli

REPO = Path(__file__).resolve().parents[2]


def _bare(parser: argparse.ArgumentParser, where: str) -> list[str]:
    """Options and subcommands of ``parser`` (and of its subparsers) without help text."""
    bare = []
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        if isinstance(action, argparse._SubParsersAction):
            helped = {choice.dest for choice in action._choices_actions if choice.help}
            for name, sub in action.choices.items():
                if name not in helped:
                    bare.append(f"{where} {name}")
                bare += _bare(sub, f"{where} {name}")
        elif not action.help:
            bare.append(f"{where} {'/'.join(action.option_strings) or action.dest}")
    return bare


def test_every_subcommand_and_flag_of_crowdex_has_help():
    assert _bare(cli.parser(), "crowdex") == []


class _Captured(Exception):
    def __init__(self, parser: argparse.ArgumentParser) -> None:
        self.parser = parser


def _bench_parser(name: str, monkeypatch: pytest.MonkeyPatch) -> argparse.ArgumentParser:
    """The parser ``bench.NAME.main`` builds, caught at its parse_args."""

    def catch(self, *args, **kwargs):
        raise _Captured(self)

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", catch)
    monkeypatch.setattr(argparse.ArgumentParser, "parse_known_args", catch)
    with pytest.raises(_Captured) as caught:
        importlib.import_module(f"bench.{name}").main([])
    return caught.value.parser


@pytest.mark.parametrize("name", cli.BENCHMARKS)
def test_every_benchmark_is_described_and_its_flags_have_help(name, monkeypatch):
    assert cli.BENCHMARK_HELP.get(name), f"crowdex bench --help says nothing of {name}"
    assert _bare(_bench_parser(name, monkeypatch), f"crowdex bench {name}") == []


@pytest.mark.parametrize("args", [["--help"], ["bench", "--help"], ["bench", "gateway", "--help"],
                                  ["serve", "--help"], ["replay", "--help"]])
def test_help_answers_at_every_level(args):
    done = subprocess.run([sys.executable, "-m", "gateway.cli", *args], capture_output=True,
                          text=True, cwd=REPO, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: crowdex"), done.stdout


def test_bench_without_a_name_is_a_usage_error():
    assert cli.bench([]) == 2 and cli.bench(["nope"]) == 2


def test_every_flag_of_crowdex_settle_has_help():
    from settlement import cli as settle_cli

    assert _bare(settle_cli._parser(), "crowdex settle") == []
