"""Reading a gateway metrics directory in tests: scraped text as values, and what a scrape
read before the ops server folded gone processes' files (to compare a fold against)."""

from __future__ import annotations

import shutil
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from gateway.common import metricsfiles

Values = dict[tuple[str, tuple[tuple[str, str], ...]], float]

#: What the ops server adds about itself, not read from the gateways' files.
OPS_OWN = ("saxgw_metrics_dir_writable", "saxgw_envoy_up")


def values(text: str) -> Values:
    """Each sample of a Prometheus text exposition, but for the ops server's own."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name not in OPS_OWN
    }


def unfolded(directory: Path, scratch: Path) -> Values:
    """What a scrape read before folds: the live gauges of gone processes dropped, every other
    file added up by prometheus_client's own collector (on a copy at ``scratch``, left
    unfolded)."""
    shutil.copytree(directory, scratch)
    metricsfiles.forget_gone(str(scratch))
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(scratch))  # type: ignore[no-untyped-call]
    return values(generate_latest(registry).decode())
