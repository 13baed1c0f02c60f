"""Changes to the stack's Envoy config, one function each, that bench._stream_memory measures
side by side (``VARIANTS``; front_ab reuses the helpers). Each takes the rendered config as
a dict and changes it in place.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Config = dict[str, Any]


def _hcm(config: Config) -> Config:
    listener = config["static_resources"]["listeners"][0]
    hcm: Config = listener["filter_chains"][0]["filters"][0]["typed_config"]
    return hcm


def _vhost(config: Config) -> Config:
    vhost: Config = _hcm(config)["route_config"]["virtual_hosts"][0]
    return vhost


def _route(config: Config, path: str) -> Config:
    for route in _vhost(config)["routes"]:
        if route["match"].get("path") == path:
            found: Config = route
            return found
    raise KeyError(path)


def _filters(config: Config) -> list[Config]:
    filters: list[Config] = _hcm(config)["http_filters"]
    return filters


def _drop_filter(name: str) -> Callable[[Config], None]:
    def change(config: Config) -> None:
        hcm = _hcm(config)
        hcm["http_filters"] = [f for f in hcm["http_filters"] if f["name"] != name]

    return change


def _drop_filters(config: Config, *names: str) -> None:
    for name in names:
        _drop_filter(name)(config)


def _stream_route(change: Callable[[Config], None]) -> Callable[[Config], None]:
    def apply(config: Config) -> None:
        change(_route(config, "/generate_stream"))

    return apply


def _no_retry(config: Config) -> None:
    del _vhost(config)["retry_policy"]


def _per_request_buffer(limit: int) -> Callable[[Config], None]:
    def change(config: Config) -> None:
        for route in _vhost(config)["routes"]:
            if "route" in route:
                route["per_request_buffer_limit_bytes"] = limit

    return change


def _vhost_buffer(limit: int) -> Callable[[Config], None]:
    def change(config: Config) -> None:
        _vhost(config)["per_request_buffer_limit_bytes"] = limit

    return change


def _off(name: str) -> Callable[[Config], None]:
    def change(route: Config) -> None:
        per_filter = route.setdefault("typed_per_filter_config", {})
        per_filter[name] = {
            "@type": "type.googleapis.com/envoy.config.route.v3.FilterConfig",
            "disabled": True,
        }

    return change


def _hcm_set(**values: Any) -> Callable[[Config], None]:
    def change(config: Config) -> None:
        _hcm(config).update(values)

    return change


def _upstream_streams(count: int) -> Callable[[Config], None]:
    def change(config: Config) -> None:
        cluster = config["static_resources"]["clusters"][0]
        options = cluster["typed_extension_protocol_options"]
        http = options["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]
        http["explicit_http_config"]["http2_protocol_options"]["max_concurrent_streams"] = count

    return change


_EXT = "type.googleapis.com/envoy.extensions.filters.http."

_COPY_BODY = """
function envoy_on_request(request)
  local body = request:body()
  if body == nil then return end
  body:setBytes(body:getBytes(0, body:length()))
end
"""


def _stream_lua(source: str) -> Callable[[Config], None]:
    def change(config: Config) -> None:
        _copy_body(config, source)

    return change


def _before_transcoder(config: Config, http_filter: Config) -> None:
    """Puts ``http_filter`` in the chain just before the transcoder."""
    filters = _filters(config)
    at = next(
        i for i, f in enumerate(filters) if f["name"] == "envoy.filters.http.grpc_json_transcoder"
    )
    filters.insert(at, http_filter)


def _copy_body(config: Config, source: str = _COPY_BODY) -> None:
    _before_transcoder(
        config,
        {
            "name": "copy_body",
            "disabled": True,
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua",
                "source_codes": {"copy_body": {"inline_string": source}},
            },
        },
    )
    route = _route(config, "/generate_stream")
    route["typed_per_filter_config"]["copy_body"] = {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.lua.v3.LuaPerRoute",
        "name": "copy_body",
    }


def _fs_buffer(config: Config) -> None:
    _before_transcoder(
        config,
        {
            "name": "envoy.filters.http.file_system_buffer",
            "typed_config": {
                "@type": _EXT + "file_system_buffer.v3.FileSystemBufferFilterConfig",
                "manager_config": {"id": "fsb", "thread_pool": {"thread_count": 1}},
                "request": {
                    "behavior": {"fully_buffer": {}},
                    "memory_buffer_bytes_limit": 1048576,
                    "storage_buffer_bytes_limit": 0,
                },
                "response": {"behavior": {"stream_when_possible": {}}},
            },
        },
    )


def _without_stream_body(config: Config) -> None:
    """As before the `stream_body` filter (the body stays in the socket's read buffer)."""
    _drop_filter("stream_body")(config)
    for route in _vhost(config)["routes"]:
        route.get("typed_per_filter_config", {}).pop("stream_body", None)


def _listener_buffer(limit: int) -> Callable[[Config], None]:
    def change(config: Config) -> None:
        _without_stream_body(config)
        config["static_resources"]["listeners"][0]["per_connection_buffer_limit_bytes"] = limit

    return change


def _cluster(config: Config) -> Config:
    cluster: Config = config["static_resources"]["clusters"][0]
    return cluster


def _upstream_h2(config: Config) -> Config:
    options = _cluster(config)["typed_extension_protocol_options"]
    h2: Config = options["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"][
        "explicit_http_config"
    ]["http2_protocol_options"]
    return h2


def _shrink_heap(config: Config) -> None:
    """The overload manager's shrink_heap (tcmalloc releases free memory) from a tiny heap
    share on: it runs all the time."""
    overload = config["overload_manager"]
    overload["refresh_interval"] = "0.25s"
    monitor = "envoy.resource_monitors.fixed_heap"
    overload["resource_monitors"].append(
        {
            "name": monitor,
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.resource_monitors.fixed_heap"
                ".v3.FixedHeapConfig",
                "max_heap_size_bytes": 2 * 1024**3,
            },
        }
    )
    overload["actions"] = [
        {
            "name": "envoy.overload_actions.shrink_heap",
            "triggers": [{"name": monitor, "threshold": {"value": 0.01}}],
        }
    ]


