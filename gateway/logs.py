"""The server's log lines: one JSON object a line, with the request id on every line a request
causes, one access line per request, and no secrets.

The request id lives in a context variable the ``request_id`` middleware sets for the length
of a request, so a line logged anywhere below it (a handler, settlement, the WebSocket's
reader) carries it without being passed along; a filter copies it onto each record when the
record is made, in the request's own context. The access line names the method, path, status,
duration and request id, and never a header: keys travel in ``Authorization``, which is not
logged, and anything in a message that looks like a bearer token or an API key is masked.
``configure_logging`` in gateway/app.py installs this; it is the one place logging is set up.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import re
import time
from contextvars import ContextVar
from typing import Any, TextIO

import msgspec

REQUEST_ID: ContextVar[str | None] = ContextVar("crowdex_request_id", default=None)
ACCESS_LOGGER = "crowdex.access"
HANDLER_NAME = "crowdex"
FORMATS = ("json", "text")
# A bearer token, or an API key as this server makes them (cdx_ and 32 URL-safe characters).
_SECRET = re.compile(r"(Bearer\s+)\S+|\b(cdx_)[A-Za-z0-9_-]{8,}", re.IGNORECASE)
_SECRET_MASK = "[redacted]"
_encoder = msgspec.json.Encoder()

access_log = logging.getLogger(ACCESS_LOGGER)


def mask_secrets(text: str) -> str:
    """``text`` with bearer tokens and API keys replaced by a mark."""
    if "cdx_" not in text and "earer" not in text:  # the common case costs two finds
        return text
    return _SECRET.sub(lambda m: (m.group(1) or m.group(2)) + _SECRET_MASK, text)


class RequestIdFilter(logging.Filter):
    """Stamps each record with the request id of the context it is logged in."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = REQUEST_ID.get()
        return True


class JsonFormatter(logging.Formatter):
    """``{"time", "level", "logger", "message", "request_id"?, ...fields, "exc"?}``."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": _utc(record.created), "level": record.levelname, "logger": record.name,
            "message": mask_secrets(record.getMessage()),
        }
        request_id = getattr(record, "request_id", None)
        if request_id is not None:
            line["request_id"] = request_id
        fields = getattr(record, "fields", None)
        if fields:
            line.update(fields)
        if record.exc_info:
            line["exc"] = mask_secrets(self.formatException(record.exc_info))
        return _encoder.encode(line).decode()


class TextFormatter(logging.Formatter):
    """For a person at a terminal: the same facts on one plain line."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = mask_secrets(super().format(record))
        request_id = getattr(record, "request_id", None)
        return text if request_id is None else f"{text} request_id={request_id}"


def handler(stream: TextIO, fmt: str = "json") -> logging.Handler:
    """A stream handler writing ``fmt`` (json or text) lines, request ids stamped."""
    if fmt not in FORMATS:
        raise ValueError(f"log format must be one of {FORMATS}")
    out = logging.StreamHandler(stream)
    out.addFilter(RequestIdFilter())
    out.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    out.set_name(HANDLER_NAME)
    return out


class AccessLog:
    """Writes one access line per request straight to the log's stream, in the JSON formatter's
    shape, under the handler's lock (so lines from threads never interleave).

    It is the per-request cost of logging, so it skips what the logging module does for a
    general record (a LogRecord, caller and process lookups, filters): 3 us a request instead
    of 13 us through ``logging.info``. The lines of one turn of the event loop go out in one
    write at its end (under load, many requests finish in a turn: one system call for them
    all). The text format goes through logging, for a terminal.
    """

    def __init__(self, out: logging.StreamHandler, fmt: str) -> None:
        self.out = out
        self.json = fmt == "json"
        self._second = -1
        self._stamp = ""
        self._pending: list[str] = []

    def __call__(self, method: str, path: str, status: int, seconds: float, request_id: str,
                 remote: str | None) -> None:
        duration_ms = round(seconds * 1000, 3)
        path = mask_secrets(path)
        if not self.json:
            access_log.info("%s %s %d %.3f ms", method, path, status, duration_ms,
                            extra={"request_id": request_id})
            return
        line = _encoder.encode({
            "time": self._utc(time.time()), "level": "INFO", "logger": ACCESS_LOGGER,
            "message": f"{method} {path} {status} {duration_ms:.3f} ms",
            "request_id": request_id, "method": method, "path": path, "status": status,
            "duration_ms": duration_ms, "remote": remote,
        })
        self._pending.append(line.decode())
        if len(self._pending) == 1:  # the first line of this turn: write them at its end
            try:
                asyncio.get_running_loop().call_soon(self.flush)
            except RuntimeError:  # no event loop: write it now
                self.flush()

    def flush(self) -> None:
        lines, self._pending = self._pending, []
        if lines:
            with self.out.lock:
                self.out.stream.write("\n".join(lines) + "\n")

    def _utc(self, now: float) -> str:
        second = int(now)
        if second != self._second:  # the date part changes once a second
            self._second, self._stamp = second, time.strftime("%Y-%m-%dT%H:%M:%S",
                                                              time.gmtime(second))
        return f"{self._stamp}.{int((now - second) * 1_000_000):06d}Z"


_access: AccessLog | None = None


def install(out: logging.StreamHandler, fmt: str) -> None:
    """Send access lines to ``out`` (configure_logging calls this)."""
    global _access
    if _access is not None:
        _access.flush()
    _access = AccessLog(out, fmt)
    atexit.register(_access.flush)  # lines of the last turn, should the loop stop first


def access(method: str, path: str, status: int, seconds: float, request_id: str,
           remote: str | None) -> None:
    """One INFO line for a finished request (headers, bodies and query strings left out);
    nothing until configure_logging has run."""
    if _access is not None:
        _access(method, path, status, seconds, request_id, remote)


def _utc(created: float) -> str:
    seconds = int(created)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + (
        f".{int((created - seconds) * 1_000_000):06d}Z")
