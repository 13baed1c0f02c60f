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

The routes are fuzzed in three groups, one module each (test_openai.py, test_resources.py,
test_seed_and_open.py): as one test, every route ran inside a single item (92 s), and as three
tests of one module, in one of the suite's processes (`--dist loadfile`) for 135 s, whatever
point of the run it came up at. As modules, they go to three processes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

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
OPENAI_REGEX = "^/v1/(models|completions|chat/|responses|embeddings)"
RESOURCE_REGEX = "^/v1/(sax/|cells)"

#: The document, from the `api_schema` fixture (conftest.py).
schema = schemathesis.pytest.from_fixture("api_schema")

FUZZED = settings(
    max_examples=EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)


def check(case: OpenApiCase, stack: Stack, session: requests.Session) -> None:
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
