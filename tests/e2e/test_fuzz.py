"""Schema-driven fuzzing: schemathesis sends requests generated from the OpenAPI document that
Envoy serves to every route, through Envoy, and checks every response:

- no unmapped 5xx: 501 UNIMPLEMENTED, 503 UNAVAILABLE and 504 DEADLINE_EXCEEDED are gRPC codes
  Envoy maps; a 500 (UNKNOWN/INTERNAL) or 502 means a crash or a broken upstream;
- every JSON error is a status: an integer `code` and a string `message`; on the OpenAI paths,
  OpenAI's envelope `{"error": {message, type, param, code}}`, Envoy's own replies included.

Envoy's own rejections of malformed input (bad JSON, wrong types, unknown paths or methods) are
JSON too (`local_reply_config`). Data is both valid and invalid for the schema (schemathesis'
positive and negative modes). Deterministic (derandomized) and bounded:
~50 routes x EXAMPLES, plus schemathesis' coverage cases (60 examples per route, about 3,000
requests in all, took ~170 s, a quarter of `make test`; 40 take ~120 s, every route and both
modes still covered).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings

from gateway.launch.stack import Stack

if TYPE_CHECKING:  # an alias schemathesis defines for type checkers only
    from schemathesis.specs.openapi.schemas import OpenApiCase

EXAMPLES = 40
MAPPED_5XX = {501, 503, 504}
OPENAI_PATHS = (
    "/v1/models",
    "/v1/completions",
    "/v1/chat/",
    "/v1/responses",
    "/v1/embeddings",
)

schema = schemathesis.pytest.from_fixture("api_schema")


SHARED_HEADER = {"$ref": "#/components/parameters/grpc-timeout"}


@pytest.fixture
def api_schema(stack: Stack) -> schemathesis.BaseSchema:
    # The document Envoy serves, less the grpc-timeout header every route shares: fuzzing it
    # on every route cost a third more time (160 -> 215 s) and only ever reached Envoy's one
    # check of its form, which tests/e2e/test_request_guards.py covers.
    doc = requests.get(f"{stack.http_url}/openapi.json", timeout=30).json()
    # Less the credentials too: this stack asks for none, and tests/e2e/security tests them.
    # Fuzzed, they bring headers of any name, which are no route's inputs, this test's
    # subject; names gRPC metadata cannot carry (`+`, `|`), which were a 500 INTERNAL, are
    # tests/e2e/test_request_guards.py's.
    doc.pop("security")
    for ops in doc["paths"].values():
        for op in ops.values():
            if SHARED_HEADER in op.get("parameters", []):
                op["parameters"].remove(SHARED_HEADER)
    return schemathesis.openapi.from_dict(doc)


@pytest.fixture(scope="module")
def session() -> Iterator[requests.Session]:
    with requests.Session() as s:
        yield s


FUZZED = settings(
    max_examples=EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
#: The routes in three groups, one test each: as one test, every route ran inside a single
#: item (92 s), which one of the suite's processes had to run alone, at whatever point of the
#: run it came up.
OPENAI_REGEX = "^/v1/(models|completions|chat/|responses|embeddings)"
RESOURCE_REGEX = "^/v1/(sax/|cells)"


def _check(case: OpenApiCase, stack: Stack, session: requests.Session) -> None:
    response = case.call(base_url=stack.http_url, session=session, timeout=30)
    status = response.status_code
    content_type = response.headers.get("content-type", [""])[0]
    where = f"{case.as_curl_command()}\n-> {status} {content_type} {response.text[:500]}"
    assert status < 500 or status in MAPPED_5XX, where
    if status >= 400 and case.path.startswith(OPENAI_PATHS):
        # The gateway's errors and Envoy's own replies alike: what the OpenAI SDKs read.
        assert content_type == "application/json", where
        body = response.json()
        assert set(body) == {"error"}, where
        assert set(body["error"]) == {"message", "type", "param", "code"}, where
        assert isinstance(body["error"]["type"], str), where
        assert isinstance(body["error"]["message"], str), where
    elif status >= 400 and content_type.startswith("application/json"):
        body = response.json()
        assert isinstance(body.get("code"), int), where
        assert isinstance(body.get("message"), str), where


# Each route sends up to ~EXAMPLES requests (some render images on CPU): on a loaded 2-core
# machine that outgrows the suite's 120 s per-test hang guard, which is not what this tests.
@pytest.mark.timeout(600)
@schema.include(path_regex=OPENAI_REGEX).parametrize()
@FUZZED
def test_fuzz_openai(case: OpenApiCase, stack: Stack, session: requests.Session) -> None:
    _check(case, stack, session)


@pytest.mark.timeout(600)
@schema.include(path_regex=RESOURCE_REGEX).parametrize()
@FUZZED
def test_fuzz_resource_paths(case: OpenApiCase, stack: Stack, session: requests.Session) -> None:
    _check(case, stack, session)


@pytest.mark.timeout(600)
@schema.exclude(path_regex=OPENAI_REGEX).exclude(path_regex=RESOURCE_REGEX).parametrize()
@FUZZED
def test_fuzz_seed_and_open_paths(
    case: OpenApiCase, stack: Stack, session: requests.Session
) -> None:
    _check(case, stack, session)
