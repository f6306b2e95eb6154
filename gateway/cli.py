"""The ``crowdex`` command: ``serve`` runs the exchange, ``bench`` runs the benchmarks."""

from __future__ import annotations

import argparse
import gc
import importlib
import os
import sys
from pathlib import Path

from engine.clock import parse_time_us
from gateway import localcluster
from gateway.config import RATE_LIMIT_BURST, RATE_LIMIT_PER_SECOND, Config

GC_YOUNG_THRESHOLD = 20_000  # allocations between young-generation collections (default 700)
GC_THRESHOLDS = (GC_YOUNG_THRESHOLD, 20, 20)  # what the server sets (bench recovery does too)
OPEN_FILES_UNCAPPED = 1 << 20  # the soft limit asked for when the hard one is unlimited
SWITCH_INTERVAL_S = 0.0002  # how long a busy thread keeps the interpreter from a waiting one

DEFAULT_START_TIME = "2026-01-01T00:00:00Z"
SHUTDOWN_TIMEOUT_S = 10.0

# `crowdex bench NAME ...` runs bench.NAME.main(argv); `crowdex bench --help` lists them so.
BENCHMARK_HELP = {
    "replay": "the matching kernel on a replay file (API.md's format)",
    "engine": "orders/s and batch latency against the plain-Python reference",
    "journal": "durable commands/s, group commit against one fsync per command",
    "pledges": "a burst of pledges on one limited product tier through a real server",
    "gateway": "durable orders/s and latency over HTTP and WebSocket against a bare echo",
    "settlement": "trades settled into PostgreSQL against a bare COPY",
    "recovery": "journal replay commands/s in runs against one entry at a time (order flow, "
                "or --mix mixed: a busy venue's traffic)",
    "restart": "seconds from a crash to /healthz, with a snapshot 99k entries old",
    "ci_check": "the CI gate: the engine's ratio to the reference above the floor",
    "stream": "appends and reads of the journal on a NATS JetStream cluster",
    "bootstrap": "a cluster replica's start from a shared snapshot plus the tail vs the stream",
    "cluster": "durable WebSocket orders/s and latency: file journal, JetStream R1, two "
               "replicas on R3",
    "snapshot": "the periodic snapshot's cost to the applying thread: page faults and batch "
                "times with a snapshot child alive against none",
    "reads": "a busy venue's reads of one account against the walk over the whole venue "
             "each replaced, and the state hash's stall of the event loop",
    "instructions": "a mixed journal kept in a directory: its replay's CPU rates, or its "
                    "instructions under callgrind (trees compared on the same journal)",
}
BENCHMARKS = ("replay", "engine", "journal", "pledges", "gateway", "settlement", "recovery",
              "restart", "ci_check", "stream", "bootstrap", "cluster", "snapshot", "reads",
              "instructions")


