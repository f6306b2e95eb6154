"""Fixtures shared by the engine's tests: a real NATS JetStream cluster for the cluster tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

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
