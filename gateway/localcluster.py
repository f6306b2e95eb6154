"""``crowdex cluster``: a whole local cluster for trying it out and for tests (API.md, "Running as a
cluster").

It starts ``--nats-nodes`` NATS servers in one JetStream cluster on loopback
(``engine.log.natscluster``) and ``--servers`` replicas of one venue (``crowdex serve --journal``
child processes) on ports ``--port``, ``--port``+1, ..., prints every URL and the operator key,
and on Ctrl-C (or SIGTERM) stops everything it started: the replicas first, gracefully, then
PostgreSQL, then the NATS nodes. Everything lives under ``--data-dir`` (``nats/``,
``postgres/``, ``server-1/``, ...), so starting it again on the same dir resumes the same venue.

The replicas settle into ONE PostgreSQL (API.md: replicas of one venue share one): the
``--database-url`` given, else one embedded server (``settlement.db.EmbeddedServer``) that this
supervisor starts for the whole cluster. Its URL reaches each replica as
``CROWDEX_DATABASE_URL``, kept off the command lines that ``ps`` shows.

It only supervises processes: a replica is the ordinary ``crowdex serve``, so what is tried here
is what runs in production, and ``kill -9`` of one of its pids is a real crash. As a process
supervisor (systemd's ``Restart=on-failure``) would, it starts again what dies while it runs
(``_Supervisor``): a replica that exits with a failure (a crash, a kill, a replica the stream's
purge overtook), after a pause that doubles while it keeps dying young; a NATS node; the
embedded PostgreSQL. A replica that exits cleanly or on a usage error stays down.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from engine.log.natscluster import NatsCluster
    from settlement.db import EmbeddedServer

SERVERS_MAX = 16  # replicas on one machine: each is a process with its own state
SERVER_READY_TIMEOUT_S = 120.0  # a replica reads the whole stream before it answers /healthz
SERVER_STOP_TIMEOUT_S = 30.0  # a replica's graceful stop, before SIGKILL
POLL_INTERVAL_S = 0.1
STREAM = "crowdex"
DATABASE_URL_ENV = "CROWDEX_DATABASE_URL"  # what ``crowdex serve --database-url`` defaults to
RESTART_PAUSE_MIN_S = 1.0  # before a dead replica is started again ...
RESTART_PAUSE_MAX_S = 30.0  # ... doubled each time it dies young, up to this
RESTART_STABLE_S = 30.0  # a replica that ran this long died "old": the pause starts over
RETRY_PAUSE_S = 5.0  # before a NATS node or PostgreSQL that would not start is tried again
EXIT_USAGE = 2  # crowdex serve's exit status for a bad command line: restarting cannot help


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("cluster", help="start a local cluster: NATS nodes and replicas of one "
                       "venue (Ctrl-C stops everything)")
    p.add_argument("--nats-nodes", type=int, default=3,
                   help="NATS servers in the JetStream cluster holding the journal "
                   "(%(default)s); the stream keeps min(3, this) copies")
    p.add_argument("--servers", type=int, default=2,
                   help="crowdex replicas of the venue (%(default)s)")
    p.add_argument("--port", type=int, default=8080,
                   help="the first replica's HTTP port; the next ones count up (%(default)s)")
    p.add_argument("--data-dir", type=Path, default=Path("./crowdex-cluster"),
                   help="the NATS nodes' files and each replica's data dir (%(default)s)")
    p.add_argument("--operator-key", default=os.environ.get("CROWDEX_OPERATOR_KEY"),
                   help="the operator's API key; prefer CROWDEX_OPERATOR_KEY; without either, "
                   "one is generated and printed")
    p.add_argument("--clock", choices=("wall", "manual"), default="wall",
                   help="the venue's clock, fixed when the venue is created")
    p.add_argument("--demo", action="store_true",
                   help="seed sample projects and investors (through the first replica)")
    p.add_argument("--database-url", default=os.environ.get(DATABASE_URL_ENV),
                   help="the PostgreSQL every replica settles into (CROWDEX_DATABASE_URL); "
                   "without it, one embedded PostgreSQL is started for the whole cluster in "
                   "--data-dir")


def run(args: argparse.Namespace) -> int:
    """Start the cluster, wait for Ctrl-C or SIGTERM, stop it; the exit code."""
    from engine.log.natscluster import NODES_MAX, NatsCluster

    if not 1 <= args.nats_nodes <= NODES_MAX or not 1 <= args.servers <= SERVERS_MAX:
        print(f"crowdex: --nats-nodes must be 1 to {NODES_MAX} and --servers 1 to "
              f"{SERVERS_MAX}", file=sys.stderr)
        return 2
    key = args.operator_key or _new_key()
    data_dir = args.data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    stop = threading.Event()
    for number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(number, lambda *_: stop.set())
    nats = NatsCluster(data_dir / "nats", args.nats_nodes)
    servers: list[subprocess.Popen] = []
    postgres = None
    try:
        nats.start()
        print(f"crowdex cluster: NATS {','.join(nats.urls)}", flush=True)
        database_url = args.database_url
        if not database_url:
            postgres, database_url = _start_postgres(data_dir)
            print(f"crowdex cluster: PostgreSQL (embedded, shared by every replica) in "
                  f"{postgres.pgdata}", flush=True)
        for index in range(args.servers):
            servers.append(_start_server(args, nats.urls, index, key, data_dir, database_url,
                                         demo=args.demo and index == 0))
            _wait_ready(servers[-1], args.port + index, stop)
            print(f"crowdex cluster: replica {index + 1} http://127.0.0.1:{args.port + index} "
                  f"(pid {servers[-1].pid})", flush=True)
        if not args.operator_key:
            print(f"crowdex cluster: operator API key: {key}", flush=True)
        print("crowdex cluster: ready; Ctrl-C stops everything", flush=True)
        supervisor = _Supervisor(nats, postgres, servers,
                                 lambda index: _start_server(args, nats.urls, index, key,
                                                             data_dir, database_url))
        while not stop.wait(POLL_INTERVAL_S):
            if not supervisor.check():
                print("crowdex cluster: every replica exited", file=sys.stderr)
                return 1
        return 0
    except (RuntimeError, OSError) as error:
        print(f"crowdex cluster: {error}", file=sys.stderr)
        return 1
    finally:
        _stop_servers(servers)
        try:
            if postgres is not None:
                postgres.stop()
        finally:
            nats.stop()


def _new_key() -> str:
    from gateway.routes.accounts import new_api_key

    return new_api_key()


def _start_postgres(data_dir: Path) -> tuple[EmbeddedServer, str]:
    """The cluster's one embedded PostgreSQL and the URL of its ``crowdex`` database. The
    replicas migrate it themselves (safely at once: ``settlement.db.migrate``)."""
    from settlement.db import (
        ADMIN_DATABASE_NAME,
        DATABASE_NAME,
        EMBEDDED_DIR_NAME,
        EmbeddedServer,
        ensure_database,
    )

    server = EmbeddedServer.start(data_dir / EMBEDDED_DIR_NAME)
    try:
        asyncio.run(ensure_database(server.url(ADMIN_DATABASE_NAME), DATABASE_NAME))
    except BaseException:
        server.stop()
        raise
    return server, server.url(DATABASE_NAME)


def _start_server(args: argparse.Namespace, urls: list[str], index: int, key: str,
                  data_dir: Path, database_url: str, demo: bool = False) -> subprocess.Popen:
    command = [sys.executable, "-m", "gateway.cli", "serve", "--port", str(args.port + index),
               "--data-dir", str(data_dir / f"server-{index + 1}"),
               "--journal", ",".join(urls), "--stream", STREAM,
               "--stream-replicas", str(min(3, args.nats_nodes)), "--clock", args.clock]
    if demo:
        command.append("--demo")
    # Not on a command line, which every local user sees in ps.
    environment = dict(os.environ, CROWDEX_OPERATOR_KEY=key)
    environment[DATABASE_URL_ENV] = database_url
    # Its own process group: Ctrl-C at the terminal reaches only this supervisor, which stops
    # the replicas in order.
    return subprocess.Popen(command, env=environment, start_new_session=True)


def _wait_ready(server: subprocess.Popen, port: int, stop: threading.Event) -> None:
    deadline = time.monotonic() + SERVER_READY_TIMEOUT_S
    while time.monotonic() < deadline and not stop.is_set():
        if server.poll() is not None:
            raise RuntimeError(f"the replica on port {port} exited ({server.returncode})")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1):
                return
        except urllib.error.HTTPError as error:  # 503 while it catches up: close it now
            error.close()
            time.sleep(POLL_INTERVAL_S)
        except OSError:
            time.sleep(POLL_INTERVAL_S)
    raise RuntimeError(f"the replica on port {port} did not answer /healthz")


def _stop_servers(servers: list[subprocess.Popen]) -> None:
    for server in servers:
        if server.poll() is None:
            server.send_signal(signal.SIGTERM)
    for server in servers:
        try:
            server.wait(SERVER_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


@dataclass(slots=True)
class _Restart:
    """When a dead replica is started again, and the pause before the next time."""

    pause_s: float = RESTART_PAUSE_MIN_S
    due: float | None = None  # monotonic time of the next start; None while it runs
    started: float = 0.0


class _Supervisor:
    """Starts again what dies while the cluster runs (module docstring); ``check`` each poll.

    ``servers`` is the supervisor's own list: a restarted replica's process replaces the dead
    one's in it, so the final stop stops the live one.
    """

    def __init__(self, nats: NatsCluster, postgres: EmbeddedServer | None,
                 servers: list[subprocess.Popen],
                 start: Callable[[int], subprocess.Popen]) -> None:
        self.nats = nats
        self.postgres = postgres
        self.servers = servers
        self.start = start
        now = time.monotonic()
        self.restarts = [_Restart(RESTART_PAUSE_MIN_S, started=now) for _ in servers]
        self.retry_at: dict[str, float] = {}  # a NATS node or "postgres": not before then

    def check(self) -> bool:
        """Restart what died; False once every replica is down for good."""
        self._nats_nodes()
        self._postgres()
        return self._replicas()

    def _nats_nodes(self) -> None:
        from engine.log.natscluster import NatsClusterError

        for index, node in enumerate(self.nats.nodes):
            if node.pid is not None or self.retry_at.get(node.name, 0.0) > time.monotonic():
                continue
            _say(f"NATS node {node.name} is down: starting it again")
            node.process = None
            try:
                self.nats.restart(index)
                _say(f"NATS node {node.name} is back (pid {node.pid})")
            except NatsClusterError as error:
                self.retry_at[node.name] = time.monotonic() + RETRY_PAUSE_S
                _say(f"NATS node {node.name} did not start ({error}); trying again in "
                     f"{RETRY_PAUSE_S:g} s", error=True)

    def _postgres(self) -> None:
        from settlement.db import EmbeddedServerError

        postgres = self.postgres
        if (postgres is None or postgres.running
                or self.retry_at.get("postgres", 0.0) > time.monotonic()):
            return
        _say("the embedded PostgreSQL is down: starting it again")
        try:
            postgres.restart()
            _say(f"the embedded PostgreSQL is back (pid {postgres.pid})")
        except EmbeddedServerError as error:
            self.retry_at["postgres"] = time.monotonic() + RETRY_PAUSE_S
            _say(f"the embedded PostgreSQL did not start ({error}); trying again in "
                 f"{RETRY_PAUSE_S:g} s", error=True)

    def _replicas(self) -> bool:
        alive = False
        for index, (server, restart) in enumerate(zip(self.servers, self.restarts, strict=True)):
            code = server.poll()
            if code is None:
                alive = True
                continue
            now = time.monotonic()
            if code in (0, EXIT_USAGE):
                continue  # stopped on purpose, or cannot start as asked
            alive = True
            if restart.due is None:  # found dead just now
                if now - restart.started >= RESTART_STABLE_S:
                    restart.pause_s = RESTART_PAUSE_MIN_S
                restart.due = now + restart.pause_s
                how = f"signal {-code}" if code < 0 else f"status {code}"
                _say(f"replica {index + 1} (pid {server.pid}) exited ({how}): starting it "
                     f"again in {restart.pause_s:g} s", error=True)
                restart.pause_s = min(restart.pause_s * 2, RESTART_PAUSE_MAX_S)
            elif now >= restart.due:
                self.servers[index] = self.start(index)
                restart.due, restart.started = None, now
                _say(f"replica {index + 1} started again (pid {self.servers[index].pid})")
        return alive


def _say(text: str, error: bool = False) -> None:
    print(f"crowdex cluster: {text}", file=sys.stderr if error else sys.stdout, flush=True)
