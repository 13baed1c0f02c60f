"""What tests read of a rendered Envoy config (`gateway/launch/envoy.py`'s YAML, parsed)."""

from __future__ import annotations

from typing import Any

import yaml

#: libyaml's loader: PyYAML's own, in Python, took 0.65 s to read a rendered config (220 KB),
#: this one 0.11 s, and the suite reads about a hundred.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def envoy_yaml(text: str) -> dict[str, Any]:
    """A rendered config (or any YAML document), parsed."""
    parsed: dict[str, Any] = yaml.load(text, Loader=_LOADER)
    return parsed


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
