"""The API's routes as Envoy matches them (gateway/launch/_methods.py), for its 405s."""

from __future__ import annotations

import re

import pytest
from google.api import annotations_pb2, http_pb2
from google.protobuf import descriptor_pb2

from gateway.launch._methods import Route, add_head_bindings, path_regex, routes
from gateway.launch.envoy import descriptor_set


@pytest.mark.parametrize(
    ("template", "matches", "does_not_match"),
    [
        ("/generate", ["/generate", "/generate?x=1"], ["/generates", "/generate/x", "/v1/x"]),
        (
            "/v1/{model=sax/*/*}:generate",
            ["/v1/sax/test/lm:generate", "/v1/sax/test/lm:generate?a=b"],
            ["/v1/sax/test/lm", "/v1/sax/a/b/c:generate", "/v1/sax/test/lm:generates"],
        ),
        (
            "/v1/{model=sax/*/*}",
            ["/v1/sax/test/lm"],
            ["/v1/sax/test/lm:generate", "/v1/sax/test", "/v1/sax/test/lm/x"],
        ),
        (
            "/v1/{name=sax/**}:stats",
            ["/v1/sax/test:stats", "/v1/sax/test/lm:stats"],
            ["/v1/sax:stats", "/v1/sax/test/lm:generate"],
        ),
        ("/v1/models/{model=**}", ["/v1/models/gpt", "/v1/models/sax/test/lm"], ["/v1/models"]),
    ],
)
def test_path_regex_matches_the_paths_of_its_template_only(
    template: str, matches: list[str], does_not_match: list[str]
) -> None:
    regex = path_regex(template)
    for path in matches:
        assert re.fullmatch(regex, path), (regex, path)
    for path in does_not_match:
        assert not re.fullmatch(regex, path), (regex, path)


def test_routes_come_from_every_http_rule_of_the_descriptor_set() -> None:
    by_regex = {r.regex: r for r in routes(descriptor_set())}
    assert by_regex[path_regex("/update")] == Route(
        path_regex("/update"), frozenset({"POST", "PUT"}), openai=False
    )
    assert by_regex[path_regex("/listcell")].verbs == {"GET", "HEAD"}  # add_head_bindings
    assert by_regex[path_regex("/v1/{model=sax/*/*}:generate")].verbs == {"POST"}
    assert by_regex[path_regex("/v1/chat/completions")].openai
    assert not by_regex[path_regex("/v1/cells")].openai


def test_every_get_route_the_transcoder_serves_takes_head() -> None:
    # HTTP wants HEAD wherever GET is (RFC 9110 9.3.2): /, /listcells and /v1/models were 405s.
    served = routes(descriptor_set())
    assert [r.regex for r in served if "GET" in r.verbs and "HEAD" not in r.verbs] == []
    assert [r.regex for r in served if "HEAD" in r.verbs and "GET" not in r.verbs] == []
    assert {path_regex(p) for p in ("/", "/listcells", "/v1/models")} <= {
        r.regex for r in served if "HEAD" in r.verbs
    }


def _method(rule: http_pb2.HttpRule) -> descriptor_pb2.MethodDescriptorProto:
    method = descriptor_pb2.MethodDescriptorProto(name="M")
    method.options.Extensions[annotations_pb2.http].CopyFrom(rule)  # type: ignore[index]
    return method


def test_add_head_bindings_twins_each_get_binding_once() -> None:
    rule = http_pb2.HttpRule(
        get="/a",
        additional_bindings=[
            http_pb2.HttpRule(get="/v1/{x=*}:a", response_body="items"),
            http_pb2.HttpRule(post="/a", body="*"),
        ],
    )
    service = descriptor_pb2.ServiceDescriptorProto(name="S", method=[_method(rule)])
    files = descriptor_pb2.FileDescriptorSet(
        file=[descriptor_pb2.FileDescriptorProto(package="p", service=[service])]
    )
    add_head_bindings(files)
    add_head_bindings(files)  # scripts/gen may run on a set that has them: none twice
    options = files.file[0].service[0].method[0].options
    result: http_pb2.HttpRule = options.Extensions[annotations_pb2.http]  # type: ignore[index]
    heads = [b for b in result.additional_bindings if b.WhichOneof("pattern") == "custom"]
    assert [(b.custom.kind, b.custom.path, b.response_body) for b in heads] == [
        ("HEAD", "/a", ""),
        ("HEAD", "/v1/{x=*}:a", "items"),
    ]
