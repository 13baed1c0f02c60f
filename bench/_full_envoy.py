"""Design (b) with what it would need on the unary data path: the product's Envoy, data calls
routed straight to the model servers.

`_direct_envoy` measures (b)'s ceiling: the transcoder and the router alone. This is (b) as
the product would render it for a stack with API keys: the listener of ``saxgw up``
(`gateway.launch.envoy.render` with an `EdgeConfig` from `EDGE`: every filter, the access log,
CORS, JSON local replies, the health check, api_key_auth and the role RBAC), the gateway kept
as the control plane and for every other call, and the unary ``Generate`` sent to the model
servers:

- the transcoder also maps ``POST /generate`` and ``POST /v1/models/{model}:generate`` onto
  Sax's ``sax.server.lm.LMService.Generate``, declared with our own messages
  (`descriptor_set`: ``saxgateway.v1.GenerateRequest`` numbers its fields as Sax's does);
- the model: json_to_metadata reads ``/generate``'s body into dynamic metadata (skipped on any
  other path); ``/v1/models/%2F<cell>%2F<model>:generate`` is matched on the HTTP path the
  transcoder keeps (``x-envoy-original-path``);
- one route per model and binding, one cluster per model, delivered by filesystem CDS and EDS
  (``path_config_source``, the files written as the gateway would write them from discovery);
  an unknown model is a 404 (a route of its own; ``cluster_not_found_response_code`` for a
  model whose cluster is gone);
- per-route RBAC on the identity header api_key_auth sets: the clients with the ``data`` role
  whose ``clients.<id>.models`` admit the model (how client model lists and Sax ACLs would
  become Envoy config);
- per-cluster circuit breakers (``max_requests`` = ``quotas.models`` ``max_in_flight``), a
  retry on UNAVAILABLE with ``previous_hosts``, the route timeout as the default deadline, and
  the ``cost_header`` Lua the product runs for every unary call (the access log's grpc_status,
  a failure's request ID).

``VARIANTS`` drop one of these at a time, to price each; `bench.full_ab` checks the config
works and measures it. What a real (b) would still lack (measured with this config):
the product's path form ``/v1/sax/<cell>/<model>:generate`` (its binding would hand Sax a
model ID without the leading slash, which the model server does not know), the gateway's
model-ID normalization (``sax/test/bench`` in the body is a 404), ``extra_inputs`` (our
map of Values is not Sax's ExtraInputs on the wire: the model server refuses the message), a
call's own deadline (the body's ``timeout`` reaches Sax as an unknown field; only the route
timeout applies), the gateway's error mapping (Sax's messages as they come; a model whose
cluster is gone is a 404 without a message), its queue and 429 + Retry-After (a full
circuit breaker is a 503), per-client calls in flight, per-model usage metrics and the cost
header (the model server sends no cost), and the control plane's code that would write the
CDS/EDS files from Sax's admin and the RBAC from Sax ACLs.

    python -m bench._full_envoy --port P --admin-port A --model-server HOST:PORT \
        --gateway HOST:PORT --workdir D [--variant NAME]
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import yaml
from google.api import annotations_pb2, http_pb2
from google.protobuf import descriptor_pb2

from bench._direct_envoy import exec_envoy
from bench._envoy_variants import Config, _drop_filter, _filters, _hcm, _vhost
from bench._stack import CELL, UNARY_MODEL
from gateway.edge import IDENTITY_HEADER, EdgeConfig, header_predicate, parse_edge, skip_when
from gateway.launch.envoy import EnvoySettings, render
from gateway.launch.envoy import descriptor_set as product_descriptors

SERVICE = "sax.server.lm.LMService"
GRPC_PATH = f"/{SERVICE}/Generate"
METADATA = "saxgw"  # json_to_metadata's namespace
#: The models (b) routes: the bench's unary model and two more (`MORE_MODELS`), published
#: by whoever starts this Envoy.
MORE_MODELS = {f"{CELL}/benchb1": "One.", f"{CELL}/benchb2": "Two."}
MODELS = (UNARY_MODEL, *MORE_MODELS)
#: Keys: `bench` may call every model, `narrow` only benchb1, `ops` holds no data role.
KEYS = {
    "bench": "bench-key-0123456789abcdef",
    "narrow": "narrow-key-0123456789abcd",
    "ops": "ops-key-0123456789abcdefgh",
}
EDGE: dict[str, Any] = {
    "auth": {
        "api_keys": [
            {"key": KEYS["bench"], "client": "bench", "roles": ["data"]},
            {"key": KEYS["narrow"], "client": "narrow", "roles": ["data"]},
            {"key": KEYS["ops"], "client": "ops", "roles": ["admin"]},
        ]
    },
    "clients": {"narrow": {"models": [f"{CELL}/benchb1"]}},
    "quotas": {"models": {UNARY_MODEL: {"max_in_flight": 128}}},
}
DEFAULT_DEADLINE_S = 60.0  # the bench gateways' --default-timeout
_EXT = "type.googleapis.com/envoy.extensions."


def descriptor_set() -> bytes:
    """The product's descriptors and one more file: ``sax.server.lm.LMService.Generate`` over
    our GenerateRequest/GenerateResponse, bound to ``POST /generate`` (moved off
    SaxGateway.Generate) and ``POST /v1/models/{model=**}:generate``."""
    files = descriptor_pb2.FileDescriptorSet()
    files.ParseFromString(product_descriptors().read_bytes())
    for f in files.file:
        for service in f.service:
            for method in service.method:
                if service.name == "SaxGateway" and method.name == "Generate":
                    method.options.ClearExtension(annotations_pb2.http)  # type: ignore[arg-type]
    lm = files.file.add(
        name="saxb/lm.proto",
        package="sax.server.lm",
        syntax="proto3",
        dependency=["google/api/annotations.proto", "saxgateway/v1/gateway.proto"],
    )
    method = lm.service.add(name="LMService").method.add(
        name="Generate",
        input_type=".saxgateway.v1.GenerateRequest",
        output_type=".saxgateway.v1.GenerateResponse",
    )
    rule = http_pb2.HttpRule(post="/generate", body="*")
    rule.additional_bindings.add(post="/v1/models/{model=**}:generate", body="*")
    method.options.Extensions[annotations_pb2.http].CopyFrom(rule)  # type: ignore[index]
    return files.SerializeToString()


def cluster_name(model: str) -> str:
    return "model" + model.replace("/", "_")


def _encoded_path(model: str) -> dict[str, Any]:
    """``/v1/models/<model, '/' as %2F>:generate``, hex digits in either case, any query."""
    parts = (re.escape(p) for p in model.split("/"))
    return {"safe_regex": {"regex": "/v1/models/" + "(%2[fF])".join(parts) + r":generate(\?.*)?"}}


def allowed_clients(edge: EdgeConfig, model: str) -> list[str]:
    """Clients with the data role whose ``clients.<id>.models`` admit ``model``."""
    clients = sorted({k.client for k in edge.api_keys if "data" in k.roles})
    out = []
    for client in clients:
        patterns = edge.policy(client).models
        if patterns is None or any(fnmatch.fnmatchcase(model, p) for p in patterns):
            out.append(client)
    return out


def _rbac(clients: Iterable[str]) -> dict[str, Any]:
    ids = [{"header": {"name": IDENTITY_HEADER, "string_match": {"exact": c}}} for c in clients]
    principal = {"or_ids": {"ids": ids}} if ids else {"not_id": {"any": True}}
    return {
        "@type": _EXT + "filters.http.rbac.v3.RBACPerRoute",
        "rbac": {
            "rules": {
                "action": "ALLOW",
                "policies": {"model": {"permissions": [{"any": True}], "principals": [principal]}},
            }
        },
    }


def _model_routes(edge: EdgeConfig, models: Iterable[str], deadline: float) -> list[Config]:
    routes: list[Config] = []
    for model in models:
        action = {
            "cluster": cluster_name(model),
            "timeout": f"{deadline:g}s",
            "priority": "HIGH",
            "cluster_not_found_response_code": "NOT_FOUND",
            "retry_policy": {
                "retry_on": "connect-failure,refused-stream,reset-before-request,unavailable",
                "num_retries": 2,
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
        per_filter = {
            "envoy.filters.http.rbac": _rbac(allowed_clients(edge, model)),
            "cost_header": {
                "@type": _EXT + "filters.http.lua.v3.LuaPerRoute",
                "name": "cost_header",
            },
        }
        in_body = {
            "filter": METADATA,
            "path": [{"key": "model"}],
            "value": {"string_match": {"exact": model}},
        }
        in_path = {"name": "x-envoy-original-path", "string_match": _encoded_path(model)}
        for match in ({"dynamic_metadata": [in_body]}, {"headers": [in_path]}):
            routes.append(
                {
                    "match": {"path": GRPC_PATH, **match},
                    "route": action,
                    "typed_per_filter_config": per_filter,
                }
            )
    routes.append(
        {
            "match": {"path": GRPC_PATH},
            "direct_response": {"status": 404, "body": {"inline_string": "model not found"}},
        }
    )
    return routes


def _cluster(model: str, edge: EdgeConfig, eds: Path) -> Config:
    limit = edge.quotas.models.get(model, edge.quotas.model)
    return {
        "@type": "type.googleapis.com/envoy.config.cluster.v3.Cluster",
        "name": cluster_name(model),
        "type": "EDS",
        "eds_cluster_config": {
            "eds_config": {"path_config_source": {"path": str(eds)}, "resource_api_version": "V3"}
        },
        "connect_timeout": "1s",
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": _EXT + "upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": {
                    "http2_protocol_options": {"initial_stream_window_size": 1048576}
                },
            }
        },
        "circuit_breakers": {
            "thresholds": [
                {
                    "priority": "HIGH",
                    "max_requests": limit.max_in_flight,
                    "max_pending_requests": max(limit.max_queued, 1),
                    "retry_budget": {"budget_percent": {"value": 20.0}, "min_retry_concurrency": 8},
                }
            ]
        },
        # As the product's gateway cluster: a replica that refuses or resets connections is
        # ejected (its gRPC errors, which travel with HTTP 200, never count).
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


def _endpoints(model: str, replicas: Iterable[str]) -> Config:
    lb = []
    for address in replicas:
        host, port = address.rsplit(":", 1)
        socket = {"socket_address": {"address": host, "port_value": int(port)}}
        lb.append({"endpoint": {"address": socket}})
    return {
        "@type": "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment",
        "cluster_name": cluster_name(model),
        "endpoints": [{"lb_endpoints": lb}],
    }


def _write(path: Path, resources: list[Config]) -> None:
    """Writes an xDS file as Envoy wants to find it: whole, by rename (it watches the name)."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"resources": resources}))
    os.replace(tmp, path)


