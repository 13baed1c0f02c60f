"""What tests read of a rendered Envoy config (`gateway/launch/envoy.py`'s YAML, parsed)."""

from __future__ import annotations

from typing import Any


def unary_route_timeouts(config: dict[str, Any]) -> set[str]:
    """The timeouts of the routes that send unary calls to the gateways (streams': 0s, none)."""
    manager = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
    routes = manager["typed_config"]["route_config"]["virtual_hosts"][0]["routes"]
    return {r["route"]["timeout"] for r in routes if "timeout" in r.get("route", {})} - {"0s"}
