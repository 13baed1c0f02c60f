"""Query parameters on the OpenAI-compatible paths are ignored, as OpenAI ignores those it does
not know: real clients send them (Azure-style `?api-version=`, the SDKs' `default_query` and
`extra_query`, a proxy's tracking parameters). None of the API's OpenAI endpoints takes one
(OpenAI's `GET /v1/models` has no pagination: `?limit=` and `?after=` change nothing there
either). Each was a 400 naming a protobuf type ("Could not find field "api-version" in the
type "saxgateway.v1.ListOpenAIModelsRequest""). The native routes still refuse them.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator

import httpx
import openai
import pytest

from gateway.launch.stack import Stack
from tests.e2e._bodies import envoy_error, openai_error
from tests.e2e._openai import ANSWER, CHATML, PLAIN, TEMPLATED

# What clients add: Azure's version, a proxy's tracking, OpenAI's list pagination elsewhere,
# a flag without a value, an encoded name and value.
JUNK = "api-version=2024-10-21&utm_source=proxy&limit=1&after=x&flag&%61pi%2Dkey=a%20b"
_API_VERSION = {"api-version": "2024-10-21"}


@pytest.fixture
def sent() -> list[httpx.Request]:
    """The requests the SDK sent, as it sent them."""
    return []


@pytest.fixture
def client(stack: Stack, openai_models: None, sent: list[httpx.Request]) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(
        base_url=stack.http_url + "/v1",
        api_key="x",
        max_retries=0,
        default_query=_API_VERSION,
        http_client=openai.DefaultHttpxClient(event_hooks={"request": [sent.append]}),
    ) as sdk:
        yield sdk


def test_the_sdks_default_and_extra_query_reach_every_endpoint(
    client: openai.OpenAI, sent: list[httpx.Request]
) -> None:
    extra = {"trace": "t-1", "limit": "1"}
    assert {CHATML, "oai", PLAIN} <= {m.id for m in client.models.list(extra_query=extra)}
    assert client.models.retrieve(CHATML, extra_query=extra).id == CHATML
    completion = client.completions.create(model=PLAIN, prompt="hi", extra_query=extra)
    assert [(c.text, c.finish_reason) for c in completion.choices] == [(ANSWER, "stop")]
    chat = client.chat.completions.create(
        model="oai", messages=[{"role": "user", "content": "hi"}], extra_query=extra
    )
    assert [(c.message.content, c.finish_reason) for c in chat.choices] == [(ANSWER, "stop")]
    stream = client.chat.completions.create(
        model="oai", messages=[{"role": "user", "content": "hi"}], stream=True, extra_query=extra
    )
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == ANSWER
    response = client.responses.create(model="oai", input="hi", extra_query=extra)
    assert (response.status, response.output_text) == ("completed", ANSWER)
    embedding = client.embeddings.create(model="oai", input="hello", extra_query=extra)
    assert len(embedding.data[0].embedding) == 8
    # Every call sent both, on each OpenAI path.
    paths = [r.url.raw_path.decode().partition("?")[0] for r in sent]
    assert paths == [
        "/v1/models",
        "/v1/models/%2Fsax%2Ftest%2Foai",
        "/v1/completions",
        "/v1/chat/completions",
        "/v1/chat/completions",
        "/v1/responses",
        "/v1/embeddings",
    ]
    for request in sent:
        assert dict(request.url.params) == {**_API_VERSION, "trace": "t-1", "limit": "1"}


def _without_query(http: httpx.Client, method: str, path: str, body: object) -> httpx.Response:
    return http.request(method, path, json=body)


def _with_query(http: httpx.Client, method: str, path: str, body: object) -> httpx.Response:
    # Raw, so that Envoy gets the query string as written.
    return http.request(method, f"{path}?{JUNK}", json=body)


@pytest.mark.usefixtures("openai_models")
@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/v1/models", None),
        ("GET", f"/v1/models{CHATML}", None),
        ("GET", "/v1/models/" + CHATML.replace("/", "%2F"), None),
        ("GET", "/v1/models/oai", None),
        ("POST", "/v1/embeddings", {"model": CHATML, "input": ["hello", "world"]}),
    ],
)
def test_a_query_string_changes_no_reply(
    http: httpx.Client, method: str, path: str, body: object
) -> None:
    plain = _without_query(http, method, path, body)
    assert plain.status_code == 200, plain.text
    queried = _with_query(http, method, path, body)
    # A model object's `created` is the time of the request, as vLLM's is: the two may be a
    # second apart.
    assert (queried.status_code, _timeless(queried.json())) == (200, _timeless(plain.json()))


def _timeless(body: object) -> object:
    """``body`` without its `created` times."""
    if isinstance(body, dict):
        return {k: _timeless(v) for k, v in body.items() if k != "created"}
    if isinstance(body, list):
        return [_timeless(v) for v in body]
    return body


@pytest.mark.usefixtures("openai_models")
def test_a_completion_with_a_query_string(http: httpx.Client) -> None:
    response = _with_query(http, "POST", "/v1/completions", {"model": PLAIN, "prompt": "hi"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert re.fullmatch(r"cmpl-[0-9a-f]{24}", body["id"]), body["id"]
    assert body == {
        "id": body["id"],
        "object": "text_completion",
        "created": body["created"],
        "model": PLAIN,
        "choices": [{"index": 0, "text": ANSWER, "logprobs": None, "finish_reason": "stop"}],
        "usage": {
            "prompt_tokens": None,
            "completion_tokens": None,
            "total_tokens": None,
            "basis": "characters",
            "prompt_characters": 2,
            "completion_characters": len(ANSWER),
            "total_characters": 2 + len(ANSWER),
        },
        "system_fingerprint": None,
    }


@pytest.mark.usefixtures("openai_models")
def test_a_streamed_chat_with_a_query_string(http: httpx.Client) -> None:
    # TEMPLATED echoes the prompt its template rendered.
    body = {"model": TEMPLATED, "messages": [{"role": "user", "content": "hi"}], "stream": True}
    with http.stream("POST", f"/v1/chat/completions?{JUNK}", json=body) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        events = [line[6:] for line in response.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == "[user] hi [assistant]"
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


@pytest.mark.usefixtures("openai_models")
def test_a_query_model_on_a_model_path_must_still_be_the_paths(http: httpx.Client) -> None:
    # The one name the API knows there: the path binds it, so a query may not name another
    # (tests/e2e/test_path_names.py); naming the path's own model changes nothing.
    same = http.get(f"/v1/models{CHATML}", params={"model": CHATML[1:], **_API_VERSION})
    assert (same.status_code, same.json()["id"]) == (200, CHATML)
    other = http.get(f"/v1/models{CHATML}", params={"model": PLAIN, **_API_VERSION})
    assert other.status_code == 400, other.text
    assert other.json()["error"]["param"] == "model"


@pytest.mark.usefixtures("openai_models")
@pytest.mark.parametrize(
    ("method", "path", "request_type"),
    [
        ("GET", "/v1/cells", "ListCellsRequest"),
        ("GET", "/v1/sax/test:listModels", "ListModelsRequest"),
        ("POST", "/v1/sax/test/lm2b:generate", "GenerateRequest"),
        ("GET", "/listcells", "ListCellsRequest"),
    ],
)
def test_only_the_openai_routes_ignore_an_unknown_query_parameter(
    http: httpx.Client, method: str, path: str, request_type: str
) -> None:
    # The native API's strictness stays (docs/api.md): the same query string is a 400 there.
    body = {"query": "q"} if method == "POST" else None
    response = http.request(method, f"{path}?api-version=2024-10-21", json=body)
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == "application/json"
    message = f'Could not find field "api-version" in the type "saxgateway.v1.{request_type}".'
    assert response.json() == envoy_error(response, 3, message)
    openai_path = "/v1/models/oai?api-version=2024-10-21"
    assert http.get(openai_path).status_code == 200, http.get(openai_path).text


@pytest.mark.usefixtures("openai_models")
@pytest.mark.parametrize("slash", ["/", "//"])
def test_a_trailing_slash_is_the_openai_path(http: httpx.Client, slash: str) -> None:
    # The transcoder binds /v1/completions/ as /v1/completions, but the OpenAI route matched
    # the path exactly: the catch-all served it, with native errors (and the internal
    # x-openai-error header) and a 400 for a query string OpenAI's face ignores.
    missing = "/sax/test/no-such-model"
    response = http.post(f"/v1/completions{slash}?{JUNK}", json={"model": missing, "prompt": "x"})
    message = f"model {missing} is not published: NotFound"
    error = {**openai_error(message, param="model"), "code": "model_not_found"}
    assert (response.status_code, response.json()) == (404, {"error": error})
    assert "x-openai-error" not in response.headers
    served = http.post(f"/v1/chat/completions{slash}?{JUNK}", json=_chat(stream=False))
    assert served.status_code == 200, served.text
    assert served.json()["choices"][0]["message"]["content"] == "[user] hi [assistant]"
    listed = http.get(f"/v1/models{slash}?{JUNK}")
    assert listed.status_code == 200, listed.text
    assert {CHATML, "oai", PLAIN} <= {m["id"] for m in listed.json()["data"]}


@pytest.mark.usefixtures("openai_models")
def test_a_grpc_web_call_to_an_openai_path_is_a_grpc_web_call(http: httpx.Client) -> None:
    # docs/api.md: a gRPC or grpc-web type makes a body a gRPC call, on every path. The
    # OpenAI route has grpc_web off, so its paths served a grpc-web request as JSON.
    frame = b"\x00\x00\x00\x00\x00"  # an empty message
    for kind, body in (
        ("application/grpc-web", frame),
        ("application/grpc-web-text+proto", base64.b64encode(frame)),
    ):
        response = http.post("/v1/chat/completions", content=body, headers={"content-type": kind})
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("application/grpc-web"), kind
        assert response.headers["grpc-status"] == "12", kind
    # With a parameter it is no grpc-web type (the grpc_web filter takes none): JSON.
    typed = {"content-type": "application/grpc-web; charset=utf-8"}
    plain = http.post(
        "/v1/chat/completions", content=json.dumps(_chat(stream=False)), headers=typed
    )
    assert plain.status_code == 200, plain.text
    assert plain.json()["choices"][0]["message"]["content"] == "[user] hi [assistant]"


def _chat(*, stream: bool) -> dict[str, object]:
    return {"model": TEMPLATED, "messages": [{"role": "user", "content": "hi"}], "stream": stream}
