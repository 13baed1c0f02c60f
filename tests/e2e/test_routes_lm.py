"""LM score, embed and gradient through the real Envoy, on the short paths and the /v1/ twins.

Expectations come from `gateway.cell.models.test_lm` itself: a score is -0.1 per suffix
token, an embedding is `unit_floats(dim, MODEL_PATH, text)`, and a gradient is the score
times `unit_floats(dim, prefix, suffix)`.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from gateway.cell.models._hashing import unit_floats
from gateway.cell.models.test_lm import TOKEN_LOGP
from gateway.launch.stack import Stack
from tests.e2e._bodies import gateway_error
from tests.e2e._published import TEST_LM, published

MODEL = "/sax/test/routes-lm"
DIM = 5


@pytest.fixture(scope="module")
def model(stack: Stack) -> Iterator[str]:
    with published(stack, MODEL, TEST_LM, {"embedding_dim": str(DIM)}) as name:
        yield name


@pytest.mark.parametrize("path", ["/score", "/v1/sax/test/routes-lm:score"])
def test_score(http: httpx.Client, model: str, path: str) -> None:
    body = {"model": model, "prefix": "The", "suffix": ["cat sat", "dog", "a b c d"]}
    if path.startswith("/v1/"):
        del body["model"]
    response = http.post(path, json=body)
    assert response.status_code == 200, response.text
    assert response.json() == {"logp": [2 * TOKEN_LOGP, TOKEN_LOGP, pytest.approx(4 * TOKEN_LOGP)]}


@pytest.mark.parametrize("path", ["/embed", "/v1/sax/test/routes-lm:embed"])
def test_embed(http: httpx.Client, model: str, path: str) -> None:
    body = {"model": model, "text": "embed me"}
    if path.startswith("/v1/"):
        del body["model"]
    response = http.post(path, json=body)
    assert response.status_code == 200, response.text
    assert response.json() == {"embedding": unit_floats(DIM, TEST_LM, "embed me")}


@pytest.mark.parametrize("path", ["/gradient", "/v1/sax/test/routes-lm:gradient"])
def test_gradient(http: httpx.Client, model: str, path: str) -> None:
    body = {"model": model, "prefix": "p", "suffix": "s t"}
    if path.startswith("/v1/"):
        del body["model"]
    response = http.post(path, json=body)
    assert response.status_code == 200, response.text
    score = 2 * TOKEN_LOGP
    assert response.json() == {
        "score": [score],
        "gradients": {"embedding": {"values": [score * v for v in unit_floats(DIM, "p", "s t")]}},
    }


def test_extra_inputs_and_timeout_are_accepted(http: httpx.Client, model: str) -> None:
    body = {
        "model": model,
        "prefix": "",
        "suffix": ["x"],
        "extra_inputs": {"temperature": 0.5, "stop": "fast", "bias": [1, 2]},
        "timeout": "5s",
    }
    response = http.post("/score", json=body)
    assert response.status_code == 200, response.text
    assert response.json() == {"logp": [TOKEN_LOGP]}
    # A key the model does not declare is the model server's 400, as on a real cell.
    body["extra_inputs"] = {"mode": "fast"}
    response = http.post("/score", json=body)
    assert response.status_code == 400, response.text
    takes = "bias, per_example_max_decode_steps, per_example_top_k, per_example_top_p, stop"
    message = (
        f"extra input 'mode' is not an extra input of lm.score (it takes {takes}, temperature)"
    )
    assert response.json() == gateway_error(response, 3, f"{message}: InvalidArgument")
