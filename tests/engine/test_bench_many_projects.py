"""``bench/many_projects.py`` (the walks of issue 14 timed at a venue of many projects) runs
at a tiny size, so the script that measured the indexes keeps working."""

from __future__ import annotations

from bench import many_projects


def test_the_script_times_every_operation(capsys):
    many_projects.main(["--projects", "400", "--distributions", "300", "--repeat", "1"])
    out = capsys.readouterr().out
    assert "built 400 projects, 300 distributions" in out
    for name in ("on_time", "recompute_due", "outstanding_principal_fen",
                 "pay_pending_distributions", "project_distributions", "held_total (kept)",
                 "list_projects status=open", "integrity_lists (kept)"):
        assert f"\n{name} " in out, name
