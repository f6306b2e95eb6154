"""``crowdex serve`` lifts the soft open-files limit: each client connection holds a descriptor."""

from __future__ import annotations

import resource

import pytest

from gateway import cli


class FakeLimits:
    def __init__(self, soft: int, hard: int, refuse: bool = False) -> None:
        self.limits = (soft, hard)
        self.refuse = refuse

    def getrlimit(self, which: int) -> tuple[int, int]:
        assert which == resource.RLIMIT_NOFILE
        return self.limits

    def setrlimit(self, which: int, limits: tuple[int, int]) -> None:
        assert which == resource.RLIMIT_NOFILE
        if self.refuse:
            raise ValueError("not allowed")
        self.limits = limits


@pytest.mark.parametrize(("soft", "hard", "expected"), [
    (1024, 524_288, (524_288, 524_288)),  # the usual Linux default: lifted to the hard limit
    (20_000, 20_000, (20_000, 20_000)),  # already there
    (1024, resource.RLIM_INFINITY, (cli.OPEN_FILES_UNCAPPED, resource.RLIM_INFINITY)),
])
def test_the_soft_limit_goes_up_to_the_hard_one(monkeypatch, soft, hard, expected) -> None:
    fake = FakeLimits(soft, hard)
    monkeypatch.setattr(resource, "getrlimit", fake.getrlimit)
    monkeypatch.setattr(resource, "setrlimit", fake.setrlimit)
    cli.raise_open_files_limit()
    assert fake.limits == expected


def test_a_limit_that_cannot_be_raised_stays_and_says_so(monkeypatch, capsys) -> None:
    fake = FakeLimits(1024, 4096, refuse=True)
    monkeypatch.setattr(resource, "getrlimit", fake.getrlimit)
    monkeypatch.setattr(resource, "setrlimit", fake.setrlimit)
    cli.raise_open_files_limit()
    assert fake.limits == (1024, 4096)
    assert "the open-files limit stays as it is (not allowed)" in capsys.readouterr().err


def test_the_real_limit_is_lifted() -> None:
    before_soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        cli.raise_open_files_limit()
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        assert soft == (hard if hard != resource.RLIM_INFINITY
                        else max(before_soft, cli.OPEN_FILES_UNCAPPED))
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (before_soft, hard))