def write_discovery(workdir: Path, edge: EdgeConfig, replicas: dict[str, list[str]]) -> Path:
    """The CDS file and one EDS file per model, as the control plane would write them."""
    clusters = []
    for model, addresses in replicas.items():
        eds = workdir / f"eds-{cluster_name(model)}.json"
        _write(eds, [_endpoints(model, addresses)])
        clusters.append(_cluster(model, edge, eds))
    cds = workdir / "cds.json"
    _write(cds, clusters)
    return cds


def _json_to_metadata() -> Config:
    inner = {
        "name": "envoy.filters.http.json_to_metadata",
        "typed_config": {
            "@type": _EXT + "filters.http.json_to_metadata.v3.JsonToMetadata",
            "request_rules": {
                "rules": [
                    {
                        "selectors": [{"key": "model"}],
                        "on_present": {"metadata_namespace": METADATA, "key": "model"},
                    }
                ],
                "allow_empty_content_type": True,
            },
        },
    }
    other_path = {
        "not_matcher": header_predicate(
            ":path", {"safe_regex": {"google_re2": {}, "regex": r"/generate(\?.*)?"}}
        )
    }
    return skip_when("model_from_body", inner, other_path)


def _no_rbac(config: Config) -> None:
    for route in _vhost(config)["routes"]:
        route.get("typed_per_filter_config", {}).pop("envoy.filters.http.rbac", None)
    _drop_filter("envoy.filters.http.rbac")(config)


