"""What Envoy gets from the control plane: one cluster per model routed directly (its serving
replicas), and its route, put in the route table before the catch-all that goes to the
gateways. Pure functions of the cells' models and the config; `_plane` writes them."""

from __future__ import annotations

import copy
import fnmatch
import ipaddress
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from gateway.common.errors import REPLICA_RETRY_CODES, go_code_name
from gateway.common.limits import UINT32_MAX
from gateway.common.listen import host_and_port
from gateway.common.stacktoken import STACK_TOKEN_HEADER
from gateway.edge import IDENTITY_HEADER, EdgeConfig
from gateway.launch.direct._files import Config
from gateway.launch.direct._listener import (
    GATEWAY_PATH,
    HTTP_PATH,
    MODEL_HEADER,
    NAMESPACE,
    OBJECT_FIELDS,
    TIMEOUT,
    without,
)
from gateway.launch.direct._wire import REFUSED, route_metadata

#: Sax's method: our GenerateRequest and GenerateResponse number model/query/texts as Sax's
#: GenerateRequest (model_key, text) and GenerateResponse do (proto/saxml/protobuf/lm.proto).
SAX_PATH = "/sax.server.lm.LMService/Generate"
#: The method whose model ACL guards Generate (gateway/service/_access.py).
ACL_METHOD = "lm.generate"
#: Headers by which a caller sets its own deadline: a call that sends one goes to a gateway.
_DEADLINE_HEADERS = ("grpc-timeout", "x-saxgw-grpc-timeout")
#: A caller's credentials, for Envoy and the gateways alone: a gateway's call to a model server
#: carries none of them, and neither does a direct call. Envoy's auth filters leave some (a
#: second key, a cookie, any Authorization where no auth is configured).
_CREDENTIAL_HEADERS = ("authorization", "x-api-key", "proxy-authorization", "cookie")
_EXT = "type.googleapis.com/envoy.extensions."
#: Tries of a direct call after its first, backed off (`route`): Envoy waits a random time
#: under 0.25 s, 0.75 s, then 1 s before each: 4.5 s in all on average, 9 s at most.
RETRIES = 10
# The message of a replica's failure that another replica may mend, as upstream Sax words it
# (status UNKNOWN, the code's Go name last): down, overloaded, stopping, or without the model
# loaded, the codes the gateway's client retries, which the route retries by status too.
_RETRIED_NAMES = "|".join(sorted(go_code_name(code) for code in REPLICA_RETRY_CODES))
_RETRIED_TEXT = f"(?:|.*[\\s:=])(?:{_RETRIED_NAMES})\\s*"


@dataclass(frozen=True)
class Model:
    """A published model as the admin lists it: what decides whether it goes direct."""

    model_id: str
    addresses: tuple[str, ...]
    acl: str
    """Its ``lm.generate`` ACL ("" for none)."""


def direct_models(models: Iterable[Model], edge: EdgeConfig) -> list[Model]:
    """The models whose unary Generate the gateway would not change: no ACL on it, no limit
    of their own in ``quotas.models``, a replica serving them (without one the gateway waits
    for one, or says why not), every replica at an IP address Envoy can use as it is."""
    if edge.quotas.max_concurrent is not None:
        return []  # every client's calls in flight are counted by the gateways
    return [
        m
        for m in models
        if not m.acl
        and m.model_id not in edge.quotas.models
        and m.addresses
        and all(_ip_port(a) for a in m.addresses)
    ]


def _ip_port(address: str) -> bool:
    try:
        host, _ = host_and_port(address)
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def cluster_name(model_id: str) -> str:
    """``direct/sax/test/lm``: the name that Envoy's cluster stats carry (docs/operations.md)."""
    return "direct" + model_id


