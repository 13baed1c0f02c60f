"""Envoy's config from the --config file: Envoy itself validates what we render, and
`saxgw serve` refuses to expose a cell without authentication."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from google.api import annotations_pb2, http_pb2
from google.protobuf.descriptor import MethodDescriptor
from saxgateway.v1 import gateway_pb2, openai_pb2

from gateway.cli.main import main
from gateway.common.stacktoken import STACK_TOKEN_HEADER, new_token
from gateway.configfile import parse_config
from gateway.edge import EdgeConfig, Limits
from gateway.edge._ratelimit import rate_limit
from gateway.launch._spans import span_operation
from gateway.launch.direct._resources import SAX_PATH
from gateway.launch.envoy import (
    EnvoySettings,
    descriptor_set,
    docs_page,
    envoy_binary,
    guard_dog_timeout,
    openapi_document,
    render,
    route_timeout_over,
    swagger_ui,
)
from gateway.service._fields import RECEIVING_HEADER
from gateway.service._streams import CLIENT_ADDRESS_HEADER
from tests._envoy_routes import envoy_yaml, unary_route_timeouts
from tests.e2e.security._credentials import CertificateAuthority, JwtSigner

KEYS = [{"key": "sk-ops-0123456789abcdef", "client": "ops", "roles": ["admin", "data"]}]


def _full_config(tmp_path: Path) -> dict[str, object]:
    ca = CertificateAuthority.generate()
    cert, key = ca.issue("localhost", server=True)
    for name, pem in (("cert.pem", cert), ("key.pem", key), ("ca.pem", ca.pem())):
        (tmp_path / name).write_bytes(pem)
    (tmp_path / "jwks.json").write_text(JwtSigner.generate().jwks())
    return {
        "auth": {
            "api_keys": KEYS,
            "jwt": [{"issuer": "https://i.test", "jwks_file": "jwks.json", "roles_claim": "r"}],
        },
        "clients": {
            "team-a": {"rate": {"requests_per_second": 0.5, "burst": 2}},
            "team-b": {"rate": {"requests_per_second": 37.5}},
        },
        "quotas": {"rate": {"requests_per_second": 10}},
        "tls": {
            "cert_file": "cert.pem",
            "key_file": "key.pem",
            "client_ca_file": "ca.pem",
            "certificate_clients": [{"subject": "CN=c", "client": "c", "roles": ["data"]}],
        },
        "cors": {"allowed_origins": ["https://app.example"]},
        "limits": {
            "max_request_headers_kb": 32,
            "max_stream_duration": 600,
            "trusted_proxy_hops": 2,
        },
        "admin_only": ["reflection"],
    }


class _Strict(yaml.CSafeLoader):
    """Fails on a key set twice in one mapping: PyYAML (and Envoy) would keep one of them, and
    a setting from the template or the config file would silently vanish."""


def _mapping(loader: _Strict, node: yaml.MappingNode) -> dict[object, object]:
    keys = [loader.construct_object(key) for key, _ in node.value]
    if twice := sorted({str(k) for k in keys if keys.count(k) > 1}):
        raise yaml.constructor.ConstructorError(None, None, f"set twice: {twice}", node.start_mark)
    return loader.construct_mapping(node)


_Strict.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def _render(tmp_path: Path, data: dict[str, object]) -> dict[str, Any]:
    edge = parse_config(data, tmp_path).edge
    text = render(
        EnvoySettings(gateway_endpoints=["127.0.0.1:50051"], edge=edge, cors_origins=["https://x"]),
        secrets_dir=tmp_path / "secrets",
    )
    (tmp_path / "envoy.yaml").write_text(text)
    parsed: dict[str, Any] = yaml.load(text, Loader=_Strict)
    return parsed


def _filters(config: dict[str, Any]) -> list[str]:
    listener = config["static_resources"]["listeners"][0]
    hcm = listener["filter_chains"][0]["filters"][0]["typed_config"]
    return [f["name"] for f in hcm["http_filters"]]


# The HTTP filters every listener has, in order, before the edge config's credentials.
_EVERY_CONFIG = [
    "http_method",
    "head_bodies",
    "grpc_web_status",
    "grpc_web_message",
    "envoy.filters.http.compressor",  # off but on the routes of the files Envoy serves
    "envoy.filters.http.grpc_web",
    "drain_health",  # off but on grpc.health.v1's routes
    "envoy.filters.http.health_check",
    "envoy.filters.http.cors",
    "envoy.filters.http.header_mutation",
    "envoy.filters.http.lua",
    "grpc_only_headers",
]
# Then the filters that hold a body: after the credentials, before the roles.
_BODIES = ["envoy.filters.http.buffer", "openai_errors", "envoy.filters.http.grpc_json_transcoder"]


def test_envoy_accepts_the_full_config(tmp_path: Path) -> None:
    config = _render(tmp_path, _full_config(tmp_path))
    assert _filters(config) == [
        *_EVERY_CONFIG,
        "bearer_scheme",
        "envoy.filters.http.jwt_authn",
        "certificate_client.c",
        "client_claim_check",
        "envoy.filters.http.api_key_auth",
        "anonymous_body",
        "anonymous_compression",
        *_BODIES,
        "envoy.filters.http.rbac",
        "envoy.filters.http.local_ratelimit",
        "cost_header",
        "grpc_status",
        "grpc_failures",
        "envoy.filters.http.header_to_metadata",
        "envoy.filters.http.router",
    ]
    chain = config["static_resources"]["listeners"][0]["filter_chains"][0]
    assert chain["transport_socket"]["typed_config"]["require_client_certificate"] is True
    assert chain["filters"][0]["typed_config"]["xff_num_trusted_hops"] == 2
    # The certificate files themselves are read lazily through SDS, so `{}` stands in here.
    output = _validate(tmp_path / "envoy.yaml")
    assert "OK" in output, output[-2000:]
    # Envoy warns at every start about a deprecated field it will drop in a later release (it
    # said so for `RegexMatcher.google_re2`, RE2 being the default); an upgrade must not break
    # the config.
    deprecated = [line for line in output.splitlines() if "deprecated" in line.lower()]
    assert deprecated == []


def _validate(config: Path) -> str:
    result = subprocess.run(
        [str(envoy_binary()), "--mode", "validate", "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    return result.stdout + result.stderr


def test_any_text_in_names_and_paths_renders_a_config_envoy_takes(tmp_path: Path) -> None:
    # Each stopped Envoy at start, after the config had loaded: an issuer with a non-ASCII
    # character (LuaJIT has no \u escape), a character beyond U+FFFF (an emoji, CJK
    # Extension B) in an audience, a role claim or a client id (JSON's surrogate pair is no
    # YAML), and the package's files under a folder whose name YAML reads as a comment.
    (tmp_path / "jwks.json").write_text(JwtSigner.generate().jwks())
    issuer = {"issuer": "https://login.exämple.com", "jwks_file": "jwks.json"}
    # And a roles claim with dots that names no path of objects (an empty step).
    empty_step = {**issuer, "issuer": "https://b.test", "roles_claim": "https://b.test/roles."}
    data = {
        "auth": {
            "jwt": [
                {**issuer, "audiences": ["api-\U0001f600"], "roles_claim": "r\U0001f600"},
                empty_step,
            ]
        },
        "clients": {"\U00020bb7野": {"rate": {"requests_per_second": 5}}},
    }
    edge = parse_config(data, tmp_path).edge
    folder = tmp_path / "w #1: x"
    docs, swagger = folder / "docs", folder / "swagger-ui"
    shutil.copytree(docs_page(), docs)
    shutil.copytree(swagger_ui(), swagger)
    shutil.copy(descriptor_set(), folder / "d.binpb")
    shutil.copy(openapi_document(), folder / "o.json")
    text = render(
        EnvoySettings(gateway_endpoints=["127.0.0.1:50051"], edge=edge),
        folder / "d.binpb",
        folder / "o.json",
        (docs, swagger),
        secrets_dir=tmp_path / "secrets",
    )
    (tmp_path / "envoy.yaml").write_text(text)
    assert "OK" in _validate(tmp_path / "envoy.yaml"), _validate(tmp_path / "envoy.yaml")[-2000:]
    parsed = envoy_yaml(text)
    assert "\U00020bb7野" in json.dumps(parsed, ensure_ascii=False)
    assert str(docs / "index.html") in json.dumps(parsed, ensure_ascii=False)


@pytest.mark.parametrize(
    ("rate", "burst"),
    [
        *[(0.1, 1), (1.5, 1), (2.5, 2), (3.0, 3), (19.9, 20), (20.5, 21), (37.5, 38)],
        *[(1000.5, 1001), (20.0, 5), (1000.0, 50)],  # bursts below the rate, too
    ],
)
def test_a_token_bucket_refills_at_the_rate_asked(tmp_path: Path, rate: float, burst: int) -> None:
    # A bucket filled once a second with a whole number of tokens rounded 2.5 to 2, and cut a
    # fill larger than the bucket to it (20 per second with a burst of 5 let 5 through).
    quota = {"requests_per_second": rate, "burst": burst}
    edge = parse_config({"quotas": {"rate": quota}}, tmp_path).edge
    limit = rate_limit(edge, "x-client")
    assert limit is not None
    for descriptor in limit["typed_config"]["descriptors"]:
        bucket = descriptor["token_bucket"]
        interval = float(bucket["fill_interval"].removesuffix("s"))
        assert interval >= 0.05  # Envoy's least
        assert bucket["tokens_per_fill"] <= bucket["max_tokens"] == burst
        assert bucket["tokens_per_fill"] / interval == pytest.approx(rate, rel=0.01)


def test_without_a_config_only_the_origin_check_is_added(tmp_path: Path) -> None:
    config = _render(tmp_path, {})
    assert _filters(config) == [
        *_EVERY_CONFIG,
        *_BODIES,
        "cost_header",
        "grpc_status",
        "grpc_failures",
        "envoy.filters.http.header_to_metadata",
        "envoy.filters.http.router",
    ]
    chain = config["static_resources"]["listeners"][0]["filter_chains"][0]
    assert "transport_socket" not in chain


def test_a_thread_stuck_longer_than_a_body_within_the_limit_takes_aborts_envoy(
    tmp_path: Path,
) -> None:
    # Every config has it, the containers' too (`saxgw envoy-config`): Envoy's default, 0,
    # never kills (tests/faults/test_envoy_worker.py: what a stuck worker then does).
    guard = {
        "miss_timeout": "0.2s",
        "megamiss_timeout": "1s",
        "kill_timeout": "64s",
        "max_kill_timeout_jitter": "5s",
    }
    config = _render(tmp_path, {})
    assert config["watchdogs"] == {"main_thread_watchdog": guard, "worker_watchdog": guard}


@pytest.mark.parametrize(
    ("body_limit", "kill"),
    [(32 << 20, 64), (8 << 20, 16), ((8 << 20) + 1, 17), (5 << 20, 10), (1 << 20, 10)],
)
def test_the_guard_dog_waits_2_s_a_mib_of_the_body_limit(body_limit: int, kill: float) -> None:
    # A body of small numbers within the default limit (32 MiB) held a worker for 10.8 s as
    # Envoy transcoded it, and at a fixed 10 s the guard dog aborted Envoy under it.
    edge = EdgeConfig(limits=Limits(max_request_bytes=body_limit))
    assert guard_dog_timeout(EnvoySettings(gateway_endpoints=(), edge=edge)) == kill


def test_a_kill_timeout_given_is_the_guard_dogs() -> None:
    assert guard_dog_timeout(EnvoySettings(gateway_endpoints=(), kill_timeout=3.0)) == 3.0
    assert guard_dog_timeout(EnvoySettings(gateway_endpoints=(), kill_timeout=0.0)) == 0.0


def test_serve_refuses_a_public_address_without_authentication(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert main(["serve", "--sax-root", str(tmp_path), "--listen", "0.0.0.0"]) == 2
    err = capsys.readouterr().err
    assert "refusing to listen on 0.0.0.0 without authentication" in err
    # Each credential the refusal lifts, named (a file of certificate clients alone starts).
    assert "Add auth.api_keys, auth.jwt or tls.certificate_clients to --config" in err


def test_bad_config_is_reported_with_its_key(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "saxgw.yaml"
    path.write_text(yaml.safe_dump({"auth": {"api_keys": [{**KEYS[0], "roles": ["boss"]}]}}))
    assert main(["up", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert "auth.api_keys[0].roles: unknown 'boss'" in err
    assert "sk-ops" not in err


@pytest.mark.parametrize("command", ["up", "serve"])
def test_client_rules_without_a_credential_are_refused(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, command: str
) -> None:
    # No call ever has a client id without auth: the rules were accepted and never applied.
    path = tmp_path / "saxgw.yaml"
    path.write_text(yaml.safe_dump({"clients": {"team-a": {"max_concurrent": 2}}}))
    assert main([command, "--sax-root", str(tmp_path), "--config", str(path)]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"saxgw: bad config: {path}: clients: no client can be identified: client ids come from"
        " auth.api_keys, auth.jwt or tls.certificate_clients, and the config has none"
    ]


def _bindings(method: MethodDescriptor) -> list[str]:
    """A path each of ``method``'s HTTP bindings matches (``{model=sax/*/*}`` -> sax/x/x)."""
    # googleapis-common-protos types `http` as a plain FieldDescriptor, not an extension.
    options = method.GetOptions()
    rule: http_pb2.HttpRule = options.Extensions[annotations_pb2.http]  # type: ignore[index]
    paths = []
    for r in (rule, *rule.additional_bindings):
        template = getattr(r, r.WhichOneof("pattern"))
        paths.append(
            re.sub(r"\{\w+(=([^}]*))?\}", lambda m: (m.group(2) or "x").replace("*", "x"), template)
        )
    return paths