def _no_cost_header(config: Config) -> None:
    for route in _vhost(config)["routes"]:
        if route["match"].get("path") == GRPC_PATH:
            route.get("typed_per_filter_config", {}).pop("cost_header", None)


def _no_access_log(config: Config) -> None:
    del _hcm(config)["access_log"]


def _no_api_key(config: Config) -> None:
    """api_key_auth and the RBAC that needs its identity, gone: what the keys cost."""
    _no_rbac(config)
    for name in ("envoy.filters.http.api_key_auth", "anonymous_body", "anonymous_compression"):
        _drop_filter(name)(config)


def _no_retry_cb(config: Config) -> None:
    for route in _vhost(config)["routes"]:
        if route["match"].get("path") == GRPC_PATH and "route" in route:
            route["route"] = {k: v for k, v in route["route"].items() if k != "retry_policy"}


_B_ONLY = {
    "model_from_body",
    "envoy.filters.http.api_key_auth",
    "envoy.filters.http.grpc_json_transcoder",
    "envoy.filters.http.rbac",
    "envoy.filters.http.router",
}


def _b_only(config: Config) -> None:
    """Only what (b) adds to its ceiling: the model from the body, the key, the transcoder,
    the per-model RBAC and the router; none of the product's other filters, no access log."""
    hcm = _hcm(config)
    hcm["http_filters"] = [f for f in hcm["http_filters"] if f["name"] in _B_ONLY]
    del hcm["access_log"]
    _no_cost_header(config)