def gateway_clients(model_id: str, edge: EdgeConfig) -> list[str]:
    """Clients whose calls to ``model_id`` the gateway treats apart: a ``clients.<id>.models``
    that does not admit it (the gateway's 403), or a ``max_concurrent`` of their own."""
    out = []
    for client, policy in sorted(edge.clients.items()):
        patterns = policy.models
        refused = patterns is not None and not any(
            fnmatch.fnmatchcase(model_id, p) for p in patterns
        )
        if refused or policy.max_concurrent is not None:
            out.append(client)
    return out


def cluster(model: Model, edge: EdgeConfig) -> Config:
    """The model's replicas, with the gateway's admission bound as a circuit breaker."""
    limit = edge.quotas.model
    # The calls the gateways would admit at once, in flight and queued (quotas.model), as far
    # as Envoy's counts go (uint32): past it, Envoy refused the file, and every direct call
    # was a 503 with no message for good.
    admitted = min(limit.max_in_flight + limit.max_queued, UINT32_MAX)
    endpoints = []
    for address in model.addresses:
        host, port = host_and_port(address)
        socket = {"socket_address": {"address": host, "port_value": port}}
        endpoints.append({"endpoint": {"address": socket}})
    name = cluster_name(model.model_id)
    return {
        "name": name,
        "alt_stat_name": name.replace("/", "_"),
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": endpoints}]},
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": _EXT + "upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": {"http2_protocol_options": {}},
            }
        },
        "circuit_breakers": {
            "thresholds": [
                {
                    "priority": "HIGH",
                    "max_requests": admitted,
                    "max_pending_requests": admitted,
                    "max_retries": limit.max_in_flight,
                }
            ]
        },
        # A replica that refuses or resets connections is ejected, as a gateway is.
        "outlier_detection": {
            "split_external_local_origin_errors": True,
            "consecutive_local_origin_failure": 2,
            "enforcing_consecutive_local_origin_failure": 100,
            "enforcing_consecutive_5xx": 0,
            "interval": "1s",
            "base_ejection_time": "5s",
            "max_ejection_percent": 50,
        },
    }


def _not_clients(clients: Sequence[str]) -> list[Config]:
    if not clients:
        return []
    regex = "|".join(re.escape(c) for c in clients)
    return [
        {
            "name": IDENTITY_HEADER,
            "string_match": {"safe_regex": {"regex": regex}},
            "invert_match": True,
        }
    ]