def _serve_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="run the exchange")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (%(default)s)")
    p.add_argument("--port", type=int, default=8080,
                   help="HTTP and WebSocket port (%(default)s)")
    p.add_argument("--data-dir", default="./crowdex-data", type=Path,
                   help="journal, snapshots and the embedded PostgreSQL (%(default)s)")
    p.add_argument("--operator-key", default=os.environ.get("CROWDEX_OPERATOR_KEY"),
                   help="the operator's API key; prefer CROWDEX_OPERATOR_KEY (a command line "
                   "shows in ps); without either, one is generated and printed once")
    p.add_argument("--database-url", default=os.environ.get("CROWDEX_DATABASE_URL"),
                   help="an external PostgreSQL (or CROWDEX_DATABASE_URL); without it an "
                   "embedded one runs in the data dir")
    p.add_argument("--clock", choices=("wall", "manual"), default="wall",
                   help="wall time, or a manual clock moved only by POST /v1/admin/clock")
    p.add_argument("--start-time", default=DEFAULT_START_TIME,
                   help="the manual clock's start (ISO 8601 with a zone)")
    p.add_argument("--profile", choices=("intl", "cn2015"), default="intl",
                   help="the venue's rules: intl, or cn2015 (bulletin board instead of "
                   "matching, holder limits, T+5)")
    p.add_argument("--demo", action="store_true", help="seed sample projects and investors")
    p.add_argument("--rate-limit", type=float, default=RATE_LIMIT_PER_SECOND,
                   help="requests per second per API key (bursts of twice that)")
    p.add_argument("--boards", type=Path, default=None, metavar="FILE.toml",
                   help="the operator's board rules over BOARDS.md's defaults (fees, durations, "
                   "cancel windows, lock-ups, limits, auction hour): checked at start, "
                   "journaled, applied to projects listed after it")
    p.add_argument("--no-fsync", action="store_true",
                   help="skip journal fsync (tests only: acknowledged is then NOT durable)")
    p.add_argument("--journal", default=None, metavar="nats://HOST:PORT[,...]",
                   help="keep the journal on a NATS JetStream stream at these servers instead "
                   "of the data dir: this server is then one replica of the venue (every "
                   "server given the same journal and stream serves the same venue)")
    p.add_argument("--stream", default="crowdex",
                   help="with --journal: the JetStream stream holding the journal "
                   "(%(default)s)")
    p.add_argument("--stream-replicas", type=int, default=3,
                   help="with --journal: copies of the stream kept by the NATS cluster when "
                   "this server creates it (%(default)s); a command is acknowledged once a "
                   "majority of them holds it")
    p.add_argument("--stream-keep-snapshots", type=int, default=0, metavar="N",
                   help="with --journal: limit the stream; once a snapshot is shared in the "
                   "cluster, its messages older than the N-th newest snapshot there are "
                   "purged (0, the default: every message is kept; 2 leaves a damaged newest "
                   "snapshot one to fall back on)")
    p.add_argument("--trusted-proxy", default=os.environ.get("CROWDEX_TRUSTED_PROXIES", ""),
                   metavar="CIDR[,CIDR...]",
                   help="reverse proxies to believe (or CROWDEX_TRUSTED_PROXIES): a request "
                   "from one is taken to come from the address its X-Forwarded-For names (the "
                   "rightmost not itself trusted), for the per-address connection cap, the "
                   "keyless rate limit and the access log; the proxies' own connections are "
                   "not capped per address. Default: none, every TCP peer is the client")
    p.add_argument("--log-format", choices=("json", "text"), default="json",
                   help="log lines on stderr: JSON objects (default) or plain text for a "
                   "terminal; each carries its request id, one access line per request")


def serve(args: argparse.Namespace) -> int:
    import uvloop

    from gateway import connections
    from gateway.app import configure_logging, create_app
    from gateway.proxies import parse_networks

    try:
        start_time_us = parse_time_us(args.start_time)
    except ValueError as error:
        print(f"crowdex: --start-time: {error}", file=sys.stderr)
        return 2
    if args.rate_limit <= 0:
        print("crowdex: --rate-limit must be positive", file=sys.stderr)
        return 2
    board_rules = None
    if args.boards is not None:  # checked whole before anything starts
        from boards.overrides import BoardsFileError, load
        from boards.registry import BOARDS

        try:
            board_rules = load(args.boards, BOARDS)
        except BoardsFileError as error:
            print(f"crowdex: --boards: {error}", file=sys.stderr)
            return 2
    journal_urls = _journal_urls(args.journal)
    if journal_urls == ():
        print("crowdex: --journal wants nats://HOST:PORT[,nats://HOST:PORT...]",
              file=sys.stderr)
        return 2
    if args.stream_replicas < 1 or not args.stream:
        print("crowdex: --stream needs a name and --stream-replicas at least 1",
              file=sys.stderr)
        return 2
    if args.stream_keep_snapshots < 0:
        print("crowdex: --stream-keep-snapshots must be 0 (keep every message) or more",
              file=sys.stderr)
        return 2
    try:
        trusted_proxies = parse_networks(args.trusted_proxy)
    except ValueError as error:
        print(f"crowdex: --trusted-proxy: {error}", file=sys.stderr)
        return 2
    configure_logging(args.log_format)
    config = Config(
        data_dir=args.data_dir.resolve(), host=args.host, port=args.port,
        operator_key=args.operator_key, database_url=args.database_url,
        manual_clock=args.clock == "manual", start_time_us=start_time_us,
        profile=args.profile, demo=args.demo,
        rate_limit_per_second=args.rate_limit,
        rate_limit_burst=max(1, int(args.rate_limit * RATE_LIMIT_BURST / RATE_LIMIT_PER_SECOND)),
        journal_sync=not args.no_fsync, board_rules=board_rules,
        journal_urls=journal_urls, stream=args.stream, stream_replicas=args.stream_replicas,
        stream_keep_snapshots=args.stream_keep_snapshots, trusted_proxies=trusted_proxies,
    )
    config.data_dir.mkdir(parents=True, exist_ok=True)
    raise_open_files_limit()
    # Fewer, larger young-generation collections: each order allocates a handful of objects.
    gc.set_threshold(*GC_THRESHOLDS)
    # The journal's thread needs the interpreter back the moment its fsync returns, or every
    # acknowledgement waits out the busy event loop's switch interval (5 ms by default).
    sys.setswitchinterval(float(os.environ.get("CROWDEX_SWITCH_INTERVAL_S", SWITCH_INTERVAL_S)))
    from engine.log.jetstream import StreamGapError
    from engine.skips import PoisonCommand, VenueRunning

    try:
        # web.run_app with connections.Runner: deadlines on slow and idle connections and a cap
        # per address (API.md), which aiohttp's own runner does not keep.
        connections.run(create_app(config), host=args.host, port=args.port,
                        loop=uvloop.new_event_loop(), shutdown_timeout=SHUTDOWN_TIMEOUT_S,
                        print=lambda text: print(text, flush=True))
    except (PoisonCommand, VenueRunning, StreamGapError) as error:
        # The operator's move: say which (a replica that cannot catch up with a purged
        # stream names the stream and the snapshot store).
        print(f"crowdex: {error}", file=sys.stderr)
        return EXIT_CANNOT_START
    return 0


