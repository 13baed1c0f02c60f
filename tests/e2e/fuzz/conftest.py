from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests
import schemathesis

from gateway.launch.stack import Stack
from tests._stacks import healthy_stack
from tests.e2e.conftest import stack_settings

SHARED_HEADER = {"$ref": "#/components/parameters/grpc-timeout"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A stack of the module's own, as the session's: fuzzing sets ACLs (the cell's too),
    publishes, updates and unpublishes, and what it leaves must not reach the tests that share
    the session's stack. It did: the fuzz modules go out first (the Makefile), and after
    test_resources.py, test_cli.py read the cell's ACL as one of its requests had set it."""
    with healthy_stack(stack_settings(tmp_path_factory.mktemp("fuzz")), "fuzz stack") as running:
        yield running


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
