"""The journal thread's write and fsync, compiled to run without the interpreter lock.

The sequencer hands each batch to the journal's own thread (``engine.sequencer.JournalThread``).
A Python thread there takes the interpreter lock back after every call that blocks: when the
batch is handed over, when its write returns and when its fsync returns. The event loop holds
the lock nearly all the time at load, so each of those waits out the loop's switch interval:
about half a millisecond a batch on the path of every acknowledgement (a probe beside a busy
loop: 0.7 ms from handoff to the loop seeing the batch durable, against 0.2 ms this way).

``serve`` is that thread's loop with no lock to take back: it reads requests from a pipe, writes
each batch to the journal's descriptor, fdatasyncs it, and writes the outcome to another pipe
that the event loop watches. It calls the C library directly (``write``, ``read``, ``fsync``,
``fdatasync``, ``clock_gettime``; numba's external functions, resolved in the process), so it
is Linux's.
A batch that starts a segment (the journal's first, or a roll) comes with the directory's
descriptor: the loop made the file and wrote its header (``FileJournal.direct_target``), and
this loop makes the header and then the name durable before it writes the batch. Anything
else (an append the journal must check or refuse itself, a failed call) returns to the
thread's Python, which does it the plain way. Python there would need the interpreter lock
back to re-enter this loop, which beside a busy event loop can take seconds.

A request is ``REQUEST_WORDS`` int64: its kind, the descriptor, the address and the length of
the bytes (kept alive by the sender until the outcome comes back), the directory's descriptor
to fsync first or -1, and the address and the length of zeros to write after the bytes, the
descriptor's position then put back to the bytes' end (``engine.journal``: room written ahead
of the records, so that the next batches' syncs write their data alone). An outcome is
``DONE_WORDS`` int64: the bytes written, the fsync's nanoseconds (0 without one) and the
errno of a failed call.
"""

from __future__ import annotations

from numba import types

from engine.kernels.jit import kernel

REQUEST_WORDS = 7
DONE_WORDS = 3

# Request kinds.
STOP = 0
WRITE_SYNC = 1  # write every byte, then fdatasync
WRITE = 2  # write every byte (a journal opened with sync=False)
PYTHON = 3  # return to the thread's Python, which has work queued

# Why ``serve`` returned (besides STOP and PYTHON).
WRITE_FAILED = 4  # ``done[0]`` holds the bytes written before it, ``done[2]`` the errno
FSYNC_FAILED = 5  # ``done[2]`` holds the errno
PIPE_FAILED = 6  # the request pipe could not be read

_CLOCK_MONOTONIC = 1  # Linux
_SEEK_CUR = 1
_EINTR = 4  # a call interrupted by a signal: made again, as Python's os calls do

_write = types.ExternalFunction("write", types.intp(types.int32, types.intp, types.uintp))
_lseek = types.ExternalFunction("lseek", types.int64(types.int32, types.int64, types.int32))
_read = types.ExternalFunction("read", types.intp(types.int32, types.intp, types.uintp))
_fsync = types.ExternalFunction("fsync", types.int32(types.int32))
_fdatasync = types.ExternalFunction("fdatasync", types.int32(types.int32))
_clock_gettime = types.ExternalFunction("clock_gettime", types.int32(types.int32, types.intp))
_errno_location = types.ExternalFunction("__errno_location", types.intp())
_memcpy = types.ExternalFunction("memcpy", types.intp(types.intp, types.intp, types.uintp))

# ``serve``'s one signature: the pipes' descriptors and the three int64 scratch arrays.
SERVE_SIGNATURE = "int64(int64, int64, int64[::1], int64[::1], int64[::1])"

@kernel(nogil=True)
def _now_ns(clock) -> int:
    _clock_gettime(_CLOCK_MONOTONIC, clock.ctypes.data)
    return clock[0] * 1_000_000_000 + clock[1]


@kernel(nogil=True)
def _keep_errno(done) -> None:
    done[2] = 0
    _memcpy(done.ctypes.data + 16, _errno_location(), 4)  # errno is a C int


@kernel(nogil=True)
def _sync_retried(descriptor, done, data_only) -> bool:
    """fsync ``descriptor`` (``data_only``: fdatasync, the data and what reading it needs, the
    file's size, not its times), again when a signal interrupted it and never after a real
    failure (see FileJournal), whose errno is left in ``done``. A batch written over the zeros
    ahead of a segment's records then costs the disk one write, not two (``engine.journal``:
    158 against 290 us a sync here, 73 against 115 us of CPU)."""
    while (_fdatasync(descriptor) if data_only else _fsync(descriptor)) != 0:
        _keep_errno(done)
        if done[2] != _EINTR:
            return False
    return True


@kernel(nogil=True)
def _write_all(descriptor, address, length, done) -> int:
    """Write ``length`` bytes from ``address``, again after a signal; how many were written
    (fewer on a failure, whose errno is left in ``done``)."""
    written = 0
    while written < length:
        count = _write(descriptor, address + written, length - written)
        if count < 0:
            _keep_errno(done)
            if done[2] == _EINTR:
                continue
            return written
        written += count
    return written


@kernel(nogil=True)
def serve(requests: int, outcomes: int, request, done, clock) -> int:
    """Serve requests from the pipe ``requests`` until one this loop does not do; each batch
    written is answered on the pipe ``outcomes``. Returns STOP, PYTHON or why it failed.

    ``request`` (REQUEST_WORDS), ``done`` (DONE_WORDS) and ``clock`` (2) are int64 scratch
    arrays of the caller's; after a failure ``done`` says how far the batch got."""
    size = REQUEST_WORDS * 8
    while True:
        got = 0
        while got < size:  # one atomic pipe write a request; a short read only on a signal
            count = _read(requests, request.ctypes.data + got, size - got)
            if count <= 0:
                _keep_errno(done)
                if count < 0 and done[2] == _EINTR:
                    continue
                return PIPE_FAILED
            got += count
        kind = request[0]
        if kind != WRITE_SYNC and kind != WRITE:
            return kind
        descriptor = request[1]
        address = request[2]
        length = request[3]
        directory = request[4]
        zeros_address = request[5]
        zeros = request[6]
        done[0] = 0
        done[1] = 0
        done[2] = 0
        if directory >= 0:  # a new segment: its header, then its name, durable first
            if (not _sync_retried(descriptor, done, False)
                    or not _sync_retried(directory, done, False)):
                return FSYNC_FAILED
        written = _write_all(descriptor, address, length, done)
        done[0] = written
        if written < length:
            return WRITE_FAILED
        if zeros > 0:  # room ahead of the records, then back to where they end
            # As many as the disk takes: a full disk (or file size limit) refuses the room,
            # not the batch, which is written already.
            zeros = _write_all(descriptor, zeros_address, zeros, done)
            done[2] = 0
            if zeros > 0 and _lseek(descriptor, -zeros, _SEEK_CUR) < 0:
                _keep_errno(done)
                return WRITE_FAILED
        if kind == WRITE_SYNC:
            started = _now_ns(clock)
            if not _sync_retried(descriptor, done, True):
                return FSYNC_FAILED
            done[1] = max(_now_ns(clock) - started, 1)
        if _write_all(outcomes, done.ctypes.data, DONE_WORDS * 8, done) < DONE_WORDS * 8:
            return PIPE_FAILED
