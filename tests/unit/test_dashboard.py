"""The Grafana dashboard's error ratio (deploy/grafana/sax-gateway.json) against the gateway:
its server-error series counts the codes the gateway's server spans mark as errors (the
server's failures, by OpenTelemetry's gRPC conventions), with the label values its metrics
write (each code's name). The metric names themselves are checked against a real scrape in
tests/e2e/test_operate.py."""

from __future__ import annotations

import json
import re
from pathlib import Path

from gateway.service._tracing import SERVER_ERRORS

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy/grafana/sax-gateway.json"


def test_the_error_ratio_shows_all_errors_and_the_servers_own() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    [panel] = [p for p in dashboard["panels"] if p.get("title") == "Error ratio"]
    queries = {t["legendFormat"]: t["expr"] for t in panel["targets"]}
    assert set(queries) == {"errors / calls", "server errors / calls"}
    assert 'error_type!=""' in queries["errors / calls"]
    found = re.search(r'error_type=~"([A-Z_|]+)"', queries["server errors / calls"])
    assert found is not None, queries["server errors / calls"]
    assert set(found.group(1).split("|")) == {code.name for code in SERVER_ERRORS}
    # Both over the same calls: the ratio's denominator is every call of the chosen models.
    denominators = {q.split(" / ", 1)[1] for q in queries.values()}
    assert len(denominators) == 1
