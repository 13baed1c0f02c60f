"""Envoy's config in direct mode: the product's listener, with the body's model read into
metadata before the transcoder, and its route table and clusters read from files that the
control plane rewrites (`DirectFiles`)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import yaml

from gateway.edge import header_predicate, skip_when
from gateway.launch.direct._files import Config, DirectFiles
from gateway.launch.direct._wire import wire_filter

#: The dynamic metadata namespace of what the body of ``POST /generate`` says.
NAMESPACE = "saxgw.direct"
#: A body field that needs a gateway when present: the call's own deadline.
TIMEOUT = "timeout"
#: Object fields (the JSON name and the proto name) that need a gateway when present: extra
#: inputs, our map of Values, are another message than Sax's ExtraInputs on the wire.
OBJECT_FIELDS = ("extra_inputs", "extraInputs")
#: The bodies read (a Content-Length of at most 5 digits: under 100,000 bytes), where a direct
#: call's fit many times over (a query of 8,192 bytes, each escaped as \uXXXX: 49,152). Envoy
#: reads a body into a tree of about 85 bytes of memory per JSON value, where the transcoder
#: streams: 4 MB of zeros in an unknown field took Envoy's peak memory from 107 MB to 443 MB,
#: 0.5 s of its worker thread, and the body limit is 32 MiB. A larger body, or one of unknown
#: length (chunked), goes to a gateway, unread.
_BODY_BYTES = {"safe_regex": {"google_re2": {}, "regex": "[0-9]{1,5}"}}
#: The HTTP path whose body is read: the model is in the body only there.
HTTP_PATH = "/generate"
#: The body's model, as a request header that Envoy sets itself (`model_header_filter`): the
#: first matcher of each direct route, so a ``/generate`` call tries each route with one
#: string compare (the route's other matchers, the body's model in the metadata too, run only
#: on the route of its model). Removed before any upstream (`direct_listener`).
MODEL_HEADER = "x-saxgw-direct-model"
#: The gRPC path the transcoder makes of it, which the routes match.
GATEWAY_PATH = "/saxgateway.v1.SaxGateway/Generate"
_EXT = "type.googleapis.com/envoy.extensions."
_TRANSCODER = "envoy.filters.http.grpc_json_transcoder"


def without(field: str) -> str:
    """The metadata key set when the body has no object ``field``."""
    return "without_" + field


def _value(key: str) -> Config:
    """The body's ``key``, as it is, when it holds a string, a number or a bool; a string of
    more than 8,192 bytes is not read (Envoy 1.40's limit): a longer prompt has no ``query``
    in the metadata, so it goes to a gateway, as does any prompt the gateway would refuse as
    too long (lim.MAX_TEXT_CHARS is far above)."""
    return {
        "selectors": [{"key": key}],
        "on_present": {"metadata_namespace": NAMESPACE, "key": key},
    }


def _no_object(key: str) -> Config:
    """A flag set when ``key`` does not hold an object (absent, or null, which is the same to
    the transcoder). Envoy 1.40 reads a value only if it is not an object, and applies a
    rule's ``on_missing`` only where a rule also has ``on_present``, or where an object on
    the selector's way is missing: so the selector looks inside ``key``, with no
    ``on_present``, and only ``key`` itself can be missing."""
    missing = {"metadata_namespace": NAMESPACE, "key": without(key), "value": "1"}
    return {"selectors": [{"key": key}, {"key": "-"}], "on_missing": missing}


def body_filter() -> Config:
    """``json_to_metadata`` on ``POST /generate`` alone: the body's model, query and timeout,
    and a flag for each object field only a gateway serves that it does not have. Skipped on
    every other path, so no other call pays for reading its body twice, and for a body
    `_BODY_BYTES` leaves out."""
    rules = [_value("model"), _value("query"), _value(TIMEOUT)]
    rules += [_no_object(f) for f in OBJECT_FIELDS]
    inner = {
        "name": "envoy.filters.http.json_to_metadata",
        "typed_config": {
            "@type": _EXT + "filters.http.json_to_metadata.v3.JsonToMetadata",
            "request_rules": {"rules": rules, "allow_empty_content_type": True},
        },
    }
    other_path = {"not_matcher": header_predicate(":path", {"exact": HTTP_PATH})}
    large = {"not_matcher": header_predicate("content-length", _BODY_BYTES)}
    return skip_when("direct_body", inner, {"or_matcher": {"predicate": [other_path, large]}})


def model_header_filter() -> Config:
    """`MODEL_HEADER`, set to the body's model (`body_filter`'s metadata) on ``POST
    /generate``, before the transcoder routes the call. A client's own is removed first: where
    the metadata has no model (a body without one, or too large to read), Envoy writes no
    value, and would keep the client's. Skipped on every other path, as `body_filter` is (a
    client's header there matches no direct route, whose path is /generate's, and is removed
    before any upstream)."""
    set_model = {
        "header": {"key": MODEL_HEADER, "value": f"%DYNAMIC_METADATA({NAMESPACE}:model)%"},
        "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
    }
    inner = {
        "name": "envoy.filters.http.header_mutation",
        "typed_config": {
            "@type": _EXT + "filters.http.header_mutation.v3.HeaderMutation",
            "mutations": {"request_mutations": [{"remove": MODEL_HEADER}, {"append": set_model}]},
        },
    }
    other_path = {"not_matcher": header_predicate(":path", {"exact": HTTP_PATH})}
    return skip_when("direct_model_header", inner, other_path)


def grpc_stats_filter() -> Config:
    """Envoy's count of the gRPC status of each call, by the cluster that answered it
    (``cluster.direct_sax_test_lm.grpc.total``, ``.success``, ``.failure`` and one per status,
    ``.5``): a model server's error comes as a gRPC status under HTTP 200, which the cluster's
    ``upstream_rq_xx`` counts as a 2xx, and the gateway's metrics never see a direct call.
    Just before the router, it reads the model server's answer before any filter rewrites it.
    No method is named (an empty allowlist): a method in a stat's name is split by Envoy's
    Prometheus tags at its dots, and each call of a cluster is one method here anyway."""
    return {
        "name": "envoy.filters.http.grpc_stats",
        "typed_config": {
            "@type": _EXT + "filters.http.grpc_stats.v3.FilterConfig",
            "individual_method_stats_allowlist": {"services": []},
        },
    }


def _on_direct_routes(direct: bool) -> Config:
    """An access log filter: the call took a direct route (`_resources.route` names them)."""
    test = "xds.route_name.startsWith('direct ')"
    return {
        "extension_filter": {
            "name": "envoy.access_loggers.extension_filters.cel",
            "typed_config": {
                "@type": _EXT + "access_loggers.filters.cel.v3.ExpressionFilter",
                "expression": test if direct else f"!({test})",
            },
        }
    }


def _logs_direct_calls_as_sent(hcm: Config) -> None:
    """The access log of a direct call says what the client sent, as for a call to a gateway:
    the route's rewrite to Sax's method leaves ``:path`` (the log's ``grpc_method``) Sax's
    path, and the router keeps the gRPC path in x-envoy-original-path (its ``path``), which
    the transcoder had given the HTTP path. Each log is doubled: the one as it was, for every
    other call, and one for the calls of direct routes, whose paths it writes as they were
    (a direct route takes nothing else)."""
    logs = []
    for log in hcm["access_log"]:
        direct = copy.deepcopy(log)
        fields = direct["typed_config"]["log_format"]["json_format"]
        fields["path"], fields["grpc_method"] = HTTP_PATH, GATEWAY_PATH
        logs += [
            {**log, "filter": _on_direct_routes(False)},
            {**direct, "filter": _on_direct_routes(True)},
        ]
    hcm["access_log"] = logs


#: Each direct cluster's stats that nobody reads: its HTTP/2 codec's (about 30 counters and 4
#: histograms of header and cookie sizes), and the histograms of its connections' lengths,
#: connect times and requests per connection, and of "external" request times (the same calls
#: as ``upstream_rq_time``). Kept, a cluster made 362 Prometheus series (34 KB of a scrape):
#: 300 models made the ops ``/metrics`` 10.2 MB, scraped in 0.76 s. What docs/operations.md
#: reads stays: ``upstream_rq_*`` (``upstream_rq_time`` too), ``grpc.*``, ``circuit_breakers``,
#: ``outlier_detection``, membership. Envoy's regex must match the whole name (a prefix such
#: as ``...\.http2\.`` matched nothing); a model ID has no dot, so ``[^.]+`` is the cluster.
DROPPED_STATS = (
    r"cluster\.direct_[^.]+\."
    r"(http2\..*|upstream_cx_connect_ms|upstream_cx_length_ms|upstream_rq_per_cx|"
    r"external\.upstream_rq_time)"
)


def _drops_unread_cluster_stats(config: Config) -> None:
    """Every direct cluster's stats but `DROPPED_STATS`: the template's matcher, and this."""
    patterns = config["stats_config"]["stats_matcher"]["exclusion_list"]["patterns"]
    patterns.append({"safe_regex": {"google_re2": {}, "regex": DROPPED_STATS}})


def _hcm(config: Config) -> Config:
    for listener in config["static_resources"]["listeners"]:
        for chain in listener["filter_chains"]:
            for f in chain["filters"]:
                if f["name"] == "envoy.filters.network.http_connection_manager":
                    hcm: Config = f["typed_config"]
                    return hcm
    raise ValueError("no http_connection_manager in Envoy's config")


#: libyaml's loader where PyYAML has it (its wheels do): its Python loader took 0.65 s to read
#: the rendered config (220 KB) at every start in direct mode, this one 0.11 s.
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def direct_listener(rendered: str, directory: Path) -> str:
    """``rendered`` (Envoy's config from the template) in direct mode; writes the base route
    table, and a first RDS and CDS file that route everything to the gateways, to
    ``directory``, which the control plane then rewrites."""
    config = yaml.load(rendered, Loader=_YAML_LOADER)
    files = DirectFiles(directory)
    hcm = _hcm(config)
    filters = hcm["http_filters"]
    at = next(i for i, f in enumerate(filters) if f["name"] == _TRANSCODER)
    filters.insert(at + 1, wire_filter(NAMESPACE, HTTP_PATH))
    filters.insert(at, model_header_filter())
    filters.insert(at, body_filter())
    router = next(i for i, f in enumerate(filters) if f["name"] == "envoy.filters.http.router")
    filters.insert(router, grpc_stats_filter())
    _logs_direct_calls_as_sent(hcm)
    _drops_unread_cluster_stats(config)
    route_config = hcm.pop("route_config")
    # Both headers mutations name x-saxgw-* headers of the gateways; on a direct route the
    # route's own removals (the stack token) must come after the virtual host's additions.
    route_config["most_specific_header_mutations_wins"] = True
    # Every route's, the catch-all to the gateways as the direct ones: it is Envoy's alone.
    route_config.setdefault("request_headers_to_remove", []).append(MODEL_HEADER)
    files.write_base(route_config)
    files.write_first()
    hcm["rds"] = {
        "route_config_name": route_config["name"],
        "config_source": files.source(files.routes),
    }
    config["dynamic_resources"] = {"cds_config": files.source(files.clusters)}
    return json.dumps(config)