def _route(routes: list[dict[str, Any]], path: str) -> dict[str, Any]:
    """The route Envoy picks for a plain POST to ``path`` (no query string; JSON, or gRPC on a
    gRPC method's path): the first whose match fits."""
    kind = "application/grpc" if re.fullmatch(r"/[\w.]+/\w+", path) else "application/json"
    headers = {":method": "POST", "content-type": kind}
    for route in routes:
        match = route["match"]
        if "query_parameters" in match:
            continue
        if not all(_header_fits(header, headers) for header in match.get("headers", [])):
            continue
        if (
            match.get("path") == path
            or ("prefix" in match and path.startswith(match["prefix"]))
            or ("safe_regex" in match and re.fullmatch(match["safe_regex"]["regex"], path))
        ):
            return route
    raise AssertionError(f"no route for {path}")


def _header_fits(header: dict[str, Any], headers: dict[str, str]) -> bool:
    """Whether a route's header matcher fits ``headers``, as Envoy reads it (a missing header
    fits no matcher but one that treats it as empty)."""
    value = headers.get(header["name"])
    if value is None:
        if not header.get("treat_missing_header_as_empty"):
            return False
        value = ""
    string = header.get("string_match", {})
    if "safe_regex" in string:
        hit = re.fullmatch(string["safe_regex"]["regex"], value) is not None
    elif "prefix" in string:
        hit = value.startswith(string["prefix"])
    elif "exact" in string:
        hit = value == string["exact"]
    else:
        return False  # present_match: on headers these requests do not have
    return hit != bool(header.get("invert_match"))


