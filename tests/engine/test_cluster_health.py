"""/healthz leaves "degraded" as soon as a write of this replica is known to be stored: when
its message comes back from the stream, which may be before the append's acknowledgement.
(The real-NATS outage test, tests/engine/test_cluster_engine.py, met that order at load: a
deposit answered 201 and /healthz still said no_quorum.)"""

from __future__ import annotations

from pathlib import Path

from engine import commands as c
from engine.clock import WallClock
from engine.cluster import ClusterEngine
from engine.log.jetstream import StreamBatch
from engine.sequencer import _Pending


async def test_a_message_of_ours_read_back_ends_the_degraded_state(tmp_path: Path) -> None:
    engine = ClusterEngine("nats://127.0.0.1:1", tmp_path, WallClock())  # never connected
    engine.degraded_since, engine.degraded_reason = 1.0, "no_quorum"  # an append had failed
    answered: list[tuple[int, bool]] = []
    command = c.Tick()
    pending = _Pending(command, 0, None, None, None,
                       lambda reply: answered.append((reply.status, engine.degraded)))
    engine._waiting["writer:1"] = [pending]  # appended; its acknowledgement not yet here
    engine._apply_live(StreamBatch(1, 1_700_000_000_000_000, "writer:1",
                                   [c.encode_entry(c.Entry(0, 0, command))]))
    assert answered and answered[0][1] is False  # answered with /healthz already ok
    assert engine.degraded_since is None and engine.degraded_reason is None


async def test_a_message_of_another_replica_leaves_the_degraded_state_as_it_is(
        tmp_path: Path) -> None:
    engine = ClusterEngine("nats://127.0.0.1:1", tmp_path, WallClock())
    engine.degraded_since, engine.degraded_reason = 1.0, "no_quorum"
    engine._apply_live(StreamBatch(1, 1_700_000_000_000_000, "other:1",
                                   [c.encode_entry(c.Entry(0, 0, c.Tick()))]))
    # Another replica's write says the stream stores, not that this replica reaches it.
    assert engine.degraded and engine.degraded_reason == "no_quorum"
