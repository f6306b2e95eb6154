"""A command's answer (``Reply``) and an answer kept for a retry (``Stored``): plain data, which
the machine, its components and the references table all make and read."""

from __future__ import annotations

from typing import Any

import msgspec


class Reply(msgspec.Struct, array_like=True, gc=False):
    """A command's answer. ``gc=False``: a reply refers to no reply (its body is plain data),
    so it is in no reference cycle, and the collector need not scan the ones kept."""

    status: int
    body: Any


class Stored(msgspec.Struct, array_like=True, gc=False):
    """A remembered reply: idempotent requests and deposit/withdrawal references (in no
    reference cycle either: ``gc=False``)."""

    fingerprint: str
    time_us: int
    reply: Reply
