"""The ops server's scrape: gateway processes' metrics files added up, and the live gauges
of processes that are gone dropped."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from gateway.ops import OpsSettings, scrape

# One short-lived "gateway process": records metrics the way the gateway does, then exits.
_PROCESS = textwrap.dedent(
    """
    import sys
    from gateway.service._metrics import GatewayMetrics, use_directory
    use_directory(sys.argv[1])
    m = GatewayMetrics()
    m.requests.labels("Generate", "OK", "team-a").inc(int(sys.argv[2]))
    m.in_flight.labels("Generate").inc()
    m.request_duration.labels("lm.generate", "/sax/test/lm", "").observe(0.01)
    """
)


def _record(metrics_dir: Path, requests: int) -> None:
    command = [sys.executable, "-c", _PROCESS, str(metrics_dir), str(requests)]
    subprocess.run(command, check=True, timeout=60)


def _values(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_scrape_adds_up_processes_and_forgets_the_live_gauges_of_dead_ones(tmp_path: Path) -> None:
    _record(tmp_path, 3)
    _record(tmp_path, 4)
    values = _values(scrape(OpsSettings(metrics_dir=str(tmp_path))).decode())

    labels = (("client", "team-a"), ("grpc_code", "OK"), ("grpc_method", "Generate"))
    assert values[("saxgw_requests_total", labels)] == 7
    histogram = (
        "gen_ai_server_request_duration_seconds_count",
        (
            ("error_type", ""),
            ("gen_ai_operation_name", "lm.generate"),
            ("gen_ai_request_model", "/sax/test/lm"),
        ),
    )
    assert values[histogram] == 2
    # Both processes have exited: their calls in flight are no longer counted.
    assert not any(name == "saxgw_requests_in_flight" for name, _ in values)
    assert not list(tmp_path.glob("gauge_live*"))