def test_the_cost_header_filter_is_on_for_unary_calls_and_never_for_streams(
    tmp_path: Path,
) -> None:
    # The filter holds a reply until it ends: on a stream's route it would hold every SSE event
    # back. Filters are picked by the route of the request's own path (HTTP or gRPC).
    config = _render(tmp_path, {})
    listener = config["static_resources"]["listeners"][0]
    hcm = listener["filter_chains"][0]["filters"][0]["typed_config"]
    routes = hcm["route_config"]["virtual_hosts"][0]["routes"]
    service = gateway_pb2.DESCRIPTOR.services_by_name["SaxGateway"]
    for method in service.methods:
        grpc_path = f"/{service.full_name}/{method.name}"
        for path in [grpc_path, *_bindings(method)]:
            on = "cost_header" in _route(routes, path).get("typed_per_filter_config", {})
            assert on != method.server_streaming, (path, on)


def test_the_grpc_status_filter_is_on_for_grpc_streams_and_openais_http_paths_only(
    tmp_path: Path,
) -> None:
    # It keeps a status that came in trailers for the access log, where grpc_web (which moves
    # trailers into the body) would leave UNKNOWN; unary calls have cost_header for that.
    # SaxGateway's HTTP paths never need it: the transcoder is after it and reads the
    # trailers itself. OpenAI's do: it marks a stream OK at its `data: [DONE]`, where the
    # SDKs close the connection, often before the status arrives.
    config = _render(tmp_path, {})
    hcm = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
    routes = hcm["typed_config"]["route_config"]["virtual_hosts"][0]["routes"]
    for service in (
        gateway_pb2.DESCRIPTOR.services_by_name["SaxGateway"],
        openai_pb2.DESCRIPTOR.services_by_name["OpenAIGateway"],
    ):
        for method in service.methods:
            grpc_path = f"/{service.full_name}/{method.name}"
            on = "grpc_status" in _route(routes, grpc_path).get("typed_per_filter_config", {})
            openai = service.name == "OpenAIGateway"
            assert on == (method.server_streaming or openai), grpc_path
            for path in _bindings(method):
                on = "grpc_status" in _route(routes, path).get("typed_per_filter_config", {})
                assert on == openai, path