def route(model_id: str, catch_all: Config, edge: EdgeConfig, deadline: float) -> Config:
    """The direct route of ``model_id``: ``POST /generate`` (nothing else, no query string)
    whose body names it exactly, with a non-empty query and nothing only a gateway serves,
    from a client the gateway would not treat apart. It keeps the catch-all's per-filter
    config (the filters run as for a call to a gateway) and sends Sax's method to the model's
    replicas, with the gateways' default deadline, retried on another replica when one is
    unavailable or overloaded."""
    meta = [
        {
            "filter": NAMESPACE,
            "path": [{"key": "model"}],
            "value": {"string_match": {"exact": model_id}},
        },
        # The gateway refuses an empty query (INVALID_ARGUMENT) where a model server runs it.
        {
            "filter": NAMESPACE,
            "path": [{"key": "query"}],
            "value": {"string_match": {"safe_regex": {"regex": "(?s).+"}}},
        },
        {
            "filter": NAMESPACE,
            "path": [{"key": TIMEOUT}],
            "value": {"present_match": True},
            "invert": True,
        },
        *(
            {"filter": NAMESPACE, "path": [{"key": without(f)}], "value": {"present_match": True}}
            for f in OBJECT_FIELDS
        ),
        # Set once the route is taken, by the check of the message (`_wire`), which then
        # routes the call again.
        {
            "filter": NAMESPACE,
            "path": [{"key": REFUSED}],
            "value": {"present_match": True},
            "invert": True,
        },
    ]
    # Envoy tries a route's headers first, in order, then its metadata, then its path: the
    # model's header first fails every other model's route at one compare. The body's model
    # in the metadata is still matched: the header is Envoy's (`_listener.model_header_filter`)
    # but the metadata is what the body says, wherever the header came from.
    headers = [
        {"name": MODEL_HEADER, "string_match": {"exact": model_id}},
        {"name": "x-envoy-original-path", "string_match": {"exact": HTTP_PATH}},
        *({"name": h, "present_match": False} for h in _DEADLINE_HEADERS),
        *_not_clients(gateway_clients(model_id, edge)),
    ]
    out = copy.deepcopy(catch_all)
    out["name"] = f"direct {model_id}"
    out["match"] = {"path": GATEWAY_PATH, "headers": headers, "dynamic_metadata": meta}
    out["metadata"] = route_metadata()
    out["route"] = {
        "cluster": cluster_name(model_id),
        "regex_rewrite": {"pattern": {"regex": ".*"}, "substitution": SAX_PATH},
        # The model server ends the call at the gateways' default deadline (a gateway would
        # have sent the same); Envoy's own bound is a moment later.
        "timeout": f"{deadline + 1:g}s",
        # Also the idle timeout: Envoy's default (300 s) cut longer calls at 300 s.
        "idle_timeout": f"{deadline + 1:g}s",
        "priority": "HIGH",
        "retry_policy": {
            # As the gateway's client (client/_failover.py): another replica when one is down
            # (its connection reset, even with the call sent: grpc's UNAVAILABLE, which the
            # client retries), overloaded, stopping (CANCELLED), or without the model loaded
            # (NOT_FOUND: one started again on its address, which the admin has not yet given
            # the model). Envoy's gRPC conditions have no NOT_FOUND: a replica's error comes
            # before any message, so its grpc-status is a response header (trailers-only),
            # which retriable-headers reads.
            # An upstream Sax model server says each of these as UNKNOWN, the code's Go name
            # ending its message ("...: NotFound"), which the gateway's client reads
            # (common/errors.py's code_from_text): so does the grpc-message matcher.
            "retry_on": (
                "connect-failure,refused-stream,reset,unavailable,"
                "resource-exhausted,cancelled,retriable-headers"
            ),
            "retriable_headers": [
                {"name": "grpc-status", "string_match": {"exact": "5"}},
                {"name": "grpc-message", "string_match": {"safe_regex": {"regex": _RETRIED_TEXT}}},
            ],
            # Every replica gone at once (a cell started again, on other ports or the same),
            # a gateway waits for one in the call's deadline; Envoy's retries, a few ms
            # apart, failed the call with a 503 where a gateway's answered. Backed off, they
            # wait about 4.5 s on average (9 s at most) for the replicas to come back or
            # the plane to route to their new addresses: an overloaded model's 429 comes
            # after as long, where a gateway's client retries it for 1 s.
            "num_retries": RETRIES,
            "retry_back_off": {"base_interval": "0.25s", "max_interval": "1s"},
            "retry_host_predicate": [
                {
                    "name": "envoy.retry_host_predicates.previous_hosts",
                    "typed_config": {
                        "@type": _EXT + "retry.host.previous_hosts.v3.PreviousHostsPredicate"
                    },
                }
            ],
            "host_selection_retry_max_attempts": 3,
        },
    }
    out["request_headers_to_add"] = [
        {
            "header": {"key": "grpc-timeout", "value": f"{round(deadline * 1000)}m"},
            "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
        }
    ]
    # The stack's token is for its gateways alone, a caller's credentials for Envoy and them;
    # the identity header stays (a model server may log it).
    out["request_headers_to_remove"] = [STACK_TOKEN_HEADER, *_CREDENTIAL_HEADERS]
    return out


def route_table(base: Config, models: Sequence[Model], edge: EdgeConfig, deadline: float) -> Config:
    """``base`` (the route table rendered from the template) with the direct routes of
    ``models`` just before the catch-all route of its first virtual host."""
    table = copy.deepcopy(base)
    routes: list[Config] = table["virtual_hosts"][0]["routes"]
    at = next(i for i, r in enumerate(routes) if r["match"] == {"prefix": "/"})
    routes[at:at] = [route(m.model_id, routes[at], edge, deadline) for m in models]
    return table
