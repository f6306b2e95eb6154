"""The client's retries: 429 and 503 are tried again after ``Retry-After`` with the same
``Idempotency-Key``; a key is made up for every POST and DELETE that has none; refusals that a
retry cannot change are raised at once. Against a scripted loopback server."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from crowdex_client import NO_RETRY, ApiError, AsyncClient, Client, Retry, models

ERROR_429 = (429, {"Retry-After": "0.2"}, {"error": {"code": "rate_limited", "message": "slow"}})
ERROR_503 = (503, {"Retry-After": "0.1"}, {"error": {"code": "unavailable", "message": "down"}})
ERROR_409 = (409, {}, {"error": {"code": "wrong_state", "message": "no"}})
CREATED = (201, {}, {"account_id": 5, "cash_available": 100})


class Script:
    """What the stub answers, in order, and what it was sent."""

    def __init__(self) -> None:
        self.answers: list[tuple[int, dict, dict]] = []
        self.seen: list[tuple[str, str, dict[str, str], float]] = []


@pytest.fixture
def stub() -> Iterator[tuple[str, Script]]:
    script = Script()

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            self.rfile.read(length)
            script.seen.append((self.command, self.path, dict(self.headers), time.monotonic()))
            status, headers, body = script.answers.pop(0)
            data = json.dumps(body).encode()
            self.send_response(status)
            for name, value in {**headers, "Content-Type": "application/json",
                                "Content-Length": str(len(data))}.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_DELETE = _answer

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", script
    server.shutdown()
    server.server_close()
    thread.join()


def test_429_and_503_are_retried_after_retry_after_with_the_same_key(stub):
    url, script = stub
    script.answers = [ERROR_429, ERROR_503, CREATED]
    with Client(url, "cdx_k") as cx:
        assert cx.deposit(5, 100, "r1") == models.DepositResult(5, 100)
    keys = {seen[2]["Idempotency-Key"] for seen in script.seen}
    assert len(script.seen) == 3 and len(keys) == 1 and keys != {""}
    gaps = [b[3] - a[3] for a, b in zip(script.seen, script.seen[1:], strict=False)]
    assert gaps[0] >= 0.19 and gaps[1] >= 0.09  # Retry-After was honoured
    assert all(seen[2]["Authorization"] == "Bearer cdx_k" for seen in script.seen)


def test_every_post_and_delete_gets_a_key_of_its_own_unless_given(stub):
    url, script = stub
    script.answers = [CREATED, CREATED, CREATED, (200, {}, {"ok": True})]
    with Client(url) as cx:
        cx.deposit(5, 100, "a")
        cx.deposit(5, 100, "b")
        cx.deposit(5, 100, "c", idempotency_key="mine")
        cx.request("DELETE", "/v1/orders/1")
    keys = [seen[2].get("Idempotency-Key") for seen in script.seen]
    assert keys[0] != keys[1] and keys[2] == "mine" and keys[3]


def test_gets_carry_no_key_and_other_refusals_are_not_retried(stub):
    url, script = stub
    script.answers = [ERROR_409]
    with Client(url) as cx, pytest.raises(ApiError) as refused:
        cx.me()
    assert (refused.value.status, refused.value.code) == (409, "wrong_state")
    assert len(script.seen) == 1 and "Idempotency-Key" not in script.seen[0][2]


def test_the_last_try_raises_with_retry_after(stub):
    url, script = stub
    script.answers = [ERROR_429, ERROR_429]
    with Client(url, retry=Retry(tries=2, wait_max_s=0.05)) as cx, \
            pytest.raises(ApiError) as refused:
        cx.me()
    assert refused.value.code == "rate_limited" and refused.value.retry_after_s == 0.2
    script.answers = [ERROR_503]
    with Client(url, retry=NO_RETRY) as cx, pytest.raises(ApiError):
        cx.me()


def test_a_refused_connection_is_retried_then_raised():
    with Client("http://127.0.0.1:9", retry=Retry(tries=3, backoff_first_s=0.01)) as cx:
        started = time.monotonic()
        with pytest.raises(OSError):
            cx.health()
        assert time.monotonic() - started >= 0.03  # 0.01 + 0.02 of backoff


async def test_the_async_client_retries_the_same_way(stub):
    url, script = stub
    script.answers = [ERROR_503, CREATED]
    async with AsyncClient(url, "cdx_k") as cx:
        assert await cx.deposit(5, 100, "r1") == models.DepositResult(5, 100)
    assert len(script.seen) == 2
    assert script.seen[0][2]["Idempotency-Key"] == script.seen[1][2]["Idempotency-Key"]
