"""Request helpers shared by every route: body decoding, content negotiation, auth, replies.

Handlers follow API.md's validation order: decode and validate the body (400), then the
caller's key (401), then the role (403); existence, state and business rules come from the
engine's reply.
"""

from __future__ import annotations

import functools
import hashlib
import re
from typing import Any, TypeVar

import msgspec
from aiohttp import web

from engine.errors import CrowdexError
from engine.machine import AccountInfo, Reply
from gateway import keys, schemas

MSGPACK = "application/msgpack"
JSON = "application/json"

T = TypeVar("T")

_json_encoder = msgspec.json.Encoder()
_msgpack_encoder = msgspec.msgpack.Encoder()
_field_re = re.compile(r"`([^`]*)`")
_NO_NUL_REFUSAL = f"Expected `str` matching regex {schemas.NO_NUL!r}"
# ASCII only: str.isdigit() also accepts "²" or "①", which int() refuses. Sixteen digits cover
# 2^53 and keep int() far from its limit on digits.
_uint_re = re.compile(r"[0-9]{1,16}\Z")

PRINCIPAL_KEY = "crowdex_principal"
KEY_HASHES_CACHED = 8192


@functools.lru_cache(maxsize=KEY_HASHES_CACHED)
def key_hash(api_key: str) -> str:
    """The stored form of an API key (SHA-256), cached for the keys in active use."""
    return hashlib.sha256(api_key.encode()).hexdigest()


def _validation_error(error: msgspec.ValidationError) -> CrowdexError:
    text = str(error)
    names = _field_re.findall(text)
    if text.startswith("Object missing required field"):
        return CrowdexError("missing_field", f"missing field {names[0] if names else ''}")
    if text.startswith("Object contains unknown field"):
        return CrowdexError("unknown_field", f"unknown field {names[0] if names else ''}")
    if text.startswith(_NO_NUL_REFUSAL):  # say what is wrong, not the regex
        return CrowdexError("invalid_field", "text must not contain the NUL character"
                            + text[len(_NO_NUL_REFUSAL):])
    return CrowdexError("invalid_field", text)


def decode(raw: bytes, schema: type[T], content_type: str) -> T:
    """Decode and validate a body; msgpack when the client sent msgpack, else JSON.

    Syntax is judged before the schema (API.md's order: malformed, then invalid fields): the
    typed decoder validates as it parses, so a body that is broken after a field it refuses
    (``{"amount": 1} trailing``) is decoded once more without a type, on that error path only,
    to tell which came first.
    """
    module = msgspec.msgpack if content_type == MSGPACK else msgspec.json
    try:
        return module.decode(raw, type=schema)
    except msgspec.ValidationError as error:
        _check_syntax(module, raw, content_type)
        raise _validation_error(error) from None
    except (msgspec.DecodeError, UnicodeDecodeError) as error:  # msgpack str: bad UTF-8
        raise _undecodable(error, content_type) from None


def _check_syntax(module: Any, raw: bytes, content_type: str) -> None:
    try:
        module.decode(raw)
    except (msgspec.DecodeError, UnicodeDecodeError) as error:
        raise _undecodable(error, content_type) from None


def _undecodable(error: Exception, content_type: str) -> CrowdexError:
    code = "invalid_json" if content_type != MSGPACK else "invalid_field"
    return CrowdexError(code, f"the body could not be decoded: {error}")


def convert(value: Any, schema: type[T]) -> T:
    """Validate an already-decoded object (a WebSocket message) like a request body."""
    try:
        return msgspec.convert(value, schema)
    except msgspec.ValidationError as error:
        raise _validation_error(error) from None


async def body(request: web.Request, schema: type[T]) -> T:
    return decode(await request.read(), schema, request.content_type)


def parse_uint(text: str) -> int | None:
    """A URL's unsigned decimal (an id, a limit): up to 16 ASCII digits, else None."""
    return int(text) if _uint_re.match(text) else None


def path_id(request: web.Request, name: str) -> int:
    value = parse_uint(request.match_info[name])
    if value is None or value <= 0:
        raise CrowdexError("invalid_field", f"{name} must be a positive integer")
    return value


def query_int(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    text = request.query.get(name)
    if text is None:
        return default
    value = parse_uint(text)
    if value is None or not low <= value <= high:
        raise CrowdexError("invalid_field", f"{name} must be an integer from {low} to {high}")
    return value


def principal(request: web.Request) -> AccountInfo:
    """The caller's account, or 401."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise CrowdexError("unauthorized", "send Authorization: Bearer <api_key>")
    machine = request.app[keys.ENGINE].machine
    account_id = machine.key_index.get(key_hash(token.strip()))
    if account_id is None:
        raise CrowdexError("unauthorized", "unknown API key")
    return machine.accounts[account_id]


def require(request: web.Request, *roles: str) -> AccountInfo:
    """The caller's account if its role is one of ``roles``; 401 or 403 otherwise."""
    account = principal(request)
    if roles and account.role not in roles:
        raise CrowdexError("forbidden", f"a {account.role} may not do this")
    return account


def wants_msgpack(request: web.Request) -> bool:
    return MSGPACK in request.headers.get("Accept", "")


def respond(request: web.Request, status: int, payload: Any,
            headers: dict[str, str] | None = None) -> web.Response:
    if wants_msgpack(request):
        data, content_type = _msgpack_encoder.encode(payload), MSGPACK
    else:
        data, content_type = _json_encoder.encode(payload), JSON
    return web.Response(status=status, body=data, content_type=content_type, headers=headers)


def reply(request: web.Request, result: Reply) -> web.Response:
    return respond(request, result.status, result.body)


def error_response(request: web.Request, error: CrowdexError) -> web.Response:
    return respond(request, error.status, error.body(), error.headers)


async def submit(request: web.Request, command: Any, actor: AccountInfo) -> Reply:
    """Send a command through the sequencer with the request's idempotency key."""
    engine = request.app[keys.ENGINE]
    return await engine.submit(command, actor.account_id, request.get(keys.IDEMPOTENCY_KEY),
                               request.get(keys.REQUEST_HASH))
