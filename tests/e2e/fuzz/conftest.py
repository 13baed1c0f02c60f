from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests
import schemathesis

from gateway.launch.stack import Stack

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
