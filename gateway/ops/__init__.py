"""The ops server: one Prometheus scrape URL for a whole deployment.

    serve(OpsSettings(port=8889, metrics_dir="/run/saxgw/metrics", envoy_admin="127.0.0.1:9901"))

``GET /metrics`` answers with the metrics of every gateway process (added up from the files
they keep in ``metrics_dir``) followed by Envoy's own (``envoy_*``, from its admin interface,
which stays on loopback). It is its own process on its own port, apart from the public one,
so a scrape still works, and says ``saxgw_envoy_up 0``, when Envoy is down. ``GET /livez``
answers 200 from the server alone, for liveness probes; ``GET /readyz`` 200 or 503 as Envoy's
``/healthz`` would (asked of Envoy's admin), in plain HTTP whatever TLS the public port wants,
for readiness probes.
"""

from __future__ import annotations

from gateway.ops._ready import readiness
from gateway.ops._server import LIVE_PATH, READY_PATH, OpsSettings, scrape, serve, start

__all__ = ["LIVE_PATH", "READY_PATH", "OpsSettings", "readiness", "scrape", "serve", "start"]
