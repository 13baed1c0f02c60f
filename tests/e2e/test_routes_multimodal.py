"""Multimodal routes through the real Envoy: JSON items in, the stand-in's answers out.

The expected bodies are computed by `TestMultimodal`'s own code on the same items."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Mapping

import httpx
import pytest

from gateway.cell.models.base import ExtraInputs
from gateway.cell.models.multimodal import MULTIMODAL_PATH, TestMultimodal
from gateway.launch.stack import Stack
from tests.e2e._bodies import gateway_error
from tests.e2e._media_calls import MediaCall, calls_of, check_over_grpc_web
from tests.e2e._published import IMAGE, b64, published, stored_model

MODEL = "/sax/test/routes-mm"
NONE = ExtraInputs()
ITEMS = [{"text": "what is this?"}, {"image_bytes": b64(IMAGE)}]
SAX_ITEMS: list[tuple[str, str | bytes]] = [("text", "what is this?"), ("image_bytes", IMAGE)]
MODEL_STAND_IN = TestMultimodal()


@pytest.fixture(scope="module")
def model(stack: Stack) -> Iterator[str]:
    with published(stack, MODEL, MULTIMODAL_PATH) as name:
        yield name


def _post(http: httpx.Client, verb: str, body: Mapping[str, object]) -> httpx.Response:
    return http.post(f"/v1{MODEL}:{verb}", json=body)


def test_multimodal_generate(http: httpx.Client, model: str) -> None:
    [(items, score)] = asyncio.run(MODEL_STAND_IN.mm_generate(SAX_ITEMS, NONE))
    response = _post(http, "multimodalGenerate", {"items": ITEMS})
    assert response.status_code == 200, response.text
    assert response.json() == {
        "samples": [{"items": [{kind: value} for kind, value in items], "score": score}]
    }


def test_multimodal_score(http: httpx.Client, model: str) -> None:
    scores = asyncio.run(MODEL_STAND_IN.mm_score(SAX_ITEMS[:1], SAX_ITEMS[1:], NONE))
    body = {"prefix_items": ITEMS[:1], "suffix_items": ITEMS[1:]}
    response = _post(http, "multimodalScore", body)
    assert response.status_code == 200, response.text
    assert response.json() == {"scores": scores}


def test_multimodal_embed(http: httpx.Client, model: str) -> None:
    embedding = asyncio.run(MODEL_STAND_IN.mm_embed(SAX_ITEMS, NONE))
    response = _post(http, "multimodalEmbed", {"items": ITEMS})
    assert response.status_code == 200, response.text
    assert response.json() == {"embedding": embedding}


@pytest.mark.parametrize("call", calls_of(MULTIMODAL_PATH), ids=lambda c: c.rpc)
def test_over_grpc_web(http: httpx.Client, model: str, call: MediaCall) -> None:
    check_over_grpc_web(http, call, model, text=False)


def test_an_empty_item_is_a_400_naming_it(http: httpx.Client, model: str) -> None:
    response = _post(http, "multimodalGenerate", {"items": [{"text": "hi"}, {}]})
    assert response.status_code == 400, response.text
    assert "items[1]" in response.text


@pytest.mark.parametrize(
    ("verb", "field"),
    [
        ("multimodalGenerate", "items"),
        ("multimodalScore", "suffix_items"),
        ("multimodalScore", "prefix_items"),
        ("multimodalEmbed", "items"),
    ],
)
@pytest.mark.parametrize("kind", ["image_bytes", "video"])
def test_an_image_or_video_with_no_bytes_is_a_400_naming_it(
    http: httpx.Client, model: str, verb: str, field: str, kind: str
) -> None:
    # Was sent on to the model ("saw image_bytes(0)"), where Classify, EmbedImage, Detect,
    # ImageToText and Recognize refuse an empty image or audio: an unread file reads as "".
    body: dict[str, object] = {"suffix_items": ITEMS} if verb == "multimodalScore" else {}
    body[field] = [{"text": "hi"}, {kind: ""}]
    response = _post(http, verb, body)
    assert response.status_code == 400, response.text
    name, description = f"{field}[1].{kind}", "required: base64-encoded bytes in JSON"
    bad_request = {
        "@type": "type.googleapis.com/google.rpc.BadRequest",
        "field_violations": [{"field": name, "description": description, "reason": ""}],
    }
    expected = gateway_error(response, 3, f"{name}: {description}")
    expected["details"] = [bad_request, *expected["details"]]  # type: ignore[misc]
    assert response.json() == expected


LIMIT = 10 * 1024 * 1024  # GatewaySettings.max_payload_bytes, as Classify's image_bytes has


@pytest.mark.parametrize(
    ("items", "name", "description"),
    [
        (
            [{"text": "hi"}] * 1025,
            "items",
            "1025 items is over the limit of 1024",
        ),
        (
            [{"text": "hi"}, {"image_bytes": b64(b"x" * (LIMIT + 1))}],
            "items[1].image_bytes",
            f"{LIMIT + 1} bytes is over the limit of {LIMIT} bytes",
        ),
        (
            [{"video": b64(b"x" * (LIMIT + 1))}],
            "items[0].video",
            f"{LIMIT + 1} bytes is over the limit of {LIMIT} bytes",
        ),
        (
            [{"text": "x" * (4 * 1024 * 1024 + 1)}],
            "items[0].text",
            f"{4 * 1024 * 1024 + 1} characters is over the limit of {4 * 1024 * 1024}",
        ),
    ],
)
def test_items_over_the_limits_of_the_other_methods_are_a_400_naming_them(
    http: httpx.Client, model: str, items: list[dict[str, str]], name: str, description: str
) -> None:
    # Were all sent on: no count, image or text bound, where Classify refuses an image over
    # max_payload_bytes, Score more than 1024 suffixes, and every method a longer text.
    response = _post(http, "multimodalEmbed", {"items": items})
    assert response.status_code == 400, response.text[:300]
    assert response.json()["message"] == f"{name}: {description}"
    assert response.json()["details"][0]["field_violations"][0]["field"] == name


def test_an_acl_on_mm_score_limits_it(stack: Stack, http: httpx.Client) -> None:
    # SetAcl refused mm.score and mm.embed (400 "not a valid method name for an ACL"), as
    # upstream's admin validator does, though the gateway checked ACLs under those names:
    # nothing could limit them. This stack has no credentials: the caller is anonymous.
    with published(stack, "/sax/test/routes-mm-acl", MULTIMODAL_PATH) as name:
        for method in ("mm.score", "mm.embed"):
            done = http.post(f"/v1{name}:setAcl", json={"method": method, "acl": "acl/team"})
            assert done.status_code == 200, done.text
            assert done.json() == {"name": name, "acl": "acl/team", "method": method}
        stored = stored_model(stack, name)
        assert stored is not None
        assert dict(stored.acls.items) == {"mm.score": "acl/team", "mm.embed": "acl/team"}
        body = {"prefix_items": ITEMS[:1], "suffix_items": ITEMS[1:]}
        refused = http.post(f"/v1{name}:multimodalScore", json=body)
        assert refused.status_code == 403
        assert refused.json() == gateway_error(
            refused, 7, f"mm.score on {name} is limited to acl/team; client anonymous is not in it"
        )
        refused = http.post(f"/v1{name}:multimodalEmbed", json={"items": ITEMS})
        assert refused.status_code == 403, refused.text
        # Each ACL guards its one method.
        generated = http.post(f"/v1{name}:multimodalGenerate", json={"items": ITEMS})
        assert generated.status_code == 200, generated.text
