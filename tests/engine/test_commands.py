"""Commands and entries are plain data the collector does not track (``engine.commands``)."""

from __future__ import annotations

import gc

from engine import commands as c
from engine import offerings_commands as oc


def test_every_command_and_the_entry_are_untracked_structs():
    assert c.Entry.__struct_config__.gc is False
    assert [kind.__name__ for kind in c.ALL_COMMANDS if kind.__struct_config__.gc] == []


def test_a_decoded_entry_is_untracked_even_with_a_listings_terms():
    terms = {"price": 100, "tiers": [{"tier_id": "a", "price": 1}], "min_quantity": 1}
    for command in (c.Deposit(3, 4, "r"), oc.CreateProject("equity", "t", "d", 5, terms)):
        entry = c.decode_entry(c.encode_entry(c.Entry(1, 2, command, "key", "hash")))
        assert entry.command == command
        assert not gc.is_tracked(entry) and not gc.is_tracked(entry.command)
