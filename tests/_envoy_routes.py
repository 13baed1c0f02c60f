"""What tests read of a rendered Envoy config (`gateway/launch/envoy.py`'s YAML, parsed)."""

from __future__ import annotations

from typing import Any


def unary_route_timeouts(config: dict[str, Any]) -> set[str]:
    """The timeouts of the routes that send unary calls to the gateways (streams': 0s, none),
    each also the route's idle timeout: a unary call moves nothing until its reply, and
    Envoy's default idle timeout (300 s) cut every call at 300 s."""
    manager = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
    routes = manager["typed_config"]["route_config"]["virtual_hosts"][0]["routes"]
    unary = [r["route"] for r in routes if r.get("route", {}).get("timeout", "0s") != "0s"]
    return {
        r["timeout"] if r.get("idle_timeout") == r["timeout"] else f"{r['timeout']}, idle {r}"
        for r in unary
    }
