"""The server's configuration, as ``crowdex serve`` flags and environment variables give it."""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Network, IPv6Network
from pathlib import Path

RATE_LIMIT_PER_SECOND = 100
RATE_LIMIT_BURST = 200


@dataclass(frozen=True, slots=True)
class Config:
    data_dir: Path = Path("./crowdex-data")
    host: str = "127.0.0.1"
    port: int = 8080
    operator_key: str | None = None
    database_url: str | None = None
    manual_clock: bool = False
    start_time_us: int = 0
    profile: str = "intl"
    demo: bool = False
    rate_limit_per_second: float = RATE_LIMIT_PER_SECOND
    rate_limit_burst: int = RATE_LIMIT_BURST
    journal_sync: bool = True
    use_database: bool = True
    board_rules: dict | None = None  # the operator's boards file, checked (boards.overrides)
    # API.md "Running as a cluster": NATS servers holding the journal's JetStream stream (this
    # server is then one replica of the venue); None keeps the journal in the data dir.
    journal_urls: tuple[str, ...] | None = None
    stream: str = "crowdex"
    stream_replicas: int = 3
    # Once a snapshot is shared, the stream's messages older than the N-th newest snapshot in
    # the cluster are purged; 0 keeps every message (engine.cluster_snapshots).
    stream_keep_snapshots: int = 0
    # --trusted-proxy: the reverse proxies whose X-Forwarded-For names the client
    # (gateway/proxies.py); none, the default, takes every TCP peer as the client.
    trusted_proxies: tuple[IPv4Network | IPv6Network, ...] = ()
