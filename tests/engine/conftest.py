"""Fixtures shared by the engine's tests: a real NATS JetStream cluster for the cluster tests,
and a process out of file descriptors for the journal's next segment."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from engine.log.natscluster import NatsCluster

NATS_NODES = 3


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsCluster]:
    """A 3-node cluster on loopback from the installed ``nats-server``, one per test module.
    Each test uses its own stream; a test that kills nodes restarts them before it ends."""
    nats_cluster = NatsCluster(Path(tmp_path_factory.mktemp("nats")), NATS_NODES)
    nats_cluster.start()
    try:
        yield nats_cluster
    finally:
        nats_cluster.stop()


@pytest.fixture
def segment_descriptors(monkeypatch: pytest.MonkeyPatch) -> SimpleNamespace:
    """While ``.full`` is set, creating a journal segment fails as a full descriptor table
    makes it fail (EMFILE: a flood of client connections, say); every other open goes on."""
    from engine import journal as journal_module

    real_open = os.open
    state = SimpleNamespace(full=False)

    def open_(path, flags, *args):
        if state.full and str(path).endswith(".log") and flags & os.O_CREAT:
            raise OSError(errno.EMFILE, "Too many open files")
        return real_open(path, flags, *args)

    monkeypatch.setattr(journal_module.os, "open", open_)
    return state