_TRANSCODER = "envoy.filters.http.grpc_json_transcoder"


def test_only_the_openai_paths_ignore_unknown_query_parameters(tmp_path: Path) -> None:
    # OpenAI ignores a query parameter it does not know, and clients send them (Azure's
    # `?api-version=`, the SDKs' `default_query`); the native API refuses them (400). The
    # OpenAI paths' route carries a transcoder config of its own (the route of the request's
    # own path is the one the transcoder reads), which must be the listener's in all else.
    config = _render(tmp_path, {})
    hcm = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
    [listener] = [
        f["typed_config"] for f in hcm["typed_config"]["http_filters"] if f["name"] == _TRANSCODER
    ]
    assert listener["ignore_unknown_query_parameters"] is False
    assert listener["request_validation_options"]["reject_unknown_query_parameters"] is True
    routes = hcm["typed_config"]["route_config"]["virtual_hosts"][0]["routes"]
    openai = openai_pb2.DESCRIPTOR.services_by_name["OpenAIGateway"]
    own = {
        **listener,
        "services": [openai.full_name],
        "ignore_unknown_query_parameters": True,
    }
    for path in [p for m in openai.methods for p in _bindings(m)]:
        assert _route(routes, path)["typed_per_filter_config"][_TRANSCODER] == own, path
    service = gateway_pb2.DESCRIPTOR.services_by_name["SaxGateway"]
    native = [p for m in service.methods for p in _bindings(m)]
    grpc_paths = [f"/{s.full_name}/{m.name}" for s in (service, openai) for m in s.methods]
    assert "/v1/cells" in native and "/listcell" in native
    for path in [*native, *grpc_paths]:
        assert _TRANSCODER not in _route(routes, path).get("typed_per_filter_config", {}), path


