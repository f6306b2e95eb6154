"""A cluster venue's snapshots in a JetStream object store, kept beside its stream.

API.md ("Running as a cluster"): a replica started on an empty data dir catches up from the
snapshots kept in the cluster and the stream. The replicas' local snapshots (``engine.snapshot``
files) are only a cache; this module keeps copies of them in the cluster, in the object store
``<stream>-snapshots`` (nats-py's ``ObjectStore``), with as many copies as the stream.

An object is a snapshot file as ``engine.snapshot`` writes it (its checksums travel with it),
named ``snapshot-<venue sequence:020d>-at-<stream sequence:020d>.snap``: the venue sequence the
state ends at, and the stream message that state ends with (a reader starts after it). So the
newest snapshot, and where in the stream its tail begins, are found from a listing of names
without fetching anything.

Which replica uploads, and when, is ``engine.cluster_snapshots``'s business; this module only
stores, lists, fetches and deletes. Every call is bounded in time: a cluster without quorum makes
them fail (``SnapshotStoreError``), never hang.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import logging
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import nats.errors
import nats.js.errors
from nats.js import api
from nats.js.client import JetStreamContext
from nats.js.object_store import (
    OBJ_CHUNKS_PRE_TEMPLATE,
    OBJ_DIGEST_TYPE,
    OBJ_STREAM_TEMPLATE,
    ObjectStore,
)

from engine.log.jetstream import NO_PEERS_YET, STREAM_READY_TIMEOUT_S
from engine.snapshot import snapshot_name

log = logging.getLogger("crowdex.engine.snapshot_store")

BUCKET_SUFFIX = "-snapshots"
# One chunk of an object is one stream message: large enough that a 100 MiB snapshot is ~200
# publishes, small enough for the servers' default max_payload (1 MiB) with room for headers.
CHUNK_BYTES_MAX = 512 * 1024
LIST_TIMEOUT_S = 10.0  # a listing reads one small message per object
# Fetching or storing an object: this long, plus one second a MiB (loopback moves ~100 MiB/s;
# a cross-zone link far less), before it is given up.
TRANSFER_TIMEOUT_S = 30.0
TRANSFER_S_PER_MIB = 1.0
OPEN_RETRY_PAUSE_S = 0.2
CHUNK_RETRY_S = 1.0  # a chunk a replica of the store does not have yet is asked for again

STREAM_CREATED_HEADER = "Crowdex-Stream-Created"
_OBJECT_NAME = re.compile(r"snapshot-(\d{20})-at-(\d{20})\.snap")
_PART_SUFFIX = ".tmp"  # a fetch in progress; engine.snapshot.prune removes leftovers

# A JetStream request that may succeed if asked again: the cluster is electing, reconnecting,
# or has no quorum at the moment.
_TRANSIENT = (nats.errors.TimeoutError, nats.errors.NoRespondersError,
              nats.errors.ConnectionReconnectingError, nats.js.errors.ServiceUnavailableError,
              nats.js.errors.NoStreamResponseError, TimeoutError)


class SnapshotStoreError(Exception):
    """The object store did not answer as asked (no quorum, a damaged object, a timeout)."""


@dataclass(frozen=True, slots=True, order=True)
class StoredSnapshot:
    """One snapshot in the store: the state after venue ``sequence``, which ends with stream
    message ``position``. Ordered oldest first."""

    sequence: int
    position: int
    size: int = 0
    # The creation time of the stream it was taken from (``StreamLog.created``); "" for one
    # stored by an older crowdex, which did not say.
    stream_created: str = field(default="", compare=False)

    @property
    def name(self) -> str:
        return object_name(self.sequence, self.position)


def object_name(sequence: int, position: int) -> str:
    """The object holding the state after venue ``sequence`` = stream message ``position``."""
    return f"snapshot-{sequence:020d}-at-{position:020d}.snap"


def bucket_name(stream: str) -> str:
    return stream + BUCKET_SUFFIX


def transfer_timeout_s(size: int) -> float:
    return TRANSFER_TIMEOUT_S + TRANSFER_S_PER_MIB * size / (1 << 20)


class SnapshotStore:
    """The object store of one venue's snapshots; make one with ``SnapshotStore.open``."""

    def __init__(self, js: JetStreamContext, store: ObjectStore, bucket: str,
                 chunk_bytes: int, replicas: int, stream_created: str = "") -> None:
        self.replicas = replicas  # the store's copies
        # The stream this store serves, by its creation time. The bucket outlives a stream
        # deleted and made again under the same name: the old stream's snapshots are of another
        # venue (or another history of it), never loaded, and deleted by the next prune.
        self.stream_created = stream_created
        self._js = js
        self._store = store
        self._store_stream = OBJ_STREAM_TEMPLATE.format(bucket=bucket)
        self.bucket = bucket
        self._chunk_bytes = chunk_bytes

    @classmethod
    async def open(cls, js: JetStreamContext, stream: str, replicas: int, *,
                   max_payload: int, stream_created: str = "",
                   timeout_s: float = STREAM_READY_TIMEOUT_S) -> SnapshotStore:
        """Find the stream's store, or create it with ``replicas`` copies on file storage;
        retried while the cluster cannot answer yet (``SnapshotStoreError`` after ``timeout_s``,
        or at once for a refusal that would only be repeated)."""
        bucket = bucket_name(stream)
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                store = await _find_or_create(js, bucket, replicas)
                break
            except (*_TRANSIENT, nats.errors.Error) as error:
                if not _passing(error) or time.monotonic() > deadline:
                    raise SnapshotStoreError(f"object store {bucket} could not be opened "
                                             f"({error!r})") from error
                await asyncio.sleep(OPEN_RETRY_PAUSE_S)
        copies = (await store.status()).replicas
        if copies != replicas:
            log.warning("object store %s has %s copies, not the %d asked for; left as it is",
                        bucket, copies, replicas)
        return cls(js, store, bucket, min(CHUNK_BYTES_MAX, max_payload // 2), copies,
                   stream_created)

    async def list(self) -> list[StoredSnapshot]:
        """The stream's snapshots in the store, oldest first: objects of other names, and those
        of an earlier stream of the same name (``foreign``), are left out."""
        return [s for s in await self._all() if not self.foreign(s)]

    def foreign(self, snapshot: StoredSnapshot) -> bool:
        """Whether ``snapshot`` was taken from another stream than this store's (one stored
        by an older crowdex, which did not say, is taken as this stream's)."""
        return bool(snapshot.stream_created and self.stream_created
                    and snapshot.stream_created != self.stream_created)

    async def _all(self) -> list[StoredSnapshot]:
        """Every snapshot in the store, oldest first (objects of other names are ignored)."""
        try:
            infos = await self._infos()
        except (*_TRANSIENT, nats.errors.Error) as error:
            raise SnapshotStoreError(f"object store {self.bucket}: no listing "
                                     f"({error!r})") from error
        found = []
        for info in infos:
            match = _OBJECT_NAME.fullmatch(info.name or "")
            if match is not None and not info.deleted:
                created = (info.headers or {}).get(STREAM_CREATED_HEADER, "")
                found.append(StoredSnapshot(int(match.group(1)), int(match.group(2)),
                                            info.size or 0, str(created)))
        return sorted(found)

    async def _infos(self) -> list[api.ObjectInfo]:
        """The newest description of every object, deleted ones left out (nats-py's ``list``
        with a time limit and its watcher always stopped)."""
        watcher = await self._store.watch(ignore_deletes=True)
        try:
            infos = []
            deadline = time.monotonic() + LIST_TIMEOUT_S
            while (info := await watcher.updates(deadline - time.monotonic())) is not None:
                infos.append(info)  # None marks the end of what is stored now
            return infos
        finally:
            await watcher.stop()

    async def upload(self, path: Path, sequence: int, position: int) -> StoredSnapshot:
        """Store the snapshot file ``path`` (the state after ``sequence``, ending with stream
        message ``position``); returned once the store holds all of it with its quorum."""
        size = path.stat().st_size
        headers = {STREAM_CREATED_HEADER: self.stream_created} if self.stream_created else None
        meta = api.ObjectMeta(name=object_name(sequence, position),
                              description=f"crowdex snapshot of sequence {sequence}",
                              headers=headers,
                              options=api.ObjectMetaOptions(max_chunk_size=self._chunk_bytes))
        try:
            with open(path, "rb") as file:
                await asyncio.wait_for(self._store.put(meta.name, file, meta=meta),
                                       transfer_timeout_s(size))
        except (*_TRANSIENT, nats.errors.Error, OSError) as error:
            raise SnapshotStoreError(f"object store {self.bucket}: {meta.name} not stored "
                                     f"({error!r})") from error
        return StoredSnapshot(sequence, position, size, self.stream_created)

    async def download(self, snapshot: StoredSnapshot, directory: Path) -> Path:
        """Fetch ``snapshot`` into ``directory`` under its local file name; return the path.

        The object's size and SHA-256 are checked here; the file's own checksums are the
        reader's to check (``engine.snapshot.read_snapshot``).
        """
        directory.mkdir(parents=True, exist_ok=True)
        final = directory / snapshot_name(snapshot.sequence)
        part = directory / (final.name + _PART_SUFFIX)
        try:
            with open(part, "wb") as file:
                await asyncio.wait_for(self._fetch(snapshot.name, file),
                                       transfer_timeout_s(snapshot.size))
            os.replace(part, final)
        except (*_TRANSIENT, nats.errors.Error, OSError, SnapshotStoreError) as error:
            part.unlink(missing_ok=True)
            raise SnapshotStoreError(f"object store {self.bucket}: {snapshot.name} not "
                                     f"fetched ({error!r})") from error
        return final

    async def _fetch(self, name: str, file: BinaryIO) -> None:
        """Write object ``name`` into ``file``, a chunk at a time by direct get.

        nats-py's ``ObjectStore.get`` reads the chunks through an ordered push consumer, which
        here took ~0.5 s more than the bytes need (24 MiB: 1.0 s; by direct gets 0.2 s). The
        chunks are the messages on the object's chunk subject, in order (the object store's
        layout, whose names nats-py exports); any replica of the store answers a direct get.
        """
        info = await self._store.get_info(name)
        if info.is_link() or not info.nuid:
            raise SnapshotStoreError(f"{name} is a link or has no chunks' subject")
        subject = OBJ_CHUNKS_PRE_TEMPLATE.format(bucket=self.bucket, obj=info.nuid)
        digest, size, after = hashlib.sha256(), 0, 0
        for _ in range(info.chunks or 0):
            chunk = await self._next_chunk(subject, after)
            digest.update(chunk.data)
            file.write(chunk.data)
            size += len(chunk.data)
            after = chunk.seq
        expected = (info.digest or "").removeprefix(OBJ_DIGEST_TYPE)
        if size != info.size or base64.urlsafe_b64encode(digest.digest()).decode() != expected:
            raise SnapshotStoreError(f"{name}: {size} bytes read whose SHA-256 is not the "
                                     f"object's ({info.size} bytes)")

    async def _next_chunk(self, subject: str, after: int) -> api.RawStreamMsg:
        """The first message on ``subject`` after stream sequence ``after``. Not found is asked
        again briefly: the replica that answered may not have the newest chunks yet."""
        deadline = time.monotonic() + CHUNK_RETRY_S
        while True:
            try:
                return await self._js.get_msg(self._store_stream, seq=after + 1, next=True,
                                              subject=subject, direct=True)
            except nats.js.errors.NotFoundError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(OPEN_RETRY_PAUSE_S)

    async def delete(self, snapshot: StoredSnapshot) -> None:
        try:
            await asyncio.wait_for(self._store.delete(snapshot.name), LIST_TIMEOUT_S)
        except nats.js.errors.ObjectNotFoundError:
            return  # deleted by another replica meanwhile
        except (*_TRANSIENT, nats.errors.Error) as error:
            raise SnapshotStoreError(f"object store {self.bucket}: {snapshot.name} not "
                                     f"deleted ({error!r})") from error

    async def prune(self, keep: int) -> list[StoredSnapshot]:
        """Delete all but the stream's newest ``keep`` snapshots, and every snapshot of an
        earlier stream of the same name; return those deleted."""
        if keep < 1:
            raise ValueError(f"keep must be >= 1, got {keep}")
        every = await self._all()
        foreign = [s for s in every if self.foreign(s)]
        if foreign:
            log.warning("object store %s: deleting %d snapshots of an earlier stream of the "
                        "same name (this one was created %s)", self.bucket, len(foreign),
                        self.stream_created)
        deleted = foreign + [s for s in every if not self.foreign(s)][:-keep]
        for snapshot in deleted:
            await self.delete(snapshot)
        return deleted


def _passing(error: Exception) -> bool:
    """Whether asking again may succeed: no answer, or a cluster still placing its peers (a
    refusal for any other reason, such as a full account, would only be repeated)."""
    if isinstance(error, _TRANSIENT):
        return True
    if not isinstance(error, nats.js.errors.APIError):
        return False  # an invalid bucket name, a closed connection
    return (error.code or 0) >= 500 or error.err_code == NO_PEERS_YET


async def _find_or_create(js: JetStreamContext, bucket: str, replicas: int) -> ObjectStore:
    with contextlib.suppress(nats.js.errors.BucketNotFoundError):
        return await js.object_store(bucket)
    config = api.ObjectStoreConfig(description="crowdex: the venue's snapshots",
                                   storage=api.StorageType.FILE, replicas=replicas)
    try:
        store = await js.create_object_store(bucket, config=config)
    except nats.js.errors.BadRequestError as error:
        if error.err_code == NO_PEERS_YET:
            raise  # asked again by the caller
        # Another replica created it between our look and our create: use theirs.
        return await js.object_store(bucket)
    log.info("created object store %s (%d copies, file storage)", bucket, replicas)
    return store
