"""Order views are ``engine.lifecycle.OrderView`` structs, built once per reply: they must
encode to exactly the bytes of the dict they replaced (API.md's order object, its keys in the
API's order), in JSON and msgpack, and read and compare like that dict."""

from __future__ import annotations

from collections.abc import Mapping

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.lifecycle import OrderView
from engine.machine import Reply

API_KEYS = ("order_id", "client_order_id", "instrument_id", "side", "type", "price",
            "quantity", "time_in_force", "post_only", "status", "filled_quantity",
            "remaining_quantity", "fills", "created")

fills = st.lists(st.fixed_dictionaries({
    "trade_id": st.integers(1, 2**53), "price": st.integers(1, 2**40),
    "quantity": st.integers(1, 2**40)}), max_size=3)
views = st.tuples(
    st.integers(1, 2**53), st.one_of(st.none(), st.text(max_size=8)), st.integers(1, 2**31),
    st.sampled_from(["buy", "sell"]), st.sampled_from(["limit", "market"]),
    st.one_of(st.none(), st.integers(1, 2**40)), st.integers(1, 2**40),
    st.sampled_from(["gtc", "ioc", "fok"]), st.booleans(),
    st.sampled_from(["open", "partially_filled", "filled", "cancelled"]),
    st.integers(0, 2**40), st.integers(0, 2**40), fills,
    st.sampled_from(["2026-01-01T00:00:00Z", "2026-01-01T00:00:00.000001Z"]))


def _as_dict(values: tuple) -> dict:
    """The dict ``Lifecycle._built`` built before the struct, key for key."""
    return dict(zip(API_KEYS, values, strict=True))


def test_the_struct_has_the_api_keys_in_order():
    assert OrderView.__struct_fields__ == API_KEYS


@given(values=views)
def test_a_view_encodes_to_the_bytes_of_its_dict(values):
    view, plain = OrderView(*values), _as_dict(values)
    assert msgspec.json.encode(view) == msgspec.json.encode(plain)
    assert msgspec.msgpack.encode(view) == msgspec.msgpack.encode(plain)
    # A remembered reply (an Idempotency-Key's) is in the snapshot and the state hash.
    assert msgspec.msgpack.encode(Reply(201, view)) == msgspec.msgpack.encode(Reply(201, plain))


@given(values=views, other=views)
def test_a_view_reads_and_compares_like_its_dict(values, other):
    view, plain = OrderView(*values), _as_dict(values)
    assert view == plain and plain == view and not view != plain
    assert (view == OrderView(*other)) == (plain == _as_dict(other))
    assert (view != _as_dict(other)) == (plain != _as_dict(other))
    assert dict(view) == plain and {**view} == plain
    assert list(view) == list(plain) and len(view) == len(plain)
    assert list(view.items()) == list(plain.items())
    assert list(view.values()) == list(plain.values())
    assert all(view[key] == plain[key] and key in view for key in API_KEYS)
    assert view.get("nothing", 5) == 5 and "nothing" not in view
    assert isinstance(view, Mapping)
    assert Reply(201, view) == Reply(201, plain)


def test_an_unknown_key_is_a_key_error_and_a_view_is_not_hashable():
    view = OrderView(*(1, None, 1, "buy", "limit", 5, 1, "gtc", False, "open", 0, 1, [], "t"))
    with pytest.raises(KeyError):
        view["nothing"]
    with pytest.raises(KeyError):
        view["nothing"] = 1
    view["status"] = "filled"
    assert view.status == "filled"
    with pytest.raises(TypeError):
        hash(view)