# Filters an HTTP path never needs: each one in a stream's chain lives as long as the stream.
_NOT_FOR_HTTP_STREAMS = ("envoy.filters.http.health_check", "envoy.filters.http.grpc_web")


def _disabled(route: dict[str, Any]) -> set[str]:
    per_filter = route.get("typed_per_filter_config", {})
    return {name for name, c in per_filter.items() if c.get("disabled") is True}


def test_http_stream_routes_leave_out_the_filters_they_never_need(tmp_path: Path) -> None:
    config = _render(tmp_path, {})
    listener = config["static_resources"]["listeners"][0]
    routes = listener["filter_chains"][0]["filters"][0]["typed_config"]["route_config"][
        "virtual_hosts"
    ][0]["routes"]
    service = gateway_pb2.DESCRIPTOR.services_by_name["SaxGateway"]
    streams = [m for m in service.methods if m.server_streaming]
    openai = openai_pb2.DESCRIPTOR.services_by_name["OpenAIGateway"]
    http_paths = [p for m in streams for p in _bindings(m)]
    http_paths += [p for m in openai.methods for p in _bindings(m)]
    assert "/generate_stream" in http_paths and "/v1/chat/completions" in http_paths
    for path in http_paths:
        assert set(_NOT_FOR_HTTP_STREAMS) <= _disabled(_route(routes, path)), path
    # grpc-web calls use the gRPC paths, and /healthz is answered on the catch-all route.
    grpc_paths = [f"/{s.full_name}/{m.name}" for s in (service, openai) for m in s.methods]
    for path in [*grpc_paths, "/healthz"]:
        assert not set(_NOT_FOR_HTTP_STREAMS) & _disabled(_route(routes, path)), path