def _journal_urls(text: str | None) -> tuple[str, ...] | None:
    """``--journal``'s comma-separated NATS URLs; None without the flag, () if malformed."""
    if text is None:
        return None
    urls = tuple(url.strip() for url in text.split(",") if url.strip())
    if not urls or not all(url.startswith(("nats://", "tls://")) for url in urls):
        return ()
    return urls


def raise_open_files_limit() -> None:
    """Lift the soft limit on open files to the hard one: every client connection holds a
    descriptor, and a soft limit of 1,024 (the usual default) is reached by a modest crowd or a
    small flood. Best effort: where the limit cannot be read or raised, it stays."""
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        # Linux refuses an unlimited soft limit for open files: under an unlimited hard one,
        # ask for OPEN_FILES_UNCAPPED.
        target = OPEN_FILES_UNCAPPED if hard == resource.RLIM_INFINITY else hard
        if soft < target:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ImportError, OSError, ValueError) as error:
        print(f"crowdex: the open-files limit stays as it is ({error})", file=sys.stderr)


def bench(argv: list[str]) -> int:
    if argv[:1] in (["-h"], ["--help"]):
        print(_bench_usage())
        return 0
    if not argv or argv[0] not in BENCHMARKS:
        print(_bench_usage(), file=sys.stderr)
        return 2
    try:
        module = importlib.import_module(f"bench.{argv[0]}")
    except ModuleNotFoundError as error:
        if error.name != f"bench.{argv[0]}":
            raise  # a module it needs is missing: an installation's fault, shown as it is
        print(f"crowdex: the {argv[0]} benchmark is not built yet", file=sys.stderr)
        return 2
    return int(module.main(argv[1:]) or 0)


def _bench_usage() -> str:
    lines = [f"usage: crowdex bench {{{','.join(BENCHMARKS)}}} [--help] ...", "",
             "Each prints its figures and, as its last line, one JSON object; "
             "crowdex bench NAME --help tells its options.", ""]
    width = max(map(len, BENCHMARKS))
    lines += [f"  {name:<{width}}  {BENCHMARK_HELP.get(name, '')}" for name in BENCHMARKS]
    return "\n".join(lines)


