"""``crowdex settle``: the operator's settlement tool, against a running server.

    crowdex settle [--url URL] [--operator-key KEY] run          # run a batch (progress bar)
    crowdex settle list | show ID | report ID [-o FILE]
    crowdex settle reconcile                                     # exit 1 on a break
    crowdex settle resolve --note "why the difference is accepted"

The key comes from ``--operator-key`` or ``CROWDEX_OPERATOR_KEY``; the URL from ``--url`` or
``CROWDEX_URL`` (default http://127.0.0.1:8080). Exit codes: 0 done, 1 refused or a break,
2 usage or connection errors.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from typing import Any, TextIO

import aiohttp

from engine.private import FILE_MODE, open_private

DEFAULT_URL = "http://127.0.0.1:8080"
POLL_INTERVAL_S = 0.2
BAR_WIDTH = 40
REQUEST_TIMEOUT_S = 3600.0  # a batch of millions of legs takes a while


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="crowdex settle", description=__doc__.split("\n\n")[0])
    p.add_argument("--url", default=os.environ.get("CROWDEX_URL", DEFAULT_URL),
                   help=f"the running server (CROWDEX_URL; default {DEFAULT_URL})")
    p.add_argument("--operator-key", default=os.environ.get("CROWDEX_OPERATOR_KEY"),
                   help="an operator's API key (prefer CROWDEX_OPERATOR_KEY: a command line "
                   "is visible in ps)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    sub = p.add_subparsers(dest="action")
    sub.add_parser("run", help="run a settlement batch (the default)")
    sub.add_parser("list", help="the latest batches")
    show = sub.add_parser("show", help="one batch")
    show.add_argument("batch_id", type=int, help="the batch's id")
    report = sub.add_parser("report", help="a batch's custodian instructions (CSV)")
    report.add_argument("batch_id", type=int, help="the batch's id")
    report.add_argument("-o", "--output", help="write to this file instead of stdout")
    sub.add_parser("reconcile", help="ledger against engine; exit 1 on a break")
    resolve = sub.add_parser("resolve", help="accept the current breaks")
    resolve.add_argument("--note", required=True,
                         help="why the differences are accepted (kept with them)")
    return p


def write_private(path: str, text: str) -> None:
    """A report names every account's money: mode 0600, also when it replaces a file."""
    fd = open_private(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    os.fchmod(fd, FILE_MODE)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)


def draw_bar(progress: dict, out: TextIO) -> None:
    total, done = progress.get("legs_total", 0), progress.get("legs_written", 0)
    fraction = done / total if total else 0.0
    filled = int(BAR_WIDTH * fraction)
    out.write(f"\rbatch {progress.get('batch_id') or '-'} [{'#' * filled}"
              f"{'.' * (BAR_WIDTH - filled)}] {done:,}/{total:,} legs "
              f"{progress.get('elapsed_seconds', 0):.1f}s ")
    out.flush()


async def _request(session: aiohttp.ClientSession, method: str, url: str,
                   body: Any = None) -> tuple[int, Any]:
    async with session.request(method, url, json=body) as response:
        text = await response.text()
        if response.content_type == "application/json":
            return response.status, json.loads(text)
        return response.status, text


async def _run_batch(session: aiohttp.ClientSession, base: str, quiet: bool) -> tuple[int, Any]:
    batch = asyncio.create_task(_request(session, "POST", base + "/v1/settlement/batches"))
    while not quiet:
        done, _ = await asyncio.wait({batch}, timeout=POLL_INTERVAL_S)
        if done:
            break
        status, progress = await _request(session, "GET", base + "/v1/settlement/progress")
        if status == 200 and progress.get("legs_total"):
            draw_bar(progress, sys.stderr)
    result = await batch
    if not quiet:
        sys.stderr.write("\n")
    return result


async def _main(args: argparse.Namespace) -> int:
    headers = {"Authorization": f"Bearer {args.operator_key}", "Accept": "application/json"}
    base = args.url.rstrip("/")
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
    async with aiohttp.ClientSession(headers=headers, timeout=timeout) as session:
        action = args.action or "run"
        if action == "run":
            status, body = await _run_batch(session, base, args.quiet)
        elif action == "list":
            status, body = await _request(session, "GET", base + "/v1/settlement/batches")
        elif action == "show":
            status, body = await _request(session, "GET",
                                          f"{base}/v1/settlement/batches/{args.batch_id}")
        elif action == "report":
            status, body = await _request(
                session, "GET", f"{base}/v1/settlement/batches/{args.batch_id}/report")
            if status == 200:
                if args.output:
                    write_private(args.output, body)
                else:
                    sys.stdout.write(body)
                return 0
        elif action == "reconcile":
            status, body = await _request(session, "GET", base + "/v1/settlement/reconciliation")
            print(json.dumps(body, indent=2))
            return 0 if status == 200 and body.get("balanced") else 1
        else:
            status, body = await _request(session, "POST",
                                          base + "/v1/settlement/reconciliation/resolve",
                                          {"note": args.note})
    print(json.dumps(body, indent=2) if not isinstance(body, str) else body)
    return 0 if status < 300 else 1


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(sys.argv[1:] if argv is None else argv)
    if not args.operator_key:
        print("crowdex settle: give --operator-key or set CROWDEX_OPERATOR_KEY", file=sys.stderr)
        return 2
    try:
        return asyncio.run(_main(args))
    except aiohttp.ClientError as error:
        print(f"crowdex settle: cannot reach {args.url}: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