def test_the_origin_check_runs_only_for_requests_with_an_origin(tmp_path: Path) -> None:
    # Its Lua coroutine would live as long as each stream; clients without an Origin header
    # (curl, SDKs) cannot be cross-origin browser requests, so the filter is skipped for them.
    config = _render(tmp_path, {})
    listener = config["static_resources"]["listeners"][0]
    hcm = listener["filter_chains"][0]["filters"][0]["typed_config"]
    [check] = [f for f in hcm["http_filters"] if f["name"] == "envoy.filters.http.lua"]
    wrapper = check["typed_config"]
    assert wrapper["@type"].endswith("common.matching.v3.ExtensionWithMatcher")
    assert wrapper["extension_config"]["typed_config"]["@type"].endswith("lua.v3.Lua")
    assert (
        "origin"
        in wrapper["extension_config"]["typed_config"]["default_source_code"]["inline_string"]
    )
    [matcher] = wrapper["xds_matcher"]["matcher_list"]["matchers"]
    present = matcher["predicate"]["not_matcher"]["single_predicate"]
    assert present["input"]["typed_config"]["header_name"] == "origin"
    assert present["value_match"]["safe_regex"]["regex"] == ".*"
    assert matcher["on_match"]["action"]["typed_config"]["@type"].endswith("SkipFilter")


def test_grpc_failures_reads_only_the_replies_of_failures_without_details(
    tmp_path: Path,
) -> None:
    # On every route, streams' too (gateway/launch/_grpc_failures.py): its Lua coroutine would
    # live as long as each stream, so it is skipped at the headers of every reply but a
    # failure there (trailers-only) that carries no details, which no stream that has begun
    # can be. A filter of its own, after cost_header, so that it runs before it on the way back.
    config = _render(tmp_path, {})
    listener = config["static_resources"]["listeners"][0]
    hcm = listener["filter_chains"][0]["filters"][0]["typed_config"]
    [wrapper] = [f for f in hcm["http_filters"] if f["name"] == "grpc_failures"]
    assert "disabled" not in wrapper
    typed = wrapper["typed_config"]
    assert typed["@type"].endswith("common.matching.v3.ExtensionWithMatcher")
    assert typed["extension_config"]["typed_config"]["@type"].endswith("lua.v3.Lua")
    [matcher] = typed["xds_matcher"]["matcher_list"]["matchers"]
    assert matcher["on_match"]["action"]["typed_config"]["@type"].endswith("SkipFilter")
    not_failed, detailed = matcher["predicate"]["or_matcher"]["predicate"]
    status = not_failed["not_matcher"]["single_predicate"]
    assert status["input"]["typed_config"]["@type"].endswith("HttpResponseHeaderMatchInput")
    assert status["input"]["typed_config"]["header_name"] == "grpc-status"
    assert status["value_match"]["safe_regex"]["regex"] == "[1-9][0-9]*"
    details = detailed["single_predicate"]
    assert details["input"]["typed_config"]["@type"].endswith("HttpResponseHeaderMatchInput")
    assert details["input"]["typed_config"]["header_name"] == "grpc-status-details-bin"


def test_every_route_hands_the_gateway_the_clients_address(tmp_path: Path) -> None:
    # The gateway counts open streams, and an anonymous caller's calls in flight, per client
    # address (gateway/service/_streams.py): Envoy sets the header for the whole virtual host,
    # so on every route, overwriting whatever a client sent, and no route sets it again.
    config = _render(tmp_path, {})
    listener = config["static_resources"]["listeners"][0]
    hcm = listener["filter_chains"][0]["filters"][0]["typed_config"]
    assert "xff_num_trusted_hops" not in hcm  # 0 by default: the peer is the client
    gateway = hcm["route_config"]["virtual_hosts"][0]
    assert gateway["request_headers_to_add"][0] == {
        "header": {
            "key": CLIENT_ADDRESS_HEADER,
            "value": "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%",
        },
        "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
    }
    # The others are gRPC's te: trailers (tests/e2e/test_grpc_protocol.py) and how long Envoy
    # took to receive the request (tests/e2e/test_timeout_cap.py), a client's own removed.
    assert [h["header"]["key"] for h in gateway["request_headers_to_add"]] == [
        CLIENT_ADDRESS_HEADER,
        "te",
        RECEIVING_HEADER,
    ]
    assert gateway["request_headers_to_remove"] == [RECEIVING_HEADER]
    assert [r["match"] for r in gateway["routes"] if "request_headers_to_add" in r] == []