#: Variant -> a change to the full config, to price one feature at a time.
VARIANTS: dict[str, Callable[[Config], None]] = {
    "full": lambda c: None,
    "no-rbac": _no_rbac,
    "no-cost-header": _no_cost_header,
    "no-access-log": _no_access_log,
    "no-api-key": _no_api_key,
    "no-retry": _no_retry_cb,
    "b-only": _b_only,
}


def config(
    *,
    port: int,
    admin_port: int,
    gateway: str,
    workdir: Path,
    replicas: dict[str, list[str]],
    concurrency: int,
    variant: str = "full",
) -> Config:
    """(b)'s Envoy config; writes the descriptor set and the discovery files to ``workdir``."""
    edge = parse_edge(EDGE)
    descriptor = workdir / "b.binpb"
    descriptor.write_bytes(descriptor_set())
    settings = EnvoySettings(
        gateway_endpoints=(gateway,),
        listen_port=port,
        admin_port=admin_port,
        route_timeout=DEFAULT_DEADLINE_S + 10,
        edge=edge,
        concurrency=concurrency,
    )
    cfg: Config = yaml.safe_load(render(settings, descriptor, secrets_dir=workdir / "secrets"))
    filters = _filters(cfg)
    transcoder = next(
        i for i, f in enumerate(filters) if f["name"] == "envoy.filters.http.grpc_json_transcoder"
    )
    filters[transcoder]["typed_config"]["services"].insert(0, SERVICE)
    filters.insert(transcoder, _json_to_metadata())
    routes = _vhost(cfg)["routes"]
    # The HTTP path's own route chooses the filters' per-route configs: without one here,
    # the OpenAI routes' regex (/v1/models/.+) took /v1/models/...:generate to their transcoder.
    openai = next(i for i, r in enumerate(routes) if "/v1/(models" in str(r["match"]))
    routes.insert(
        openai,
        {
            "match": {"safe_regex": {"regex": "/v1/models/[^/]+:generate"}},
            "route": {"cluster": "gateway_grpc"},
        },
    )
    first_stream = next(i for i, r in enumerate(routes) if "GenerateStream" in str(r["match"]))
    routes[first_stream:first_stream] = _model_routes(edge, replicas, DEFAULT_DEADLINE_S)
    _hcm(cfg)["route_config"]["validate_clusters"] = False  # model clusters come from CDS
    cds = write_discovery(workdir, edge, replicas)
    cfg["dynamic_resources"] = {
        "cds_config": {"path_config_source": {"path": str(cds)}, "resource_api_version": "V3"}
    }
    VARIANTS[variant](cfg)
    return cfg


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--admin-port", type=int, required=True)
    parser.add_argument("--model-server", required=True, help="HOST:PORT of every model's replica")
    parser.add_argument("--gateway", required=True, help="HOST:PORT of the control plane")
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--variant", choices=VARIANTS, default="full")
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    cfg = config(
        port=args.port,
        admin_port=args.admin_port,
        gateway=args.gateway,
        workdir=args.workdir,
        replicas={m: [args.model_server] for m in MODELS},
        concurrency=args.concurrency,
        variant=args.variant,
    )
    path = args.workdir / "full-envoy.yaml"
    path.write_text(yaml.safe_dump(cfg))
    exec_envoy(path, args.concurrency)


if __name__ == "__main__":
    main()
