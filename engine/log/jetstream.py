"""The journal on a NATS JetStream stream: one replicated, ordered log for every replica of a venue.

API.md ("Running as a cluster"): every ``crowdex serve`` given the same stream is a replica of one
venue; each appends the commands it receives and applies the whole stream in stream order. So,
unlike the file journal (one writer that numbers its own records), this log has many writers and
the stream does the numbering:

- **One message per group-commit batch.** ``append`` publishes a batch's encoded entries
  (``commands.encode_entry`` payloads) as one message and returns its stream sequence once the
  stream has stored it with its quorum of copies (JetStream acknowledges an R3 publish only then).
  Entries carry no venue sequence: an entry's venue sequence is its position in the stream,
  counted over the entries of every message in order, which every replica counts the same way.
- **A message id per batch** (``Nats-Msg-Id``: the writer's id and its own batch counter). An
  append whose acknowledgement was lost (a timeout, a leader that died) is retried with the same
  id, and the stream stores it once (its duplicate window, ``DUPLICATE_WINDOW_S``).
- **The stream's time.** JetStream records the time each message was stored; readers get it as
  ``StreamBatch.time_us``, so every replica computes the same exchange clock from it (clamped by
  the applying side never to go back: a new stream leader's clock may be behind the old one's).
- **Stream created when absent**, with ``replicas`` copies on file storage and deletes denied
  (a hole in the log would make replicas that read before and after it disagree). Purges from
  the head are allowed: a replica whose position is older than the stream's first message
  starts from a snapshot in the cluster instead (``engine.cluster``), which is how the stream
  is limited (``purge_before``). NATS cannot lift ``deny_purge`` from an existing stream, so a
  stream created by an older crowdex, which denied purges, can never be limited.

Reading is a push consumer we manage ourselves (``StreamReader``), ordered the way JetStream's
"ordered consumer" is: ephemeral, unacknowledged, in memory, recreated from the next stream
sequence when its heartbeats stop or it is gone after a reconnection. A delivery that never
arrived (in flight on a connection to a node that died, while the consumer lives on another)
is fetched by a direct get instead, which any replica of the stream answers: making a new
consumer needs the JetStream meta leader, which may be the node that just died (a 5-9 s
election). nats-py
has an ordered consumer, but its per-message machinery (a ``Msg.metadata`` object, an awaited
``next_msg``) read one-entry messages at about half this reader's rate here (25k against 50k
messages/s, ``crowdex bench stream``); this one parses the reply subject itself, decodes
each body in one msgspec call, hands the applier everything buffered at once (whole runs for
``StateMachine.apply_batch``), and holds back the server's flow control while its buffer is
full, so a slow applier slows delivery instead of growing memory.

**Why async.** nats-py is asyncio, and the engine already runs on the server's event loop: a
publish is a network round trip, not a blocking system call like the file journal's fsync, so it
needs no thread (a thread would need its own event loop and connection). ``append``, the reader
and ``last_sequence`` are coroutines used from the event loop; a command-line tool (``crowdex
replay`` of a stream) wraps its whole run in ``asyncio.run``.

**How the next slice wires it in** (a sketch; the sequencer is not changed by this module):

1. Start-up of a replica: load the newest snapshot, which records both the venue sequence and
   the stream sequence it covers; ``reader = await log.reader(after=snapshot_stream_sequence)``;
   apply what it delivers until ``reader.caught_up`` (the server reports nothing pending), each
   batch's entries numbered from the snapshot's venue sequence on, with the exchange time
   ``max(previous, batch.time_us)`` (for ``--clock manual`` venues the manual clock stays
   authoritative) through ``engine.replay.apply_records``; only then accept commands.
2. The sequencer's writer stage: for each group-commit batch, ``msg_id = log.new_msg_id()``,
   remember ``msg_id -> the batch's pending clients``, then ``await log.append(payloads,
   msg_id=msg_id)`` (one append in flight per replica, so one client's commands keep their order
   in the stream; the batch grows while an append is in flight, as with fsync). A
   ``StreamUnavailable`` answers the batch's clients 503 ``unavailable`` with ``Retry-After``
   (the batch may still be stored: a retry with the same ``Idempotency-Key`` gets the first
   answer), and ``/healthz`` reports degraded until an append succeeds again.
3. The sequencer's apply stage no longer applies what it wrote: it applies what the reader
   delivers, for every replica's batches alike. When a delivered batch's ``msg_id`` is one of
   its own pending ones, the replies of that apply go to those clients (so no reply is routed
   between replicas); others' batches are applied quietly except for market data.
4. Snapshots record ``(venue sequence, stream sequence)`` and go to a JetStream object store, so
   an empty replica starts from the newest one plus the stream's tail.
"""