def test_a_stack_token_is_set_on_every_route_whatever_a_client_sent() -> None:
    # The gateways of a stack with credentials require it (gateway/common/stacktoken.py):
    # set for the whole virtual host, so on every route, a client's own value overwritten.
    # The other virtual host refuses every request (gateway/edge/_hosts.py).
    token = new_token()
    settings = EnvoySettings(gateway_endpoints=["127.0.0.1:50051"], stack_token=token)
    hosts = envoy_yaml(render(settings))["static_resources"]["listeners"][0]
    hosts = hosts["filter_chains"][0]["filters"][0]["typed_config"]["route_config"]
    gateway = hosts["virtual_hosts"][0]
    assert gateway["request_headers_to_add"][-1] == {
        "header": {"key": STACK_TOKEN_HEADER, "value": token},
        "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
    }
    assert [
        r["route"]["cluster"]
        for v in hosts["virtual_hosts"][1:]
        for r in v["routes"]
        if "route" in r
    ] == []
    assert token not in repr(settings)


def test_health_watch_is_routed_as_a_stream(tmp_path: Path) -> None:
    # Open to anonymous callers and long-lived: on the catch-all route its updates were held
    # back by cost_header, and each stream held one of the unary calls' (HIGH) slots.
    config = _render(tmp_path, {})
    listener = config["static_resources"]["listeners"][0]
    routes = listener["filter_chains"][0]["filters"][0]["typed_config"]["route_config"][
        "virtual_hosts"
    ][0]["routes"]
    route = _route(routes, "/grpc.health.v1.Health/Watch")
    assert route["route"]["priority"] == "DEFAULT"
    assert route["route"]["timeout"] == "0s"
    # A status that does not change for an hour is no idle watch: Envoy reset it then (INTERNAL
    # to its client), at the moment the gateway ends it with a status at the default
    # limits.max_stream_duration (tests/integration/test_gateway_server.py).
    assert route["route"]["idle_timeout"] == "0s"
    assert "cost_header" not in route.get("typed_per_filter_config", {})
    assert _route(routes, "/grpc.health.v1.Health/Check")["route"]["priority"] == "HIGH"


def test_stream_replies_tell_proxies_not_to_buffer_or_cache_them(tmp_path: Path) -> None:
    # A reply's headers come from the route of its gRPC path, whichever path the request had.
    # nginx buffers a reply unless told `x-accel-buffering: no` (tests/e2e/test_behind_nginx.py).
    # The OpenAI methods that may stream add them to their JSON replies too; unary methods,
    # the hot /generate first, never do. Every reply gets a copy of the x-request-id Envoy
    # sets on every reply anyway, from the virtual host, for `cost_header` and
    # `grpc_failures` to read.
    config = _render(tmp_path, {})
    hcm = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
    routes = hcm["typed_config"]["route_config"]["virtual_hosts"][0]["routes"]
    overwrite = "OVERWRITE_IF_EXISTS_OR_ADD"
    stream_reply = [
        {"header": {"key": "x-accel-buffering", "value": "no"}, "append_action": overwrite},
        {"header": {"key": "cache-control", "value": "no-cache"}, "append_action": overwrite},
    ]
    request_id = {
        "header": {"key": "x-request-id", "value": "%REQ(X-REQUEST-ID)%"},
        "append_action": overwrite,
    }
    host = hcm["typed_config"]["route_config"]["virtual_hosts"][0]
    assert host["response_headers_to_add"] == [request_id]
    for service in (
        gateway_pb2.DESCRIPTOR.services_by_name["SaxGateway"],
        openai_pb2.DESCRIPTOR.services_by_name["OpenAIGateway"],
    ):
        for method in service.methods:
            route = _route(routes, f"/{service.full_name}/{method.name}")
            added = route.get("response_headers_to_add", [])
            assert added == (stream_reply if method.server_streaming else []), method.name


