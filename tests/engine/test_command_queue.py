"""The sequencer's command queue behaves as the ``asyncio.Queue`` it replaced.

``engine.sequencer.CommandQueue`` holds the commands between the gateway and the writer task
(the file journal's and a cluster replica's). It is bounded and FIFO; a full queue refuses
``put_nowait`` (the WebSocket's "overloaded") and makes ``put`` wait (HTTP's back-pressure),
the longest waiting producer first; the one consumer waits while it is empty.
"""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.sequencer import CommandQueue

operations = st.lists(st.one_of(st.tuples(st.just("put"), st.integers()),
                                st.tuples(st.just("get"))), max_size=60)


@settings(max_examples=300, deadline=None)
@given(ops=operations, maxsize=st.integers(1, 5))
def test_put_and_get_without_waiting_match_asyncio_queue(ops, maxsize):
    ours, theirs = CommandQueue(maxsize), asyncio.Queue(maxsize)
    for op in ops:
        outcomes = []
        for queue in (ours, theirs):
            try:
                outcomes.append(queue.put_nowait(op[1]) if op[0] == "put"
                                else queue.get_nowait())
            except (asyncio.QueueFull, asyncio.QueueEmpty) as error:
                outcomes.append(type(error))
            outcomes.append((queue.qsize(), queue.empty()))
        assert outcomes[:2] == outcomes[2:]


async def test_the_consumer_waits_for_the_next_item():
    queue = CommandQueue(4)
    getter = asyncio.ensure_future(queue.get())
    await asyncio.sleep(0)
    assert not getter.done()
    queue.put_nowait("a")
    assert await getter == "a"
    queue.put_nowait("b")
    assert await queue.get() == "b"


async def test_producers_wait_while_it_is_full_and_go_in_the_order_they_came():
    queue = CommandQueue(2)
    queue.put_nowait(1)
    queue.put_nowait(2)
    with pytest.raises(asyncio.QueueFull):
        queue.put_nowait(3)
    waiting = [asyncio.ensure_future(queue.put(n)) for n in (3, 4, 5)]
    await asyncio.sleep(0)
    assert not any(p.done() for p in waiting)
    got = []
    while len(got) < 5:
        got.append(await queue.get())
        await asyncio.sleep(0)
    assert got == [1, 2, 3, 4, 5]
    assert all(p.done() for p in waiting)


async def test_a_cancelled_producer_gives_its_room_to_the_next():
    queue = CommandQueue(1)
    queue.put_nowait("first")
    cancelled = asyncio.ensure_future(queue.put("cancelled"))
    after = asyncio.ensure_future(queue.put("after"))
    await asyncio.sleep(0)
    assert queue.get_nowait() == "first"  # room for one: the first waiting producer's
    cancelled.cancel()
    await asyncio.gather(cancelled, return_exceptions=True)
    await asyncio.sleep(0)
    assert after.done()
    assert queue.get_nowait() == "after"
    assert queue.empty()


async def test_it_has_one_consumer():
    queue = CommandQueue(1)
    first = asyncio.ensure_future(queue.get())
    await asyncio.sleep(0)
    with pytest.raises(RuntimeError):
        await queue.get()
    queue.put_nowait("x")
    assert await first == "x"
