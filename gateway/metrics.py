"""Prometheus text metrics: counters and histograms kept in plain Python, rendered on scrape."""

from __future__ import annotations

import bisect
from collections import Counter

FSYNC_BUCKETS_S = (0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.003, 0.004, 0.005, 0.0075, 0.01,
                   0.025, 0.05, 0.1, 0.5)
BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)


class Histogram:
    def __init__(self, name: str, help_text: str, buckets: tuple[float, ...]) -> None:
        self.name = name
        self.help_text = help_text
        self.buckets = buckets
        self.counts = [0] * (len(buckets) + 1)
        self.total = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.total += value
        self.count += 1

    def render(self) -> list[str]:
        lines = [f"# HELP {self.name} {self.help_text}", f"# TYPE {self.name} histogram"]
        running = 0
        for bound, count in zip(self.buckets, self.counts, strict=False):
            running += count
            lines.append(f'{self.name}_bucket{{le="{bound}"}} {running}')
        lines.append(f'{self.name}_bucket{{le="+Inf"}} {self.count}')
        lines.append(f"{self.name}_sum {self.total}")
        lines.append(f"{self.name}_count {self.count}")
        return lines


class Metrics:
    """What /metrics reports: engine batches and HTTP responses."""

    def __init__(self) -> None:
        self.commands = 0
        self.batches = 0
        self.batch_size = Histogram("crowdex_batch_size", "Commands per journal batch.",
                                    BATCH_SIZE_BUCKETS)
        self.fsync = Histogram("crowdex_journal_fsync_seconds",
                               "Journal append+fsync latency per batch.", FSYNC_BUCKETS_S)
        # The fsync system call alone (observed by the journal's thread): the disk's share of
        # the latency above, the rest being the write and waiting for the sequencer.
        self.sync = Histogram("crowdex_journal_sync_seconds",
                              "The journal's fsync call alone, per batch.", FSYNC_BUCKETS_S)
        self.http = Counter()

    def on_batch(self, size: int, fsync_seconds: float) -> None:
        self.commands += size
        self.batches += 1
        self.batch_size.observe(size)
        self.fsync.observe(fsync_seconds)

    def render(self, gauges: dict[str, int]) -> str:
        lines = [
            "# HELP crowdex_commands_total Commands journaled and applied.",
            "# TYPE crowdex_commands_total counter",
            f"crowdex_commands_total {self.commands}",
            "# HELP crowdex_batches_total Journal batches (group commits).",
            "# TYPE crowdex_batches_total counter",
            f"crowdex_batches_total {self.batches}",
        ]
        lines += self.batch_size.render() + self.fsync.render() + self.sync.render()
        lines += ["# HELP crowdex_http_responses_total HTTP responses by status.",
                  "# TYPE crowdex_http_responses_total counter"]
        for status, count in sorted(self.http.items()):
            lines.append(f'crowdex_http_responses_total{{status="{status}"}} {count}')
        for name, value in gauges.items():
            lines += [f"# TYPE {name} gauge", f"{name} {value}"]
        return "\n".join(lines) + "\n"
