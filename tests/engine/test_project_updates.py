"""An offering's updates (``project:<id>``) reach whoever listens, and a replay builds none.

A subscription changes its offering's figures, so the offering's whole view is published on
its channel when someone listens (``StateMachine.wants``): in the live server, and on a quiet
machine given a listener (a cluster replica applying others' commands); a replay, quiet with
nobody listening, publishes nothing and does not even name the channel.
"""

from __future__ import annotations

from engine import commands as c
from engine import offerings_commands as oc
from engine.machine import StateMachine

START_US = 1_767_225_600_000_000  # 2026-01-01
DEADLINE_US = START_US + 30 * 86_400_000_000
INVESTOR = 4


def _venue() -> tuple[StateMachine, int]:
    """An equity offering (project 1) open, an investor with cash; the next sequence."""
    machine = StateMachine()
    steps = [
        (0, c.Genesis("h", False, START_US, "intl", c.RULES_VERSION)),
        (0, c.CreateAccount("issuer", "issuer", "kis")),
        (0, c.CreateAccount("investor", "inv", "kin", investor_class="institutional")),
        (0, c.Deposit(INVESTOR, 10**9, "d")),
        (3, oc.CreateProject("equity", "p", "x", DEADLINE_US, {
            "price": 100, "min_quantity": 1, "max_quantity": 10_000, "lockup_days": 0})),
        (2, oc.ReviewProject(1, True)),
    ]
    for sequence, (actor, command) in enumerate(steps, start=1):
        if machine.apply(sequence, c.Entry(START_US, actor, command)).status >= 300:
            raise RuntimeError(f"setup step {sequence} refused")
    machine.outbox.clear()
    return machine, len(steps) + 1


def _subscribe(machine: StateMachine, sequence: int) -> list[str]:
    """Subscribe 5 units; the channels published to."""
    reply = machine.apply(sequence, c.Entry(START_US, INVESTOR, oc.Subscribe(1, 5)))
    assert reply.status == 201
    return [channel for channel, _, _ in machine.outbox]


def test_a_subscription_publishes_its_offering_to_a_listener():
    machine, sequence = _venue()
    machine.wants = lambda channel: channel == "project:1"
    assert _subscribe(machine, sequence) == ["project:1"]
    _, view, _ = machine.outbox[0]
    assert view["project_id"] == 1
    assert view == machine.component("offerings").project_view(
        machine.component("offerings").projects[1])


def test_a_quiet_machine_with_a_listener_publishes_too():
    machine, sequence = _venue()
    machine.quiet = True
    machine.wants = lambda channel: channel == "project:1"
    assert _subscribe(machine, sequence) == ["project:1"]


def test_nobody_listening_means_no_update():
    machine, sequence = _venue()
    machine.wants = lambda channel: False
    assert _subscribe(machine, sequence) == []


def test_a_replay_publishes_nothing():
    machine, sequence = _venue()
    machine.quiet = True  # and the default wants: nobody listens to a replay
    assert _subscribe(machine, sequence) == []