from __future__ import annotations

import asyncio
import calendar
import contextlib
import logging
import os
import re
import secrets
import socket
import struct
import time
import weakref
import zlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

import msgspec
import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js import api

log = logging.getLogger("crowdex.engine.jetstream")

STREAM_DEFAULT = "crowdex"
REPLICAS_DEFAULT = 3
# A retried append is deduplicated by the stream within this window; appends retry for
# APPEND_TIMEOUT_S at most, well inside it.
DUPLICATE_WINDOW_S = 120.0
# One publish waits this long for its acknowledgement before it is sent again (same message
# id). An acknowledgement takes about a millisecond on loopback; a stream whose leader died
# answers nothing until a new one is elected, and the retry then reaches the new leader.
ATTEMPT_TIMEOUT_S = 1.0
# An append retries for this long before it raises StreamUnavailable (the server answers 503).
# JetStream elects a new stream leader within seconds of losing one (4-7.6 s measured in issue
# 13), so a failover delays appends and only a stream without quorum fails them.
APPEND_TIMEOUT_S = 10.0
RETRY_PAUSE_S = 0.05  # between attempts refused at once (no responders, 503)
ENTRIES_PER_MESSAGE_MAX = 65_536  # the sequencer's batches are at most 4,096 entries
CONNECT_TIMEOUT_S = 2.0
# Tries of each server before connecting gives up (StreamUnavailable); unbounded would hang a
# replica started against a wrong address. Once connected, reconnecting never gives up.
CONNECT_ATTEMPTS = 2
RECONNECT_WAIT_S = 0.25  # between reconnection attempts to the next server
ADMIN_TIMEOUT_S = 5.0  # stream and consumer management requests
# One try at creating a reader's consumer. It is asked of the meta leader, which may be the node
# that just died: short tries find the new one soon after it is elected.
CONSUMER_CREATE_TIMEOUT_S = 1.0
# A reader fetches deliveries its consumer sent that never arrived (lost with a connection to a
# node that died) by direct gets, which any replica of the stream answers, rather than making a
# new consumer (that needs the meta leader, perhaps the node that died). Past this many missing,
# a new consumer is cheaper.
FILL_MESSAGES_MAX = 1_024
FILL_TIMEOUT_S = 1.0  # one missing message: a replica behind the leader may lack it briefly
STREAM_READY_TIMEOUT_S = 30.0  # creating or finding the stream while the cluster elects leaders
# The reader's consumer: the server sends a heartbeat when idle this long; missing two means
# the consumer (an R1 in-memory one) or its node is gone, and the reader recreates it.
HEARTBEAT_S = 0.5
CONSUMER_INACTIVE_S = 30.0  # the server deletes a consumer nobody listens to after this
# A reader holds back flow control (so the server pauses delivery) past this many bytes
# buffered and not yet taken by the applier.
READER_BUFFER_BYTES_MAX = 64 * 1024 * 1024
READER_PENDING_BYTES_MAX = 256 * 1024 * 1024  # nats-py's own queue for the reader's inbox

