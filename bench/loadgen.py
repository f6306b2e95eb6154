"""Load generation on loopback for ``crowdex bench gateway``: worker processes, each an event
loop sending requests over HTTP keep-alive or pipelined over one WebSocket, open loop at a fixed
offered rate or closed loop at saturation, recording per-request latency.

Workers are separate processes so the load client does not share the server's interpreter.
Each worker returns its latencies (microseconds) and counts; the parent merges them.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import multiprocessing as mp
import queue
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import msgspec
import numpy as np

from bench import wsclient

# WebSocket messages in flight per load process at saturation. Each acknowledgement waits for
# an fsync (milliseconds), so the window must cover throughput x latency: with 256, a window
# of round trips, not the server, was the limit (at ~4 ms fsyncs, 256 / 8 ms = 32k/s).
PIPELINE_WINDOW = 1024
GC_YOUNG_THRESHOLD = 50_000
HTTP_CONNECTIONS = 96  # keep-alive connections per worker at saturation


@dataclass(frozen=True, slots=True)
class LoadSpec:
    url: str  # base URL
    mode: str  # "http" or "ws"
    path: str  # HTTP path (POST) or WebSocket path
    seconds: float
    rate: float | None  # offered requests/s for this worker; None = saturation
    api_keys: tuple[str, ...]  # one per connection, cycled
    body_kind: str  # "order" or "echo"
    instrument_id: int = 0
    price: int = 0
    window: int = PIPELINE_WINDOW  # WebSocket messages in flight at saturation
    # More servers of one venue (cluster replicas) sharing the WebSocket load with ``url``:
    # connections pair up, each pair on the next server, so each gets buyers and sellers.
    spread: tuple[str, ...] = ()


@dataclass(slots=True)
class LoadResult:
    sent: int
    ok: int
    errors: int
    seconds: float
    latencies_us: np.ndarray
    error_codes: dict[str, int]
    # At a fixed rate: how late each request left this client after it was due. A latency
    # counts from the due time, so a client that falls behind (descheduled, busy reading
    # replies) charges its own delay to the server: a row whose send lateness is as large as
    # its tail measured the client, not the server.
    send_late_us: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    # The load processes' own CPU seconds over the run: on a shared machine, what the client
    # takes from the cores the server it measures runs on.
    cpu_seconds: float = 0.0


def _bodies(spec: LoadSpec, worker: int) -> Callable[[int], dict]:
    def order(n: int) -> dict:
        # Request n goes out with key n % keys (an even number of keys): odd keys buy, even
        # keys sell, all at one price, so every buy crosses another account's resting sell
        # and the book stays shallow.
        side = "buy" if n % 2 else "sell"
        return {"instrument_id": spec.instrument_id, "side": side,
                "type": "limit", "price": spec.price, "quantity": 1,
                "client_order_id": f"w{worker}-{n}"}

    def echo(n: int) -> dict:
        return {"instrument_id": 1, "side": "buy", "type": "limit", "price": 100,
                "quantity": 1, "client_order_id": f"w{worker}-{n}"}

    return order if spec.body_kind == "order" else echo


class _Schedule:
    """An open loop's clock: request n is due at start + n / rate, and its latency counts from
    then, not from when it was sent (no coordinated omission)."""

    def __init__(self, spec: LoadSpec) -> None:
        self.start_ns = time.perf_counter_ns()
        self.interval_ns = round(1e9 / spec.rate)
        self.deadline_ns = self.start_ns + round(spec.seconds * 1e9)

    async def wait(self, n: int) -> int | None:
        """Sleep until request n is due and return that time (ns), or None past the run."""
        due = self.start_ns + n * self.interval_ns
        if due >= self.deadline_ns:
            return None
        wait = due - time.perf_counter_ns()
        if wait > 0:
            await asyncio.sleep(wait / 1e9)
        return due


async def _http(spec: LoadSpec, worker: int) -> LoadResult:
    make = _bodies(spec, worker)
    latencies: list[int] = []
    late: list[int] = []  # a paced run's send lateness (LoadResult.send_late_us)
    codes: Counter = Counter()
    counter = itertools.count()
    errors = 0
    # An open loop needs a connection free whenever a request is due: at a few ms a reply,
    # a connection per 200 orders/s offered (never fewer than at saturation).
    connections = HTTP_CONNECTIONS if spec.rate is None else max(HTTP_CONNECTIONS,
                                                                 int(spec.rate) // 200)
    connector = aiohttp.TCPConnector(limit=connections)
    deadline = time.perf_counter() + spec.seconds
    async with aiohttp.ClientSession(connector=connector) as session:
        async def one(n: int, key: str, due_ns: int | None = None) -> None:
            nonlocal errors
            started = time.perf_counter_ns() if due_ns is None else due_ns
            if due_ns is not None:
                late.append((time.perf_counter_ns() - due_ns) // 1000)
            async with session.post(spec.url + spec.path, data=msgspec.json.encode(make(n)),
                                    headers={"Authorization": f"Bearer {key}",
                                             "Content-Type": "application/json"}) as response:
                raw = await response.read()
                if response.status >= 400:
                    errors += 1
                    codes[_error_code(raw)] += 1
            latencies.append((time.perf_counter_ns() - started) // 1000)

        async def closed_loop() -> None:
            while time.perf_counter() < deadline:
                n = next(counter)
                await one(n, spec.api_keys[n % len(spec.api_keys)])

        started = time.perf_counter()
        schedule = _Schedule(spec) if spec.rate is not None else None

        async def paced_loop() -> None:
            # Whichever connection is free sends the next request; a slow reply that holds a
            # connection up is charged to the requests it delays.
            while (due := await schedule.wait(n := next(counter))) is not None:
                await one(n, spec.api_keys[n % len(spec.api_keys)], due)

        await asyncio.gather(*((closed_loop() if spec.rate is None else paced_loop())
                               for _ in range(connections)))
        elapsed = time.perf_counter() - started
    sent = next(counter) if spec.rate is None else len(latencies)
    return LoadResult(sent, len(latencies) - errors, errors, elapsed,
                      np.array(latencies, dtype=np.int64), dict(codes),
                      np.array(late, dtype=np.int64))


class _Reply(msgspec.Struct):
    """What the load client reads of a reply; the rest of it is skipped unparsed. Any type
    for each: a reply of an unexpected shape still settles its request (and frees its window
    slot) rather than failing to decode."""
    request_id: Any = None
    type: Any = None
    code: Any = None


async def _ws(spec: LoadSpec, worker: int) -> LoadResult:
    """One pipelined connection per API key; request n goes on connection n % keys."""
    make = _bodies(spec, worker)
    latencies: list[int] = []
    late: list[int] = []  # a paced run's send lateness (LoadResult.send_late_us)
    codes: Counter = Counter()
    pending: dict[int, int] = {}
    errors = 0
    sent = 0
    deadline = time.perf_counter() + spec.seconds
    bases = (spec.url, *spec.spread)
    urls = [bases[i // 2 % len(bases)].replace("http", "ws", 1) + spec.path
            for i in range(len(spec.api_keys))]
    window = asyncio.Semaphore(spec.window if spec.rate is None else 1_000_000)
    decode = msgspec.json.Decoder(_Reply).decode
    encode = msgspec.json.Encoder().encode
    clock = time.perf_counter_ns

    def received(raw: bytes) -> None:
        nonlocal errors
        try:
            reply = decode(raw)
        except msgspec.DecodeError:
            return  # not one of ours (no request_id of ours to match)
        started = pending.pop(reply.request_id, None) if type(reply.request_id) is int else None
        if started is None:
            return
        latencies.append((clock() - started) // 1000)
        if reply.type == "error":
            errors += 1
            codes[str(reply.code or "?")] += 1
        window.release()

    sockets = [await wsclient.connect(url, {"Authorization": f"Bearer {key}"}, received)
               for url, key in zip(urls, spec.api_keys, strict=True)]

    async def send(n: int, due_ns: int | None = None) -> None:
        nonlocal sent
        await window.acquire()
        if due_ns is None:
            pending[n] = clock()
        else:
            pending[n] = due_ns
            late.append((clock() - due_ns) // 1000)
        sockets[n % len(sockets)].send(encode({"op": "order", "request_id": n, **make(n)}))
        sent += 1

    started = time.perf_counter()
    if spec.rate is None:
        n = 0
        while time.perf_counter() < deadline:
            await send(n)
            n += 1
    else:
        # One sender sends whatever is due each time it wakes (no task per message).
        schedule = _Schedule(spec)
        n = 0
        while (due := await schedule.wait(n)) is not None:
            await send(n, due)
            n += 1
    drain_until = time.perf_counter() + 30
    while pending and time.perf_counter() < drain_until:
        await asyncio.sleep(0.01)
    elapsed = time.perf_counter() - started
    await asyncio.gather(*(ws.close() for ws in sockets))
    return LoadResult(sent, len(latencies) - errors, errors, elapsed,
                      np.array(latencies, dtype=np.int64), dict(codes),
                      np.array(late, dtype=np.int64))


def _error_code(raw: bytes) -> str:
    try:
        return msgspec.json.decode(raw)["error"]["code"]
    except (msgspec.DecodeError, KeyError, TypeError):
        return "unparsed"


def _worker(spec: LoadSpec, worker: int, out: mp.Queue) -> None:
    import uvloop

    # A load client must not pause on its own: what is loaded by now lives for the whole run,
    # so the collector leaves it alone, and the young generation is collected less often.
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, 50, 100)
    runner = _http if spec.mode == "http" else _ws
    cpu = time.process_time()
    result = uvloop.run(runner(spec, worker))
    cpu = time.process_time() - cpu
    out.put((result.sent, result.ok, result.errors, result.seconds,
             result.latencies_us.tobytes(), result.error_codes, result.send_late_us.tobytes(),
             cpu))


def run(spec: LoadSpec, workers: int) -> LoadResult:
    """Run ``workers`` processes of ``spec`` (the rate is split among them) and merge."""
    per_worker = spec if spec.rate is None else LoadSpec(
        **{**{f: getattr(spec, f) for f in spec.__slots__}, "rate": spec.rate / workers})
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(per_worker, w, out)) for w in range(workers)]
    for proc in procs:
        proc.start()
    parts = []
    give_up = time.monotonic() + spec.seconds + 120
    while len(parts) < len(procs):
        try:
            parts.append(out.get(timeout=1))
        except queue.Empty:
            dead = [p for p in procs if p.exitcode not in (None, 0)]
            if dead or time.monotonic() > give_up:
                for proc in procs:
                    proc.kill()
                raise RuntimeError("a load worker failed") from None
    for proc in procs:
        proc.join(30)
    latencies = np.concatenate([np.frombuffer(p[4], dtype=np.int64) for p in parts])
    codes: Counter = Counter()
    for part in parts:
        codes.update(part[5])
    late = np.concatenate([np.frombuffer(p[6], dtype=np.int64) for p in parts])
    return LoadResult(sum(p[0] for p in parts), sum(p[1] for p in parts),
                      sum(p[2] for p in parts), max(p[3] for p in parts), latencies,
                      dict(codes), late, sum(p[7] for p in parts))


def summarize(result: LoadResult) -> dict:
    lat = result.latencies_us
    pct = (lambda q: int(np.percentile(lat, q))) if len(lat) else (lambda q: 0)
    return {
        "sent": result.sent, "ok": result.ok, "errors": result.errors,
        "seconds": round(result.seconds, 3),
        "ok_per_sec": round(result.ok / result.seconds, 1) if result.seconds else 0.0,
        "p50_us": pct(50), "p99_us": pct(99), "p999_us": pct(99.9),
        "max_us": int(lat.max()) if len(lat) else 0,
        "error_codes": result.error_codes,
        **_lateness(result.send_late_us),
        # Per request sent, connecting and closing included.
        "client_cpu_us": round(result.cpu_seconds * 1e6 / result.sent, 2) if result.sent else 0,
    }


def _lateness(late_us: np.ndarray) -> dict:
    """A paced run's send lateness (``LoadResult.send_late_us``): p99 and max, in us."""
    if not len(late_us):
        return {}
    return {"send_late_p99_us": int(np.percentile(late_us, 99)),
            "send_late_max_us": int(late_us.max())}