def parser() -> argparse.ArgumentParser:
    """The ``crowdex`` command line (``bench`` and ``settle`` hand their arguments on)."""
    top = argparse.ArgumentParser(prog="crowdex", description="the crowdex exchange")
    sub = top.add_subparsers(dest="command", required=True)
    _serve_parser(sub)
    sub.add_parser("bench", help="run a benchmark (crowdex bench --help lists them): "
                   + ", ".join(BENCHMARKS))
    sub.add_parser("settle", help="operator settlement tools against a running server "
                   "(crowdex settle --help)")
    _skip_parser(sub)
    _replay_parser(sub)
    _demo_keys_parser(sub)
    localcluster.add_parser(sub)
    return top


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["bench"]:
        return bench(argv[1:])
    if argv[:1] == ["settle"]:
        from settlement.cli import main as settle

        return settle(argv[1:])
    args = parser().parse_args(argv)
    if args.command == "serve":
        return serve(args)
    if args.command == "skip":
        return skip(args)
    if args.command == "replay":
        return replay(args)
    if args.command == "cluster":
        return localcluster.run(args)
    if args.command == "demo-keys":
        return demo_keys(args)
    return 2


def _demo_keys_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo-keys", help="print the API keys of a --demo venue's accounts "
                       "again (they are derived from the data dir's demo secret)")
    p.add_argument("--data-dir", default="./crowdex-data", type=Path,
                   help="the demo venue's data dir (%(default)s)")


def demo_keys(args: argparse.Namespace) -> int:
    """``crowdex demo-keys``: keys are kept only as hashes, so only the demo accounts', whose
    keys come from a secret kept in the data dir, can be printed again."""
    from gateway.demo import DEMO_SECRET_FILE
    from gateway.demo import demo_keys as keys_of

    keys = keys_of(args.data_dir.resolve())
    if keys is None:
        print(f"crowdex: no {DEMO_SECRET_FILE} in {args.data_dir}: it was not seeded with "
              "--demo by this version, and other keys are kept only as hashes (they were "
              "printed once, when made)", file=sys.stderr)
        return 1
    for name, key in keys.items():
        print(f"crowdex demo: {name}: {key}")
    return 0


def _replay_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("replay", help="rebuild a venue's state from its journal from empty "
                       "(snapshots ignored) and print its sequence and state hash")
    p.add_argument("--data-dir", default="./crowdex-data", type=Path,
                   help="the venue's data dir, whose journal is read (%(default)s)")
    p.add_argument("--upto", type=int, default=None, help="stop after this sequence")
    p.add_argument("--json", action="store_true", help="one JSON object as the last line")


def replay(args: argparse.Namespace) -> int:
    """``crowdex replay`` (API.md): reads the journal only (a running server's too)."""
    import json

    from engine.journal import JournalError
    from engine.markets import warm_up
    from engine.replay import replay as replay_journal
    from engine.skips import PoisonCommand

    if args.upto is not None and args.upto < 0:
        print("crowdex: --upto must be a sequence (0 or more)", file=sys.stderr)
        return 2
    warm_up()  # compiled kernels loaded first: start-up is not counted
    try:
        result = replay_journal(args.data_dir.resolve(), args.upto)
    except (JournalError, PoisonCommand) as error:
        print(f"crowdex: {error}", file=sys.stderr)
        return 1
    view = result.view()
    print(f"replayed {view['commands']:,} commands to sequence {view['sequence']} in "
          f"{view['seconds']:.3f} s ({view['commands_per_sec']:,} commands/s)",
          file=sys.stderr if args.json else sys.stdout)
    if args.json:
        print(json.dumps(view))
    else:
        print(f"state hash {view['state_hash']}")
    return 0


EXIT_CANNOT_START = 3  # the venue cannot start (a poison entry, a replica that cannot catch
# up with its stream) or another process has it


def _skip_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("skip", help="skip the one journal entry that stops a venue from "
                       "recovering (audited; the venue must be stopped)")
    p.add_argument("--data-dir", default="./crowdex-data", type=Path,
                   help="the stopped venue's data dir (%(default)s)")
    p.add_argument("--sequence", type=int, required=True,
                   help="the entry recovery fails on, as crowdex serve names it")
    p.add_argument("--reason", required=True, help="why: kept in the audit trail")


def skip(args: argparse.Namespace) -> int:
    from engine.sequencer import skip_entry
    from engine.skips import VenueRunning

    try:
        done, message = skip_entry(args.data_dir.resolve(), args.sequence, args.reason)
    except VenueRunning as error:
        print(f"crowdex: {error}: stop it first", file=sys.stderr)
        return EXIT_CANNOT_START
    print(f"crowdex: {message}", file=sys.stdout if done else sys.stderr)
    return 0 if done else 1


if __name__ == "__main__":
    raise SystemExit(main())