# A message body: magic, format version, CRC32 of the rest, then a msgpack array of the
# batch's entry payloads (each one ``commands.encode_entry`` output).
_BODY_MAGIC = b"CXB"
_BODY_VERSION = 1
_BODY_HEADER = struct.Struct("<3sBI")
_MSG_ID = "Nats-Msg-Id"
_TIME_STAMP = "Nats-Time-Stamp"  # a direct get's RFC 3339 time, nanoseconds, UTC
_TIME_STAMP_FORMAT = re.compile(r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?Z")
_EXPECTED_STREAM = "Nats-Expected-Stream"
_ERR_DUPLICATE_IN_PROCESS = 10158  # JetStream's JSStreamDuplicateMessageConflict
_ERR_STREAM_NAME_IN_USE = 10058  # JSStreamNameExistErr: another replica created it first
# JSClusterNoPeersErrF, "no suitable peers for placement": fewer nodes than copies are up, or the
# meta leader has not yet heard from one that just started (or came back), or thinks one that
# paused is offline. The cluster is not ready, as with no leader: ask again until the deadline.
NO_PEERS_YET = 10005  # shared with the snapshot store

_encoder = msgspec.msgpack.Encoder()
_payloads_decoder = msgspec.msgpack.Decoder(list[bytes])

# Errors worth another attempt with the same message id: nothing answered, the stream has no
# leader yet, or the connection is being re-established.
_RETRYABLE = (
    nats.errors.TimeoutError, nats.errors.NoRespondersError, nats.js.errors.NoStreamResponseError,
    nats.js.errors.ServiceUnavailableError, nats.errors.OutboundBufferLimitError,
    nats.errors.ConnectionReconnectingError, nats.errors.StaleConnectionError,
    TimeoutError,
)


class StreamError(Exception):
    """The stream cannot be used as asked."""


class StreamUnavailable(StreamError):
    """No acknowledgement within the time allowed: no quorum, no leader, or no connection.

    The append may still have been stored (only its acknowledgement is missing); retried with
    the same message id it is stored once.
    """


class _NotPlaced(Exception):
    """The meta leader could not place the stream's copies yet (``NO_PEERS_YET``)."""


class StreamCorruptError(StreamError):
    """A message in the stream is not a batch this module wrote."""


class StreamGapError(StreamError):
    """Messages the reader needs are not in the stream (deleted, or cut by a limit)."""


@dataclass(frozen=True, slots=True)
class StreamBatch:
    """One stored message: a batch of entries as one replica appended it."""

    sequence: int  # the stream sequence of the message (not a venue sequence)
    time_us: int  # when the stream stored it (UTC microseconds), as every replica reads it
    msg_id: str  # the appender's message id: its writer id, a colon, its batch counter
    payloads: list[bytes]  # the encoded entries, in order


def encode_body(payloads: Sequence[bytes]) -> bytes:
    """A message body holding ``payloads`` (checked on the way back by ``decode_body``)."""
    packed = _encoder.encode(list(payloads))
    return _BODY_HEADER.pack(_BODY_MAGIC, _BODY_VERSION, zlib.crc32(packed)) + packed


def decode_body(body: bytes, sequence: int) -> list[bytes]:
    """The entry payloads of the message at stream ``sequence``; raises StreamCorruptError."""
    if len(body) < _BODY_HEADER.size:
        raise StreamCorruptError(f"stream message {sequence}: {len(body)}-byte body")
    magic, version, crc = _BODY_HEADER.unpack_from(body)
    if magic != _BODY_MAGIC or version != _BODY_VERSION:
        raise StreamCorruptError(f"stream message {sequence}: not a crowdex batch "
                                 f"(magic {magic!r}, version {version})")
    packed = memoryview(body)[_BODY_HEADER.size:]
    if zlib.crc32(packed) != crc:
        raise StreamCorruptError(f"stream message {sequence}: CRC mismatch")
    try:
        return _payloads_decoder.decode(packed)
    except msgspec.DecodeError as error:
        raise StreamCorruptError(f"stream message {sequence}: {error}") from None


def time_stamp_us(text: str, sequence: int) -> int:
    """A direct get's ``Nats-Time-Stamp`` as UTC microseconds, computed in integers so it equals
    the nanoseconds a consumer's delivery carries, divided by 1,000 (a float would not)."""
    match = _TIME_STAMP_FORMAT.fullmatch(text)
    if match is None:
        raise StreamCorruptError(f"stream message {sequence}: time stamp {text!r}")
    *fields, fraction = match.groups()
    seconds = calendar.timegm(tuple(int(field) for field in fields) + (0, 0, 0))
    nanoseconds = int((fraction or "").ljust(9, "0"))
    return seconds * 1_000_000 + nanoseconds // 1_000


def default_writer_id() -> str:
    """Host, process and a random part: unique per process, so a restarted replica's batch
    counter starting again at 1 never collides with its previous life's message ids."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(4)}"


class StreamLog:
    """A venue's log on the JetStream stream ``stream``; make one with ``StreamLog.connect``."""

    def __init__(self, nc: NatsClient, stream: str, writer_id: str,
                 append_timeout_s: float, attempt_timeout_s: float) -> None:
        self.nc = nc
        self.js = nc.jetstream(timeout=ADMIN_TIMEOUT_S)
        self.stream = stream
        self.subject = f"{stream}.log"
        self.writer_id = writer_id
        self.append_timeout_s = append_timeout_s
        self.attempt_timeout_s = attempt_timeout_s
        self._batch_counter = 0
        self._readers: weakref.WeakSet[StreamReader] = weakref.WeakSet()
        self.purge_denied = False  # the stream's deny_purge, as found at connect
        self.replicas = 0  # the stream's copies, as found at connect
        # When the stream was created (JetStream's own time, ISO 8601): a stream deleted and
        # made again under the same name has another, so what was kept of the old one
        # (snapshots, locally and in the object store) is told apart from this one's.
        self.created = ""

    @classmethod
    async def connect(cls, servers: str | Sequence[str], *, stream: str = STREAM_DEFAULT,
                      replicas: int = REPLICAS_DEFAULT, writer_id: str | None = None,
                      create: bool = True, append_timeout_s: float = APPEND_TIMEOUT_S,
                      attempt_timeout_s: float = ATTEMPT_TIMEOUT_S,
                      ready_timeout_s: float = STREAM_READY_TIMEOUT_S) -> StreamLog:
        """Connect to the cluster (any of ``servers``, failing over between them) and find the
        stream, creating it with ``replicas`` copies when absent and ``create`` is set."""
        servers = [servers] if isinstance(servers, str) else list(servers)
        holder: list[StreamLog] = []

        async def reconnected() -> None:
            if holder:
                holder[0]._reconnected()

        try:
            nc = await nats.connect(
                servers, name=f"crowdex {writer_id or ''}".strip(),
                connect_timeout=CONNECT_TIMEOUT_S, reconnect_time_wait=RECONNECT_WAIT_S,
                max_reconnect_attempts=CONNECT_ATTEMPTS, reconnected_cb=reconnected,
                error_cb=_log_client_error)
        except (OSError, nats.errors.Error) as error:
            raise StreamUnavailable(f"no NATS server answered at {', '.join(servers)}: "
                                    f"{error!r}") from error
        # Connected once, it never gives up: a replica outlives any outage of the cluster
        # (nats-py reads this option at each reconnection).
        nc.options["max_reconnect_attempts"] = -1
        stream_log = cls(nc, stream, writer_id or default_writer_id(), append_timeout_s,
                         attempt_timeout_s)
        holder.append(stream_log)
        try:
            await stream_log._ensure_stream(replicas, create, ready_timeout_s)
        except BaseException:
            await nc.close()
            raise
        return stream_log

    # ---- appending ------------------------------------------------------------------------------

    def new_msg_id(self) -> str:
        """The next message id of this writer (to know a batch by before it is appended)."""
        self._batch_counter += 1
        return f"{self.writer_id}:{self._batch_counter}"

    async def append(self, payloads: Sequence[bytes], *, msg_id: str | None = None) -> int:
        """Store one batch as one message; return its stream sequence once a quorum holds it.

        Retries (same message id, so stored once) until ``append_timeout_s``, then raises
        ``StreamUnavailable``. A batch the server refuses (too big, wrong stream) raises
        ``StreamError`` at once.
        """
        if not payloads:
            raise ValueError("an append needs at least one entry")
        if len(payloads) > ENTRIES_PER_MESSAGE_MAX:
            raise ValueError(f"{len(payloads)} entries in one batch, over "
                             f"ENTRIES_PER_MESSAGE_MAX ({ENTRIES_PER_MESSAGE_MAX})")
        body = encode_body(payloads)
        if len(body) > self.nc.max_payload:
            raise ValueError(f"a {len(body)}-byte batch is over the servers' max_payload "
                             f"({self.nc.max_payload}); append it as smaller batches")
        msg_id = msg_id or self.new_msg_id()
        headers = {_MSG_ID: msg_id, _EXPECTED_STREAM: self.stream}
        deadline = time.monotonic() + self.append_timeout_s
        attempts = 0
        while True:
            attempts += 1
            left = deadline - time.monotonic()
            try:
                return await self._publish(body, headers, min(self.attempt_timeout_s, left))
            except _RETRYABLE as error:
                if time.monotonic() + RETRY_PAUSE_S >= deadline:
                    raise StreamUnavailable(
                        f"stream {self.stream}: batch {msg_id} not acknowledged within "
                        f"{self.append_timeout_s} s ({attempts} attempts, last: {error!r}); "
                        "no quorum or no connection") from error
                if not isinstance(error, TimeoutError):
                    await asyncio.sleep(RETRY_PAUSE_S)  # refused at once: do not spin

    async def _publish(self, body: bytes, headers: dict[str, str], timeout_s: float) -> int:
        if self.nc.is_closed:
            raise StreamUnavailable(f"stream {self.stream}: the connection is closed")
        try:
            ack = await self.js.publish(self.subject, body, timeout=timeout_s,
                                        headers=dict(headers))
        except nats.js.errors.APIError as error:
            # "Duplicate message id is in process": an earlier try of this batch waits for its
            # quorum (a leader that lost its followers). It may yet be stored: not a refusal.
            in_process = error.err_code == _ERR_DUPLICATE_IN_PROCESS
            if in_process or (error.code is not None and error.code >= 500):
                raise nats.js.errors.ServiceUnavailableError(
                    code=error.code, description=error.description) from error
            raise StreamError(f"stream {self.stream} refused batch {headers[_MSG_ID]}: "
                              f"{error}") from error
        except nats.errors.ConnectionClosedError as error:
            raise StreamUnavailable(f"stream {self.stream}: the connection is closed") from error
        if ack.stream != self.stream:
            raise StreamError(f"batch {headers[_MSG_ID]} was stored in stream {ack.stream}, "
                              f"not {self.stream}")
        return ack.seq

    # ---- reading --------------------------------------------------------------------------------

    async def last_sequence(self, timeout_s: float = ADMIN_TIMEOUT_S) -> int:
        """The stream sequence of the last stored message, 0 when the stream is empty."""
        return (await self.bounds(timeout_s))[1]

    async def bounds(self, timeout_s: float = ADMIN_TIMEOUT_S) -> tuple[int, int]:
        """The stream sequences of the first and the last stored message. An empty stream
        says (0, 0); one purged to its end says (last + 1, last)."""
        try:
            info = await asyncio.wait_for(self.js.stream_info(self.stream), timeout_s)
        except (*_RETRYABLE, nats.js.errors.APIError) as error:
            raise StreamUnavailable(f"stream {self.stream}: no answer to stream info "
                                    f"({error!r})") from error
        return info.state.first_seq, info.state.last_seq

    async def purge_before(self, sequence: int, timeout_s: float = ADMIN_TIMEOUT_S) -> None:
        """Remove every message before stream ``sequence`` (a limit on the stream's head:
        never a hole). A reader that needs them gets ``StreamGapError``."""
        if sequence < 1:
            raise ValueError(f"sequence must be >= 1, got {sequence}")
        try:
            await asyncio.wait_for(self.js.purge_stream(self.stream, seq=sequence), timeout_s)
        except _RETRYABLE as error:
            raise StreamUnavailable(f"stream {self.stream}: not purged before {sequence} "
                                    f"({error!r})") from error
        except nats.js.errors.APIError as error:  # deny_purge, or no such stream
            raise StreamError(f"stream {self.stream} refused a purge before {sequence}: "
                              f"{error.description or error!r}") from error

    async def get(self, sequence: int, timeout_s: float = FILL_TIMEOUT_S) -> StreamBatch | None:
        """The message at stream ``sequence`` by direct get (answered by any replica of the
        stream, no consumer needed); None if none had it within ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while True:
            left = deadline - time.monotonic()
            try:
                raw = await asyncio.wait_for(
                    self.js.get_msg(self.stream, seq=sequence, direct=True), left)
                break
            except (*_RETRYABLE, nats.js.errors.APIError):
                # Not found is retried too: the replica that answered may be behind.
                if time.monotonic() + RETRY_PAUSE_S >= deadline:
                    return None
                await asyncio.sleep(RETRY_PAUSE_S)
        headers = raw.headers or {}
        return StreamBatch(raw.seq, time_stamp_us(headers.get(_TIME_STAMP, ""), raw.seq),
                           headers.get(_MSG_ID, ""), decode_body(raw.data or b"", raw.seq))

    async def reader(self, after: int = 0,
                     buffer_bytes_max: int = READER_BUFFER_BYTES_MAX) -> StreamReader:
        """A started reader of every message after stream sequence ``after``, in order."""
        reader = StreamReader(self, after, buffer_bytes_max)
        self._readers.add(reader)
        try:
            await reader.start()
        except BaseException:
            await reader.close()
            raise
        return reader

    async def read(self, after: int = 0, upto: int | None = None
                   ) -> AsyncIterator[list[StreamBatch]]:
        """Yield lists of batches after ``after`` up to ``upto`` (default: the last sequence
        now), then stop: catching up. Use it under ``contextlib.aclosing`` if you may stop
        early, so its consumer is deleted at once."""
        if upto is None:
            upto = await self.last_sequence()
        if upto <= after:
            return
        reader = await self.reader(after)
        try:
            while reader.position < upto:
                batches = await reader.batches()
                if batches and batches[-1].sequence > upto:
                    batches = [batch for batch in batches if batch.sequence <= upto]
                yield batches
        finally:
            await reader.close()

    async def close(self) -> None:
        """Stop every reader and close the connection (pending appends fail)."""
        for reader in list(self._readers):
            await reader.close()
        await self.nc.close()

    async def __aenter__(self) -> StreamLog:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # ---- internals ------------------------------------------------------------------------------

    def _reconnected(self) -> None:
        for reader in list(self._readers):
            reader.check_consumer()

    async def _ensure_stream(self, replicas: int, create: bool, timeout_s: float) -> None:
        """Find the stream or create it; retried while the cluster has no leader to ask."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                info = await self._find_or_create(replicas, create)
                break
            except (*_RETRYABLE, _NotPlaced) as error:
                if time.monotonic() > deadline:
                    raise StreamUnavailable(f"stream {self.stream} not ready after "
                                            f"{timeout_s} s ({error!r})") from error
                await asyncio.sleep(RETRY_PAUSE_S * 4)
        config = info.config
        self.created = info.created.isoformat() if info.created is not None else ""
        self.purge_denied = bool(config.deny_purge)
        self.replicas = config.num_replicas or 1
        if self.subject not in (config.subjects or []):
            raise StreamError(f"stream {self.stream} exists without subject {self.subject}")
        if config.num_replicas != replicas:
            log.warning("stream %s has %s copies, not the %d asked for; left as it is",
                        self.stream, config.num_replicas, replicas)

    async def _find_or_create(self, replicas: int, create: bool) -> api.StreamInfo:
        try:
            return await self.js.stream_info(self.stream)
        except nats.js.errors.NotFoundError:
            if not create:
                raise StreamError(f"no stream {self.stream} in the cluster") from None
        config = api.StreamConfig(
            name=self.stream, subjects=[self.subject], num_replicas=replicas,
            storage=api.StorageType.FILE, retention=api.RetentionPolicy.LIMITS,
            discard=api.DiscardPolicy.OLD, duplicate_window=DUPLICATE_WINDOW_S,
            allow_direct=True, deny_delete=True, deny_purge=False)
        try:
            info = await self.js.add_stream(config)
        except nats.js.errors.BadRequestError as error:
            if error.err_code == _ERR_STREAM_NAME_IN_USE:
                # Another replica created it between our look and our create: use theirs.
                return await self.js.stream_info(self.stream)
            if error.err_code == NO_PEERS_YET:
                raise _NotPlaced(f"{replicas} copies: {error.description}") from error
            raise StreamError(f"stream {self.stream} not created: {error.description} "
                              f"(code {error.err_code})") from error
        log.info("created stream %s (subject %s, %d copies, file storage)", self.stream,
                 self.subject, replicas)
        return info


async def _log_client_error(error: Exception) -> None:
    log.warning("NATS client: %r", error)


class StreamReader:
    """Every message of the stream after a sequence, in order, without gaps or repeats.

    ``batches()`` returns everything delivered so far (waiting for at least one message).
    Delivery comes from an ephemeral push consumer; whenever it misses a message, stops
    sending heartbeats, or the connection comes back, the reader deletes it and creates
    another from the next sequence it needs (``restarts`` counts how often).
    """

    def __init__(self, stream_log: StreamLog, after: int, buffer_bytes_max: int) -> None:
        self._log = stream_log
        self._nc = stream_log.nc
        self.position = after  # the stream sequence of the last batch handed out
        self._next_sequence = after + 1  # the stream sequence the next delivery must have
        self._next_consumer_sequence = 1
        self._buffer: list[StreamBatch] = []
        self._buffer_bytes = 0
        self._buffer_bytes_max = buffer_bytes_max
        self._held_flow_control: str | None = None
        self._ready = asyncio.Event()
        self._error: BaseException | None = None
        self._subscription = None
        self._consumer: str | None = None
        self._generation = 0
        self._last_activity = time.monotonic()
        self._restart_task: asyncio.Task | None = None
        self._watchdog: asyncio.Task | None = None
        self._closed = False
        self.pending = -1  # messages after the last delivered one, as the server last said
        self.restarts = 0  # consumers made again
        self.filled = 0  # deliveries that never arrived, fetched by direct get
        self._check_task: asyncio.Task | None = None

    @property
    def caught_up(self) -> bool:
        """True once everything stored when the last message was delivered is handed out."""
        return self.pending == 0 and not self._buffer

    async def start(self, timeout_s: float = STREAM_READY_TIMEOUT_S) -> None:
        """Create the first consumer, retrying while the stream has no leader to ask (a reader
        started during a failover); raise StreamUnavailable after ``timeout_s``."""
        await self._resubscribe(time.monotonic() + timeout_s)
        self._watchdog = asyncio.create_task(self._watch(), name="crowdex-stream-watchdog")

    async def batches(self, timeout_s: float | None = None) -> list[StreamBatch]:
        """All batches delivered and not yet taken (at least one; [] if ``timeout_s`` passes)."""
        while not self._buffer:
            if self._error is not None:
                raise self._error
            if self._closed:
                raise StreamError("the reader is closed")
            self._ready.clear()
            try:
                await asyncio.wait_for(self._ready.wait(), timeout_s)
            except TimeoutError:
                return []
        batches, self._buffer, self._buffer_bytes = self._buffer, [], 0
        self.position = batches[-1].sequence
        await self._release_flow_control()
        return batches

    def restart(self, reason: str) -> None:
        """Recreate the consumer from the next sequence needed (in the background)."""
        if self._closed or (self._restart_task is not None and not self._restart_task.done()):
            return
        log.info("stream reader: restarting its consumer at %d: %s", self._next_sequence, reason)
        self.restarts += 1
        self._generation += 1  # deliveries of the old subscription are ignored from now
        self._restart_task = asyncio.create_task(self._resubscribe(),
                                                 name="crowdex-stream-reader-restart")

    def check_consumer(self) -> None:
        """After a reconnection: keep the consumer if it is still there (it may live on a node
        other than the one we lost), else make a new one now rather than after two missed
        heartbeats."""
        if not self._closed and (self._check_task is None or self._check_task.done()):
            self._check_task = asyncio.create_task(self._check_consumer(),
                                                   name="crowdex-stream-reader-check")

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._ready.set()
        for task in (self._watchdog, self._restart_task, self._check_task):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        await self._drop_consumer()

    async def __aenter__(self) -> StreamReader:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # ---- the consumer ---------------------------------------------------------------------------

    async def _subscribe(self) -> None:
        """A new inbox and a consumer delivering to it from ``_next_sequence``."""
        generation = self._generation
        inbox = self._nc.new_inbox()

        async def deliver(msg: Msg) -> None:
            if generation == self._generation and not self._closed and self._error is None:
                await self._on_message(msg)

        self._subscription = await self._nc.subscribe(
            inbox, cb=deliver, pending_msgs_limit=0, pending_bytes_limit=READER_PENDING_BYTES_MAX)
        self._next_consumer_sequence = 1
        config = api.ConsumerConfig(
            deliver_subject=inbox, deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE,
            opt_start_seq=self._next_sequence, ack_policy=api.AckPolicy.NONE,
            flow_control=True, idle_heartbeat=HEARTBEAT_S, mem_storage=True, num_replicas=1,
            inactive_threshold=CONSUMER_INACTIVE_S, filter_subject=self._log.subject)
        info = await self._log.js.add_consumer(self._log.stream, config=config,
                                               timeout=CONSUMER_CREATE_TIMEOUT_S)
        self._consumer = info.name
        self._last_activity = time.monotonic()

    async def _resubscribe(self, deadline: float | None = None) -> None:
        """Drop the consumer and make a new one, retrying (until ``deadline`` if given)."""
        await self._drop_consumer()
        pause = RETRY_PAUSE_S
        while not self._closed:
            try:
                await self._subscribe()
                return
            except (*_RETRYABLE, nats.js.errors.APIError) as error:
                await self._drop_consumer()
                if deadline is not None and time.monotonic() + pause > deadline:
                    raise StreamUnavailable(f"stream {self._log.stream}: no consumer could be "
                                            f"created ({error!r})") from error
                log.info("stream reader: no consumer yet (%r); retrying", error)
                await asyncio.sleep(pause)
                pause = min(pause * 2, HEARTBEAT_S)

    async def _drop_consumer(self) -> None:
        """Unsubscribe and delete the consumer, best effort (the server deletes it anyway once
        inactive)."""
        subscription, self._subscription = self._subscription, None
        consumer, self._consumer = self._consumer, None
        if subscription is not None:
            with contextlib.suppress(Exception):
                await subscription.unsubscribe()
        if consumer is not None and not self._nc.is_closed:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(
                    self._log.js.delete_consumer(self._log.stream, consumer), HEARTBEAT_S)

    async def _check_consumer(self) -> None:
        consumer = self._consumer
        if consumer is None:
            return  # a restart is under way
        try:
            await self._log.js.consumer_info(self._log.stream, consumer,
                                             timeout=CONSUMER_CREATE_TIMEOUT_S)
        except (*_RETRYABLE, nats.js.errors.APIError) as error:
            if consumer == self._consumer:
                self.restart(f"its consumer did not answer after a reconnection ({error!r})")

    async def _watch(self) -> None:
        """Restart the consumer when it has been silent for two heartbeats."""
        while not self._closed:
            await asyncio.sleep(HEARTBEAT_S)
            restarting = self._restart_task is not None and not self._restart_task.done()
            if not restarting and time.monotonic() - self._last_activity > 2 * HEARTBEAT_S:
                self.restart("no heartbeat")

    # ---- deliveries -----------------------------------------------------------------------------

    async def _on_message(self, msg: Msg) -> None:
        self._last_activity = time.monotonic()
        if not msg.data and msg.headers and msg.headers.get("Status"):
            await self._on_status(msg)
            return
        try:
            batch, consumer_sequence, pending = self._parse(msg)
        except StreamError as error:
            self._fail(error)
            return
        missing = consumer_sequence - self._next_consumer_sequence
        if missing < 0 or (missing > 0 and not await self._fill(missing)):
            self.restart(f"delivery {consumer_sequence} where {self._next_consumer_sequence} "
                         "was expected")
            return
        if self._error is not None:
            return  # a filled message was damaged
        self._next_consumer_sequence += 1
        self.pending = pending
        self._accept(batch, len(msg.data))

    def _accept(self, batch: StreamBatch, size: int) -> None:
        """Buffer the next batch for the applier: it must be the next stream sequence."""
        if batch.sequence < self._next_sequence:
            return  # already delivered before a restart
        if batch.sequence > self._next_sequence:
            self._fail(StreamGapError(
                f"stream {self._log.stream}: messages {self._next_sequence}.."
                f"{batch.sequence - 1} are not in the stream"))
            return
        self._next_sequence += 1
        self._buffer.append(batch)
        self._buffer_bytes += size
        self._ready.set()

    async def _fill(self, count: int) -> bool:
        """Fetch, by direct get, ``count`` deliveries the consumer sent that never arrived;
        False if one could not be had (the caller then makes a new consumer)."""
        if count > FILL_MESSAGES_MAX:
            return False
        for _ in range(count):
            try:
                batch = await self._log.get(self._next_sequence)
            except StreamCorruptError as error:
                self._fail(error)
                return True  # failed for good: no restart
            if batch is None:
                return False
            self._last_activity = time.monotonic()  # progress: not a silent consumer
            self._next_consumer_sequence += 1
            self.filled += 1
            self._accept(batch, sum(map(len, batch.payloads)))
        return True

    async def _on_status(self, msg: Msg) -> None:
        """A heartbeat (check nothing was missed) or flow control (answer unless full)."""
        headers = msg.headers
        if msg.reply:  # a flow control request
            await self._answer_flow_control(msg.reply)
            return
        stalled = headers.get("Nats-Consumer-Stalled")
        if stalled:
            await self._answer_flow_control(stalled)
        last = headers.get("Nats-Last-Consumer")
        if last is None:
            return
        missing = int(last) - (self._next_consumer_sequence - 1)
        if missing < 0 or (missing > 0 and not await self._fill(missing)):
            self.restart(f"heartbeat says delivery {last}, last received "
                         f"{self._next_consumer_sequence - 1}")
        elif missing > 0:
            self.pending = 0  # a heartbeat: the consumer had nothing more to send

    def _parse(self, msg: Msg) -> tuple[StreamBatch, int, int]:
        """The batch, its consumer sequence and the pending count, from one delivery."""
        tokens = (msg.reply or "").split(".")
        # $JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>.<consumer seq>.<ns>.<pending>,
        # or with <domain>.<account hash> after $JS.ACK (and a token at the end).
        if len(tokens) == 9:
            base = 4
        elif len(tokens) >= 11:
            base = 6
        else:
            raise StreamCorruptError(f"not a JetStream delivery: reply {msg.reply!r}")
        sequence = int(tokens[base + 1])
        payloads = decode_body(msg.data, sequence)
        msg_id = (msg.headers or {}).get(_MSG_ID, "")
        batch = StreamBatch(sequence, int(tokens[base + 3]) // 1000, msg_id, payloads)
        return batch, int(tokens[base + 2]), int(tokens[base + 4])

    async def _answer_flow_control(self, reply: str) -> None:
        if self._buffer_bytes >= self._buffer_bytes_max:
            self._held_flow_control = reply  # answered once the applier takes the buffer
            return
        with contextlib.suppress(nats.errors.Error):
            await self._nc.publish(reply)

    async def _release_flow_control(self) -> None:
        reply, self._held_flow_control = self._held_flow_control, None
        if reply is not None:
            with contextlib.suppress(nats.errors.Error):
                await self._nc.publish(reply)

    def _fail(self, error: StreamError) -> None:
        """Stop delivering: what is buffered is still handed out, then ``batches`` raises."""
        log.error("stream reader stops: %s", error)
        self._error = error
        self._ready.set()
