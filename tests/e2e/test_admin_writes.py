"""Writes of what the cell stores (models, ACLs) through the real Envoy and the stack's two
gateway processes: racing writes keep every acknowledged change, and bad input is a 400
naming its field that leaves the stored state as it was (read back from state.proto)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest

from gateway.common.names import ACL_METHODS
from gateway.launch.stack import Stack
from tests.e2e._published import (
    BAD_REQUEST,
    TEST_LM,
    publish_body,
    request_info,
    stored_model,
)

MODEL = "/sax/test/admin-writes"


@pytest.fixture
def model(http: httpx.Client) -> Iterator[str]:
    """Published on no replica: its definition is stored, nothing needs to load."""
    response = http.post("/publish", json=publish_body(MODEL, TEST_LM, 0, text="one"))
    assert response.status_code == 200, response.text
    yield MODEL
    http.post("/unpublish", json={"model": MODEL})


async def _both(url: str, *requests: tuple[str, dict[str, object]]) -> list[httpx.Response]:
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        return await asyncio.gather(*(http.post(path, json=body) for path, body in requests))


def test_setacl_racing_an_update_keeps_both_changes(stack: Stack, model: str) -> None:
    # Each gateway reads the model, changes its field, and writes the whole model back:
    # without a check of what was read, the later write undid the other's change. A
    # method's ACL is one more such field.
    for i in range(4):
        acl, method_acl, update = asyncio.run(
            _both(
                stack.http_url,
                ("/setacl", {"name": model, "acl": f"acl/team{i}"}),
                ("/setacl", {"name": model, "method": "lm.score", "acl": f"acl/readers{i}"}),
                (f"/v1{model}:update", {"replicas": i % 2}),
            )
        )
        assert acl.status_code == 200, acl.text
        assert acl.json() == {"name": model, "acl": f"acl/team{i}", "method": ""}
        assert method_acl.status_code == 200, method_acl.text
        assert method_acl.json() == {"name": model, "acl": f"acl/readers{i}", "method": "lm.score"}
        assert update.status_code == 200, update.text
        assert update.json() == {
            "model": model,
            "path": TEST_LM,
            "checkpoint": "None",
            "replicas": i % 2,
            "overrides": {"text": "one"},
        }
        stored = stored_model(stack, model)
        assert stored is not None
        assert (stored.admin_acl, dict(stored.acls.items), stored.requested_num_replicas) == (
            f"acl/team{i}",
            {"lm.score": f"acl/readers{i}"},
            i % 2,
        )


def test_a_model_path_change_is_refused_and_changes_nothing(stack: Stack, model: str) -> None:
    # Answered FAILED_PRECONDITION (the request is well formed; the cell does not allow it)
    # with a message that ended in "InvalidArgument", and the proto said INVALID_ARGUMENT.
    before = stored_model(stack, model)
    with httpx.Client(base_url=stack.http_url, timeout=30) as http:
        response = http.post(f"/v1{model}:update", json={"model_path": TEST_LM + "x"})
    assert response.status_code == 400, response.text
    assert response.json() == {
        "code": 9,
        "message": "invalid model update: model path can't be changed: FailedPrecondition",
        "details": [request_info(response)],
    }
    assert stored_model(stack, model) == before


def test_the_same_model_published_twice_at_once(stack: Stack, http: httpx.Client) -> None:
    name = "/sax/test/admin-writes-twice"
    bodies = [publish_body(name, TEST_LM, 0, text=text) for text in ("one", "two")]
    try:
        responses = asyncio.run(_both(stack.http_url, *(("/publish", b) for b in bodies)))
        assert sorted(r.status_code for r in responses) == [200, 409]
        won, lost = sorted(responses, key=lambda r: r.status_code)
        assert lost.json() == {
            "code": 6,
            "message": f"model {name} already exists: AlreadyExists",
            "details": [request_info(lost)],
        }
        text = bodies[responses.index(won)]["overrides"]
        stored = stored_model(stack, name)
        assert stored is not None
        assert (stored.model_path, stored.checkpoint_path, dict(stored.overrides)) == (
            TEST_LM,
            "None",
            text,
        )
    finally:
        http.post("/unpublish", json={"model": name})


@pytest.mark.parametrize(
    ("path", "body", "field", "description"),
    [
        (
            "/publish",
            {"model_path": "../../etc/passwd"},
            "model_path",
            "model path '../../etc/passwd' must match '^[a-zA-Z]+[a-zA-Z0-9_.-]*$'",
        ),
        (
            "/publish",
            {"checkpoint": "/ckpt/../../etc/passwd"},
            "checkpoint",
            "'/ckpt/../../etc/passwd' must not have a '..' segment",
        ),
        (
            "/v1/sax/test/admin-writes:update",
            {"checkpoint": "../x"},
            "checkpoint",
            "'../x' must not have a '..' segment",
        ),
        (
            "/v1/sax/test/admin-writes:update",
            {"overrides": {"bad key\n": "1"}},
            "overrides['bad key\\n']",
            "the key must be a model config attribute name (letters, digits and _, not "
            "starting with a digit)",
        ),
        (
            "/publish",
            {"overrides": {"": "1"}},
            "overrides['']",
            "the key must be a model config attribute name (letters, digits and _, not "
            "starting with a digit)",
        ),
        (
            "/setacl",
            {"name": MODEL, "acl": "acl/a\nb"},
            "acl",
            "'acl/a\\nb' must be a group (acl/NAME) or a client ID, without spaces",
        ),
        (
            "/setacl",
            {"name": MODEL, "method": "lm.generat", "acl": "acl/team"},
            "method",
            "'lm.generat' is not a valid method name for an ACL: one of "
            + ", ".join(sorted(ACL_METHODS)),
        ),
        (
            f"/v1{MODEL}:setAcl",
            {"method": "Generate", "acl": "acl/team"},
            "method",
            "'Generate' is not a valid method name for an ACL: one of "
            + ", ".join(sorted(ACL_METHODS)),
        ),
        (
            # A cell has no data methods (and its admin ACL, "" here, stays as it was).
            "/setacl",
            {"name": "/sax/test", "method": "lm.generate", "acl": ""},
            "method",
            "/sax/test is a cell: only a model's data methods have ACLs",
        ),
    ],
)
def test_bad_writes_are_400s_naming_the_field_and_store_nothing(
    stack: Stack,
    http: httpx.Client,
    model: str,
    path: str,
    body: dict[str, object],
    field: str,
    description: str,
) -> None:
    before = stored_model(stack, model)
    if path == "/publish":
        body = {**publish_body("/sax/test/admin-writes-bad", TEST_LM, 0), **body}
    response = http.post(path, json=body)
    assert response.status_code == 400, response.text
    assert response.json() == {
        "code": 3,
        "message": f"{field}: {description}",
        "details": [
            {
                "@type": BAD_REQUEST,
                "field_violations": [{"field": field, "description": description, "reason": ""}],
            },
            request_info(response),
        ],
    }
    assert stored_model(stack, model) == before
    assert stored_model(stack, "/sax/test/admin-writes-bad") is None
