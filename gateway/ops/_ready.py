"""``/readyz``: the stack's readiness over plain HTTP, as Envoy's ``/healthz`` decides it.

Envoy answers ``/healthz`` on its public listener, which speaks TLS (and may want a client
certificate) once the config has a ``tls:`` section: a kubelet's plain-HTTP probe there never
passes. The ops port is plain HTTP whatever the config, so it answers the same question from
what Envoy's health_check filter (envoy/envoy.yaml.tmpl) looks at, read from Envoy's admin on
loopback: Envoy is live (its admin's ``/ready``: not starting, not draining after SIGTERM,
which fails ``/healthz`` through ``/healthcheck/fail``), and at least ``MIN_HEALTHY_PERCENT``
of the gateway cluster passes its gRPC health check, which follows the cell. Two loopback
requests, no gateway call of its own.
"""

from __future__ import annotations

import http.client
import urllib.error
import urllib.request

#: Envoy's cluster of gateway processes, and the share of it that must be healthy: as the
#: health_check filter's ``cluster_min_healthy_percentages`` in envoy/envoy.yaml.tmpl.
CLUSTER = "gateway_grpc"
MIN_HEALTHY_PERCENT = 1.0

_STATS = f"/stats?filter=^cluster\\.{CLUSTER}\\.membership_(healthy|total)$"

#: How a request to Envoy's admin fails: no answer (OSError), or one cut short or garbled, as
#: when Envoy dies while it answers (http.client's IncompleteRead, BadStatusLine: no OSError).
ADMIN_ERRORS = (OSError, http.client.HTTPException)


def _get(admin: str, path: str, timeout: float) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://{admin}{path}", timeout=timeout) as response:
            return int(response.status), response.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:  # a status other than 2xx: an answer all the same
        with exc:
            return exc.code, exc.read().decode(errors="replace")


def readiness(admin: str, timeout: float) -> tuple[bool, str]:
    """Whether Envoy at ``admin`` (its admin's ``host:port``) would answer ``/healthz`` 200,
    and why (one line)."""
    try:
        status, body = _get(admin, "/ready", timeout)
        if status != 200:
            state = body.strip() or f"HTTP {status}"
            return False, f"Envoy is not live ({state}: starting, or draining after SIGTERM)"
        status, body = _get(admin, _STATS, timeout)
    except ADMIN_ERRORS as exc:
        return False, f"Envoy's admin at {admin} does not answer ({exc})"
    if status != 200:
        return False, f"Envoy's admin at {admin} answered HTTP {status} for its stats"
    counts = {}
    for line in body.splitlines():
        name, _, value = line.partition(":")
        if value.strip().isdigit():
            counts[name.strip().rsplit("_", 1)[-1]] = int(value)
    healthy, total = counts.get("healthy", 0), counts.get("total", 0)
    if total == 0 or healthy * 100 < total * MIN_HEALTHY_PERCENT:
        return False, (
            f"no gateway is healthy ({healthy} of {total} pass their gRPC health check: "
            "the cell is unreachable, or the gateways are down)"
        )
    return True, f"ok: {healthy} of {total} gateways healthy"