_FLOOR = {"envoy.filters.http.grpc_json_transcoder", "envoy.filters.http.router"}


def _minimal(config: Config) -> None:
    """The floor of any config of ours: the transcoder and the router alone, with no retries,
    request IDs, access log, local replies, added headers or per-route filter settings."""
    hcm = _hcm(config)
    hcm["http_filters"] = [f for f in hcm["http_filters"] if f["name"] in _FLOOR]
    for key in ("access_log", "local_reply_config", "tracing", "request_id_extension"):
        hcm.pop(key, None)
    hcm.update(generate_request_id=False, always_set_request_id_in_response=False)
    vhost = _vhost(config)
    for key in ("request_headers_to_add", "retry_policy", "typed_per_filter_config"):
        vhost.pop(key, None)
    for route in vhost["routes"]:
        route.pop("typed_per_filter_config", None)
    _cluster(config).pop("outlier_detection", None)


VARIANTS: dict[str, Callable[[Config], None]] = {
    "listener_buffer_4k": _listener_buffer(4096),
    "listener_buffer_1k": _listener_buffer(1024),
    "without_stream_body": _without_stream_body,
    "fs_buffer": _fs_buffer,
    "copy_body": _copy_body,
    "legacy_parser": lambda c: c.update(
        layered_runtime={
            "layers": [
                {
                    "name": "static",
                    "static_layer": {"envoy.reloadable_features.http1_use_balsa_parser": False},
                }
            ]
        }
    ),
    "noop_lua": _stream_lua("function envoy_on_request(request) end"),
    "body_only_lua": _stream_lua("function envoy_on_request(request) request:body() end"),
    "copy_body_gc": _stream_lua(
        _COPY_BODY.replace("\nend\n", "\n  collectgarbage('step', 0)\nend\n")
    ),
    "base": lambda config: None,
    "no_retry": _no_retry,
    "route_buffer_0": _per_request_buffer(0),
    "route_buffer_1k": _per_request_buffer(1024),
    "vhost_buffer_0": _vhost_buffer(0),
    "no_buffer_filter": _drop_filter("envoy.filters.http.buffer"),
    "no_cors": _drop_filter("envoy.filters.http.cors"),
    "no_method_filter": _drop_filter("http_method"),
    "no_head_filter": _drop_filter("head_bodies"),
    "no_grpc_failures_filter": _drop_filter("grpc_failures"),
    "no_header_to_metadata": _drop_filter("envoy.filters.http.header_to_metadata"),
    "no_lua": lambda c: _drop_filters(c, "openai_errors", "cost_header"),
    "no_local_reply": lambda c: _hcm(c).pop("local_reply_config"),
    "no_access_log": lambda c: _hcm(c).pop("access_log"),
    "no_request_id": _hcm_set(generate_request_id=False, always_set_request_id_in_response=False),
    "stream_buffer_off": _stream_route(_off("envoy.filters.http.buffer")),
    "stream_cors_off": _stream_route(_off("envoy.filters.http.cors")),
    "upstream_100_streams": _upstream_streams(100),
    "suppress_envoy_headers": lambda c: _filters(c)[-1]["typed_config"].update(
        suppress_envoy_headers=True
    ),
    "no_route_idle_timeout": _stream_route(lambda route: route["route"].pop("idle_timeout")),
    "no_stream_idle_timeout": _hcm_set(stream_idle_timeout="0s"),
    # Issue 18's candidates, measured again (none moved memory per stream by 0.5 KB).
    "listener_buffer_32k": _listener_buffer(32768),
    "cluster_buffer_32k": lambda c: _cluster(c).update(per_connection_buffer_limit_bytes=32768),
    "upstream_windows_64k": lambda c: _upstream_h2(c).update(
        initial_stream_window_size=65536, initial_connection_window_size=1048576
    ),
    "codec_http1": _hcm_set(codec_type="HTTP1"),
    "stats_reject_all": lambda c: c.update(stats_config={"stats_matcher": {"reject_all": True}}),
    "allocator_release": lambda c: c.update(
        memory_allocator_manager={"bytes_to_release": 16777216, "memory_release_interval": "1s"}
    ),
    "shrink_heap": _shrink_heap,
    "minimal": _minimal,
}