@pytest.mark.parametrize("heap", [0, 1 << 30])
def test_envoy_accepts_the_heap_watch_or_none(tmp_path: Path, heap: int) -> None:
    # 0 leaves the heap unwatched: no monitor, no actions, no buffer accounts.
    config = _render(tmp_path, {"limits": {"max_heap_bytes": heap}})
    overload = config["overload_manager"]
    monitors = [m["name"] for m in overload["resource_monitors"]]
    watched = ["envoy.resource_monitors.fixed_heap"] if heap else []
    assert monitors == ["envoy.resource_monitors.global_downstream_max_connections", *watched]
    assert bool(overload["actions"]) == bool(overload["buffer_factory_config"]) == bool(heap)
    result = subprocess.run(
        [str(envoy_binary()), "--mode", "validate", "-c", str(tmp_path / "envoy.yaml")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "OK" in result.stdout + result.stderr, result.stderr[-2000:]


@pytest.mark.parametrize(
    ("flag", "timeout"), [([], "300s"), (["--default-timeout", "600"], "610s")]
)
def test_envoy_lets_a_unary_call_run_past_the_gateways_longest_deadline(
    tmp_path: Path, flag: list[str], timeout: str
) -> None:
    # A gateway that allows calls 600 s (--default-timeout) had them cut at Envoy's 300 s
    # route timeout, with Envoy's bare 504 instead of its own DEADLINE_EXCEEDED.
    out = tmp_path / "out"
    assert main(["envoy-config", "--gateway", "gateway:50051", "--out", str(out), *flag]) == 0
    assert unary_route_timeouts(envoy_yaml((out / "envoy.yaml").read_text())) == {timeout}


@pytest.mark.parametrize(
    ("limit", "default_timeout", "bound"),
    [(None, 60, "605s"), (30, 60, "300s"), (0, 60, "605s"), (None, 900, "910s")],
)
def test_a_model_stream_that_moves_nothing_for_its_timeout_is_reset(
    tmp_path: Path, limit: int | None, default_timeout: float, bound: str
) -> None:
    # The gateway cannot end a stream whose client stopped reading: grpc sends its status
    # only after the replies it waits to send, so its deadline passes unseen. Envoy resets it
    # once it has moved nothing for the gateway's stream timeout (600 s, or
    # limits.max_stream_duration if shorter) and 5 s, and never before a unary call's bound
    # (an OpenAI call on these routes may be one); under the routes' hour, it held its
    # client's stream and call slots, its model's and a few MB until the limit's backstop
    # (3605 s). The watches keep theirs, and no route rewrites a caller's grpc-timeout (a
    # route's max_stream_duration does).
    data: dict[str, object] = {} if limit is None else {"limits": {"max_stream_duration": limit}}
    edge = parse_config(data, tmp_path).edge
    settings = EnvoySettings(
        gateway_endpoints=["127.0.0.1:50051"],
        edge=edge,
        route_timeout=route_timeout_over(default_timeout),
    )
    config = yaml.load(render(settings, secrets_dir=tmp_path / "secrets"), Loader=_Strict)
    hcm = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
    routes = hcm["typed_config"]["route_config"]["virtual_hosts"][0]["routes"]
    streams = ["/saxgateway.v1.SaxGateway/GenerateStream"] + [
        f"/saxgateway.v1.OpenAIGateway/{method.name}"
        for method in openai_pb2.DESCRIPTOR.services_by_name["OpenAIGateway"].methods
    ]
    for path in streams:
        assert _route(routes, path)["route"]["idle_timeout"] == bound, path
    for path in ["/saxgateway.v1.SaxGateway/WatchAddresses", "/grpc.health.v1.Health/Watch"]:
        assert _route(routes, path)["route"]["idle_timeout"] == "0s", path
    assert not any("max_stream_duration" in route.get("route", {}) for route in routes)


def test_envoy_starts_again_with_the_collector_ca_read_at_start(tmp_path: Path) -> None:
    """`--otlp-certificate` is checked when saxgw starts, and Envoy's config carries the CA
    itself: an Envoy the supervisor starts again (a crash, its watchdog) while the file is
    being replaced, or gone, starts. It named the file, and Envoy refused to start without
    it (`Invalid path`): the public port down in a restart loop for the sake of tracing."""
    roots = tmp_path / "collector-ca.pem"
    roots.write_bytes(CertificateAuthority.generate().pem())
    settings = EnvoySettings(
        gateway_endpoints=["127.0.0.1:1"],
        otlp_endpoint="https://collector.test:4317",
        otlp_certificate=str(roots),
    )
    (tmp_path / "envoy.yaml").write_text(render(settings))
    roots.unlink()
    result = subprocess.run(
        [str(envoy_binary()), "--mode", "validate", "-c", str(tmp_path / "envoy.yaml")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "OK" in result.stdout + result.stderr, result.stderr[-2000:]


def test_envoys_span_of_a_direct_call_is_named_after_generate() -> None:
    # A direct route rewrites the path to the model server's method, which named no method of
    # the API: the span of every direct call was named POST.
    operation = span_operation(descriptor_set())
    assert f"'{SAX_PATH}': 'saxgateway.v1.SaxGateway/Generate'" in operation
