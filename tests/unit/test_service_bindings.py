"""gateway.service._bindings: a call that came by a resource path names what its path names."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import pytest
from google.api import annotations_pb2, http_pb2
from google.protobuf.descriptor import ServiceDescriptor
from google.protobuf.duration_pb2 import Duration
from saxgateway.v1 import gateway_pb2, openai_pb2

from gateway.client import InvalidArgumentError
from gateway.service._bindings import ORIGINAL_PATH, Check, as_bound, path_check

SERVICES: Sequence[ServiceDescriptor] = (
    gateway_pb2.DESCRIPTOR.services_by_name["SaxGateway"],
    openai_pb2.DESCRIPTOR.services_by_name["OpenAIGateway"],
)
# A value for each kind of path variable the API has.
SAMPLES = {"sax/*/*": "sax/c/m", "sax/*": "sax/c", "sax/**": "sax/c/m", "**": "a/b"}


@dataclass
class Context:
    metadata: tuple[tuple[str, str], ...]

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self.metadata

    def peer(self) -> str:
        return "ipv4:127.0.0.1:1"


def _bound_paths() -> list[tuple[str, str, str, str]]:
    """(method, path, field, value) for every HTTP binding that takes a field from its path."""
    found = []
    for service in SERVICES:
        for method in service.methods:
            rule: http_pb2.HttpRule = method.GetOptions().Extensions[annotations_pb2.http]  # type: ignore[index]
            for binding in (rule, *rule.additional_bindings):
                template = getattr(binding, binding.WhichOneof("pattern") or "get", "")
                variable = re.search(r"\{(\w+)=([^}]*)\}", template)
                if variable:
                    value = SAMPLES[variable.group(2)]
                    path = template.replace(variable.group(0), value)
                    name = f"/{service.full_name}/{method.name}"
                    found.append((name, path, variable.group(1), value))
    return found


def test_every_binding_that_takes_a_field_from_its_path_is_checked() -> None:
    bound = _bound_paths()
    assert len(bound) == 31  # every /v1/ resource route of both services
    for method, path, field, value in bound:
        check = path_check(method)
        assert check is not None, method
        request = _request(field, value)
        context = Context(((ORIGINAL_PATH, path + "?x=1"),))
        check(request, context)  # the path's own value passes
        with pytest.raises(InvalidArgumentError) as refused:
            check(_request(field, "/sax/other/x"), context)
        assert refused.value.field_violations[0][0] == field


def test_methods_whose_paths_bind_nothing_have_no_check_but_of_their_query_string() -> None:
    assert path_check("/saxgateway.v1.OpenAIGateway/CreateCompletion") is None
    check = path_check("/saxgateway.v1.SaxGateway/ListCells")  # its query string's
    assert check is not None
    check(gateway_pb2.ListCellsRequest(), Context(((ORIGINAL_PATH, "/v1/cells"),)))


def _request(field: str, value: str) -> object:
    return type("Request", (), {field: value})()


GENERATE = "/saxgateway.v1.SaxGateway/Generate"


@pytest.mark.parametrize(
    "metadata",
    [
        (),  # a gRPC call, not transcoded
        ((ORIGINAL_PATH, "/generate"),),  # the seed's path names no model
        (("x-request-id", "r"), (ORIGINAL_PATH, "/v1/sax/test/a:generate?query=x")),
    ],
)
def test_what_names_no_other_model_passes(metadata: tuple[tuple[str, str], ...]) -> None:
    check = path_check(GENERATE)
    assert check is not None
    check(gateway_pb2.GenerateRequest(model="/sax/test/a", query="x"), Context(metadata))
    # as the path binds it
    check(gateway_pb2.GenerateRequest(model="sax/test/a", query="x"), Context(metadata))


def test_another_model_is_refused_naming_both() -> None:
    check = path_check(GENERATE)
    assert check is not None
    context = Context(((ORIGINAL_PATH, "/v1/sax/test/a:generate?%6dodel=/sax/test/b"),))
    with pytest.raises(InvalidArgumentError) as refused:
        check(_request("model", "/sax/test/b"), context)
    description = (
        "the URL path names '/sax/test/a', the query string or body '/sax/test/b': "
        "a /v1/ resource path alone names what a call acts on"
    )
    assert refused.value.field_violations == (("model", description),)


def test_the_openai_model_is_read_as_the_transcoder_binds_it() -> None:
    check = path_check("/saxgateway.v1.OpenAIGateway/GetOpenAIModel")
    assert check is not None
    context = Context(((ORIGINAL_PATH, "/v1/models/%2Fsax%2Ftest%2Fa"),))  # the SDKs' form
    check(_request("model", "/sax/test/a"), context)
    for other in ("/sax/test/b", "%2Fsax%2Ftest%2Fa", "sax/test/a"):
        with pytest.raises(InvalidArgumentError):
            check(_request("model", other), context)


def test_paths_the_transcoder_binds_oddly_are_checked() -> None:
    check = path_check("/saxgateway.v1.SaxGateway/GetStats")
    assert check is not None
    path = "/v1/sax:stats"  # `sax/**` with no segment binds "sax"
    check(_request("name", "/sax"), Context(((ORIGINAL_PATH, path),)))
    with pytest.raises(InvalidArgumentError):
        check(_request("name", "/sax/test/b"), Context(((ORIGINAL_PATH, path),)))


@pytest.mark.parametrize(
    ("path", "bound", "named"),
    [
        ("/v1/sax/:stats", "/sax", "/sax/"),
        ("/v1/sax/test/:setAcl", "/sax/test", "/sax/test/"),
        ("/v1/sax/test/a/:generate", "/sax/test/a", "/sax/test/a/"),
    ],
)
def test_a_path_with_an_empty_segment_before_its_verb_names_nothing(
    path: str, bound: str, named: str
) -> None:
    # The transcoder binds what comes before the slash: the cell, for a model's path whose
    # name was left out (`/v1/sax/{cell}/{model}:setAcl` with an empty model set the cell's
    # ACL).
    field = "model" if path.endswith(":generate") else "name"
    method = "Generate" if field == "model" else "SetAcl" if "Acl" in path else "GetStats"
    check = path_check(f"/saxgateway.v1.SaxGateway/{method}")
    assert check is not None
    with pytest.raises(InvalidArgumentError) as refused:
        check(_request(field, bound), Context(((ORIGINAL_PATH, path),)))
    description = (
        f"the URL path names {named!r}, whose last segment is empty: a /v1/ resource path "
        "names a cell as /v1/sax/CELL and a model as /v1/sax/CELL/MODEL"
    )
    assert refused.value.field_violations == ((field, description),)


def test_as_bound_decodes_once() -> None:
    # Envoy's transcoder (url_unescape_spec ALL_CHARACTERS).
    assert as_bound("sax/test/a") == "sax/test/a"
    assert as_bound("a%2Fb%20c%2525%3a%C3%A9") == "a/b c%25:é"


def _check_of(request: object) -> Check:
    """The check of the SaxGateway method that takes ``request``."""
    method = {
        "GenerateRequest": GENERATE,
        "ScoreRequest": "/saxgateway.v1.SaxGateway/Score",
        "UpdateModelRequest": "/saxgateway.v1.SaxGateway/UpdateModel",
    }[type(request).__name__]
    check = path_check(method)
    assert check is not None
    return check


@pytest.mark.parametrize(
    ("query", "request_", "field", "description"),
    [
        (
            "?model=/sax/test/a",
            gateway_pb2.GenerateRequest(model="/sax/test/b", query="x"),
            "model",
            "the query string gives '/sax/test/a', the body '/sax/test/b': give it in one of them",
        ),
        (
            "?%6dodel=a+b",  # the name percent-encoded, "+" a space
            gateway_pb2.GenerateRequest(model="/sax/test/b", query="x"),
            "model",
            "the query string gives 'a b', the body '/sax/test/b': give it in one of them",
        ),
        (
            "?query=x&query=y",
            gateway_pb2.GenerateRequest(model="/sax/test/a", query="y"),
            "query",
            "the query string gives it twice ('x', 'y'): give it once",
        ),
        (
            "?timeout=1s",
            gateway_pb2.GenerateRequest(
                model="/sax/test/a", query="x", timeout=Duration(seconds=2)
            ),
            "timeout",
            "the query string gives '1s', the body '2s': give it in one of them",
        ),
        (
            "?suffix=x",
            gateway_pb2.ScoreRequest(model="/sax/test/a", suffix=["y", "x"]),
            "suffix",
            "given in both the query string and the body: give it in one of them",
        ),
        (
            "?clearOverrides=1",  # the JSON name
            gateway_pb2.UpdateModelRequest(model="/sax/test/a"),
            "clear_overrides",
            "the query string gives '1', the body 'false': give it in one of them",
        ),
    ],
)
def test_a_query_string_the_body_contradicts_is_refused(
    query: str, request_: object, field: str, description: str
) -> None:
    check = _check_of(request_)
    with pytest.raises(InvalidArgumentError) as refused:
        check(request_, Context(((ORIGINAL_PATH, "/x" + query),)))
    assert refused.value.field_violations == ((field, description),)


@pytest.mark.parametrize(
    ("query", "request_"),
    [
        ("?model=sax/test/a", gateway_pb2.GenerateRequest(model="/sax/test/a", query="x")),
        ("?query=x&query=x", gateway_pb2.GenerateRequest(model="/sax/test/a", query="x")),
        ("?suffix=x&suffix=y", gateway_pb2.ScoreRequest(model="/sax/test/a", suffix=["x", "y"])),
        ("?replicas=2", gateway_pb2.UpdateModelRequest(model="/sax/test/a", replicas=2)),
        ("?timeout=2.000s", gateway_pb2.GenerateRequest(query="x", timeout=Duration(seconds=2))),
        ("?timeout.seconds=9", gateway_pb2.GenerateRequest(query="x")),  # nested: Envoy's
    ],
)
def test_a_query_string_the_body_agrees_with_passes(query: str, request_: object) -> None:
    check = _check_of(request_)
    check(request_, Context(((ORIGINAL_PATH, "/x" + query),)))
