"""``/openapi.json`` tells the truth, and schemathesis finds nothing the server does against it.

The document is checked against API.md's words (lists are arrays, every query parameter it names
is declared, ``terms`` a board, times ``date-time``, the CSV and metrics media types, optional
bodies not ``required``); then schemathesis runs, bounded, against a real ``crowdex serve`` with
PostgreSQL and demo data, once with the operator's key and once with a demo investor's.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from gateway import openapi
from gateway.app import all_routes
from tests.conftest import OPERATOR_KEY, ServerProcess
from tests.gateway.conftest import OPERATOR

# Bounded: a few examples per operation and phase, so a run takes seconds, not minutes.
EXAMPLES_PER_OPERATION = int(os.environ.get("CROWDEX_SCHEMATHESIS_EXAMPLES", "8"))
SEED = int(os.environ.get("CROWDEX_SCHEMATHESIS_SEED", "20261205"))
RUN_TIMEOUT_S = 120
# Per request: schemathesis counts a slower answer as a failure. The server answers in
# milliseconds, but on a shared 2-core machine under load one answer once took 11 s to reach
# the client (the server's access log: handled in 1 ms, nothing else logged meanwhile).
REQUEST_TIMEOUT_S = 30
# Two checks assert what API.md rules out: `positive_data_acceptance` wants every schema-valid
# request accepted (business rules refuse many with 404, 409 or 422, and JSON Schema calls 1.0
# an integer where API.md refuses it), and `missing_required_header` wants 401 before a
# malformed body's 400 (API.md: 400 first). Every other check runs.
EXCLUDED_CHECKS = "positive_data_acceptance,missing_required_header"
DEMO_KEY_LINE = re.compile(r"crowdex demo: (.+?): (\S+)$", re.MULTILINE)
DEMO_INVESTOR = "Li Wei"  # qualified, funded, holds units after the demo's closed offerings


@pytest.fixture(scope="module")
def spec() -> dict:
    return openapi.build(all_routes())


def _operation(spec: dict, method: str, path: str) -> dict:
    return spec["paths"][path][method.lower()]


def _ok(spec: dict, method: str, path: str) -> dict:
    responses = _operation(spec, method, path)["responses"]
    return next(r for status, r in responses.items() if status.startswith("2"))


def _resolve(spec: dict, schema: dict) -> dict:
    while "$ref" in schema:
        schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


@pytest.mark.parametrize("path", [
    "/v1/projects", "/v1/orders", "/v1/me/subscriptions", "/v1/offers",
    "/v1/projects/{project_id}/allocations", "/v1/projects/{project_id}/schedule",
    "/v1/projects/{project_id}/distributions", "/v1/projects/{project_id}/disclosures",
    "/v1/instruments/{instrument_id}/trades", "/v1/instruments/{instrument_id}/candles",
])
def test_list_endpoints_answer_arrays(spec, path):
    schema = _ok(spec, "GET", path)["content"]["application/json"]["schema"]
    assert schema["type"] == "array" and "$ref" in schema["items"]


@pytest.mark.parametrize("path,names", [
    ("/v1/projects", {"board", "status", "limit"}),
    ("/v1/orders", {"status"}),
    ("/v1/instruments/{instrument_id}/book", {"depth"}),
    ("/v1/instruments/{instrument_id}/trades", {"limit"}),
    ("/v1/instruments/{instrument_id}/candles", {"interval", "limit"}),
    ("/v1/integrity", {"month"}),
    ("/v1/offers", {"instrument_id"}),
    ("/v1/settlement/batches", {"limit"}),
])
def test_every_query_parameter_is_declared(spec, path, names):
    params = _operation(spec, "GET", path)["parameters"]
    assert {p["name"] for p in params if p["in"] == "query"} == names


def test_board_and_status_are_enums_and_terms_follow_the_board(spec):
    params = {p["name"]: p["schema"] for p in _operation(spec, "GET", "/v1/projects")
              ["parameters"]}
    assert set(params["board"]["enum"]) >= {"equity", "debt", "ip", "product"}
    assert "pending_review" in params["status"]["enum"]
    request = spec["components"]["schemas"]["CreateProjectRequest"]
    assert request["discriminator"]["propertyName"] == "board"
    for board, ref in request["discriminator"]["mapping"].items():
        variant = _resolve(spec, {"$ref": ref})
        assert variant["properties"]["board"]["enum"] == [board]
        terms = _resolve(spec, variant["properties"]["terms"])
        assert terms["type"] == "object" and terms["properties"], board
    debt = _resolve(spec, {"$ref": request["discriminator"]["mapping"]["debt"]})
    assert "repayment" in _resolve(spec, debt["properties"]["terms"])["properties"]
    view = spec["components"]["schemas"]["ProjectView"]["properties"]
    assert view["board"]["enum"] == params["board"]["enum"]


@pytest.mark.parametrize("schema,field", [
    ("ProjectView", "deadline"), ("Order", "created"), ("Trade", "time"), ("Candle", "time"),
    ("ClockResult", "now"), ("InstalmentView", "due"), ("CreateProjectRequest_equity",
                                                         "deadline"),
])
def test_times_are_date_time(spec, schema, field):
    assert spec["components"]["schemas"][schema]["properties"][field]["format"] == "date-time"


@pytest.mark.parametrize("month,valid", [("2026-01", True), ("1970-12", True),
                                         ("1969-12", False), ("2026-13", False),
                                         ("2026-00", False), ("2026-1", False)])
def test_the_month_pattern_is_the_servers(spec, month, valid):
    from boards.integrity import parse_month

    params = _operation(spec, "GET", "/v1/integrity")["parameters"]
    pattern = next(p for p in params if p["name"] == "month")["schema"]["pattern"]
    assert bool(re.match(pattern, month)) == valid
    try:
        parse_month(month)
    except ValueError:
        assert not valid
    else:
        assert valid


def test_media_types_and_optional_bodies(spec):
    report = _ok(spec, "GET", "/v1/settlement/batches/{batch_id}/report")["content"]
    assert list(report) == ["text/csv"]
    assert list(_ok(spec, "GET", "/metrics")["content"]) == ["text/plain"]
    for path in ("/v1/settlement/batches", "/v1/projects/{project_id}/delivery"):
        assert _operation(spec, "POST", path)["requestBody"]["required"] is False, path
    assert _operation(spec, "POST", "/v1/orders")["requestBody"]["required"] is True
    ids = _operation(spec, "GET", "/v1/orders/{order_id}")["parameters"][0]["schema"]
    assert ids == {"type": "integer", "minimum": 1, "maximum": 2**53}


async def test_a_405_says_which_methods_the_path_has(client):
    response = await client.put("/v1/orders", headers=OPERATOR)
    assert response.status == 405
    assert response.headers["Allow"] == "GET, POST"
    assert (await response.json())["error"]["code"] == "method_not_allowed"
    response = await client.request("TRACE", "/healthz")
    assert response.status == 405 and response.headers["Allow"] == "GET"


async def test_the_served_document_is_the_built_one(client, spec):
    response = await client.get("/openapi.json")
    assert response.status == 200 and await response.json() == json.loads(json.dumps(spec))


# ---- schemathesis against a live server ------------------------------------------------------


@pytest.fixture(scope="module")
def live_server(tmp_path_factory: pytest.TempPathFactory):
    """``crowdex serve --demo`` with PostgreSQL on a loopback port, limits out of the way."""
    server = ServerProcess(tmp_path_factory.mktemp("schemathesis") / "data", "--demo",
                           "--rate-limit", "1000000", "--no-fsync")
    server.start()
    yield server
    assert server.stop() == 0


def _demo_investor_key(server: ServerProcess) -> str:
    return dict(DEMO_KEY_LINE.findall(server.log_path.read_text()))[DEMO_INVESTOR]


def _responses_served(url: str) -> int:
    with urllib.request.urlopen(url + "/metrics", timeout=10) as response:
        text = response.read().decode()
    return sum(int(float(line.rsplit(" ", 1)[1])) for line in text.splitlines()
               if line.startswith("crowdex_http_responses_total{"))


def _schemathesis(server: ServerProcess, key: str, report: Path) -> tuple[int, str]:
    args = [str(Path(sys.executable).with_name("st")), "run", server.url + "/openapi.json",
            "--header", f"Authorization: Bearer {key}", "--checks", "all",
            "--exclude-checks", EXCLUDED_CHECKS, "--max-examples", str(EXAMPLES_PER_OPERATION),
            "--seed", str(SEED), "--workers", "1", "--no-color",
            "--request-timeout", str(REQUEST_TIMEOUT_S), "--generation-database", "none",
            "--report", "junit", "--report-junit-path", str(report)]
    # One worker: with two, two threads build hypothesis strategies at once, and CPython 3.11's
    # AST constructor keeps its recursion depth per interpreter, not per thread (cpython
    # gh-106905), so hypothesis reading a lambda's source failed once with "SystemError: AST
    # constructor recursion depth mismatch" in a full run.
    # Run in the test's folder: schemathesis keeps a cache of its own in the working directory.
    done = subprocess.run(args, capture_output=True, text=True, timeout=RUN_TIMEOUT_S,
                          cwd=report.parent)
    return done.returncode, done.stdout + done.stderr


@pytest.mark.parametrize("who", ["operator", "investor"])
def test_schemathesis_finds_nothing(live_server, who, tmp_path, record_property):
    key = OPERATOR_KEY if who == "operator" else _demo_investor_key(live_server)
    before = _responses_served(live_server.url)
    started = time.monotonic()
    code, output = _schemathesis(live_server, key, tmp_path / "junit.xml")
    seconds = time.monotonic() - started
    requests = _responses_served(live_server.url) - before
    summary = output[output.rfind("SUMMARY"):] if "SUMMARY" in output else output[-3000:]
    print(f"schemathesis as {who}: {requests} requests in {seconds:.1f} s\n{summary}")
    record_property("schemathesis_requests", requests)
    assert code == 0, output[-20000:]
    assert " 0 failures" in summary or "failures" not in summary.split("Test cases:")[-1]
    assert requests > 500  # it really ran
    log = live_server.log_path.read_text()
    # The key is never logged (a demo key is printed once, at seeding).
    assert log.count(key) == (1 if who == "investor" else 0) and "Traceback" not in log
