"""``crowdex bench instructions``: a mixed journal built once into a directory and replayed
from there (CPU rates), and the count of a callgrind output file (the count itself needs
valgrind, which the suite does not run: minutes a count)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from bench import instructions

SMALL = ["--commands", "3000", "--investors", "60", "--days", "40", "--reps", "2"]


def test_the_journal_is_built_once_and_replays_to_the_writers_state(tmp_path, capsys) -> None:
    data = tmp_path / "mixed"
    assert instructions.main(["--data-dir", str(data), *SMALL]) == 0
    first = capsys.readouterr().out
    written = re.search(r"journal: [\d,]+ entries written .* state (\w+)", first).group(1)
    states = re.findall(r"replay: [\d,]+ commands, [\d,]+ a second of CPU \(state (\w+)\)",
                        first)
    assert states == [written, written]
    assert re.search(r"median: [\d,]+ commands a second of CPU", first)
    assert instructions.main(["--data-dir", str(data), *SMALL]) == 0
    again = capsys.readouterr().out
    assert "journal:" not in again  # replayed from the directory, not written again
    assert re.findall(r"\(state (\w+)\)", again) == [written, written]


def test_callgrind_totals_are_read_from_its_output() -> None:
    text = "version: 1\ncmd: python\nevents: Ir\nsummary: 0\ntotals: 3413472025\n"
    assert instructions.callgrind_totals(text) == {"Ir": 3413472025}
    assert instructions.callgrind_totals("version: 1\nevents: Ir\n") == {}


def test_simulated_misses_are_read_and_weighed_into_cycles() -> None:
    text = ("events: Ir Dr Dw I1mr D1mr D1mw ILmr DLmr DLmw\n"
            "summary: 0\ntotals: 1000 400 200 7 30 20 1 5 4\n")
    events = instructions.callgrind_totals(text)
    assert events == {"Ir": 1000, "Dr": 400, "Dw": 200, "I1mr": 7, "D1mr": 30, "D1mw": 20,
                      "ILmr": 1, "DLmr": 5, "DLmw": 4}
    # 1000 instructions, 57 first-level misses at 10 cycles, 10 last-level ones at 100.
    assert instructions.estimated_cycles(events) == 1000 + 570 + 1000


def test_a_count_without_valgrind_says_what_to_install(monkeypatch, tmp_path) -> None:
    monkeypatch.setattr(instructions.shutil, "which", lambda tool: None)
    with pytest.raises(SystemExit, match="apt-get install valgrind"):
        instructions.count_instructions(tmp_path)


def test_a_count_sums_callgrinds_files_and_keeps_them(monkeypatch, tmp_path) -> None:
    """valgrind stood in for: the count passes the simulation's flags, sums the events of
    every output file (a part per process switched on) and copies them where asked."""
    seen = []

    def valgrind(argv, **kwargs):
        seen.append(argv)
        out = Path(next(a for a in argv if a.startswith("--callgrind-out-file="))
                   .split("=", 1)[1])
        events = "events: Ir I1mr D1mr D1mw ILmr DLmr DLmw\n"
        out.write_text(f"{events}totals: 100 1 2 3 0 1 1\n")
        Path(f"{out}.1").write_text(f"{events}totals: 50 0 1 0 0 0 1\n")
        return subprocess.CompletedProcess(argv, 0, "state abcdef\n", "")

    monkeypatch.setattr(instructions.shutil, "which", lambda tool: f"/usr/bin/{tool}")
    monkeypatch.setattr(instructions.subprocess, "run", valgrind)
    events, state = instructions.count_instructions(tmp_path / "data", "524288,8,64",
                                                    keep=tmp_path / "kept")
    assert state == "abcdef"
    assert events == {"Ir": 150, "I1mr": 1, "D1mr": 3, "D1mw": 3, "ILmr": 0, "DLmr": 1,
                      "DLmw": 2}
    assert {"--cache-sim=yes", "--LL=524288,8,64"} <= set(seen[0])
    assert sorted(p.name for p in (tmp_path / "kept").iterdir()) == ["callgrind.out",
                                                                     "callgrind.out.1"]
