"""A Python client generated from the served /openapi.json by openapi-python-client, as a
team with neither our clients nor our protos would make one, calling a real stack.

openapi-python-client (0.29) reads OpenAPI 3.1 only; the document is 3.2 for its streams'
`itemSchema`, which 3.1 tools skip, so the test gives it the document marked 3.1.0, as
docs/clients.md tells such a team to. Everything else it reads as served: a double's
non-finite strings once made its number parser refuse every score.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from gateway.launch.stack import Stack
from tests.e2e._published import TEST_LM, published

GENERATOR = Path(sys.executable).parent / "openapi-python-client"
PACKAGE = "saxgw_openapi"

# Run in a process of its own, with the generated package on its path.
CALLS = """
import sys
from saxgw_openapi import Client
from saxgw_openapi.api.sax_gateway import generate, get_info, score
from saxgw_openapi.models import (
    Error, SaxgatewayV1GenerateRequest, SaxgatewayV1GenerateResponse, SaxgatewayV1ScoreRequest,
    SaxgatewayV1ScoreResponse,
)

model, other = sys.argv[1], sys.argv[2]
client = Client(base_url=sys.argv[3], raise_on_unexpected_status=True, timeout=30)
info = get_info.sync(client=client)
assert info is not None and info.message == "HTTP Server for SAX Client", info
reply = generate.sync(client=client, body=SaxgatewayV1GenerateRequest(model=model, query="q"))
assert isinstance(reply, SaxgatewayV1GenerateResponse), reply
assert [(t.text, round(t.score, 6)) for t in reply.texts] == [("hello", -0.1)], reply
scored = score.sync(client=client, body=SaxgatewayV1ScoreRequest(model=model, suffix=["a b"]))
assert isinstance(scored, SaxgatewayV1ScoreResponse) and scored.logp == [-0.2], scored
# A score JSON has no number for: a string, as the document says.
ruled_out = score.sync(client=client, body=SaxgatewayV1ScoreRequest(model=other, suffix=["a"]))
assert isinstance(ruled_out, SaxgatewayV1ScoreResponse), ruled_out
assert [str(v) for v in ruled_out.logp] == ["-Infinity"], ruled_out.logp
missing = generate.sync_detailed(
    client=client, body=SaxgatewayV1GenerateRequest(model="/sax/test/absent", query="q")
)
assert missing.status_code == 404 and isinstance(missing.parsed, Error), missing
assert missing.parsed.code == 5 and "absent" in missing.parsed.message, missing.parsed
print("ok")
"""


@pytest.fixture(scope="module")
def generated(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The directory holding the package generated from the stack's /openapi.json."""
    base = tmp_path_factory.mktemp("openapi-client")
    document = httpx.get(f"{stack.http_url}/openapi.json", timeout=30).json()
    assert document["openapi"] == "3.2.0"
    document["openapi"] = "3.1.0"
    (base / "openapi.json").write_text(json.dumps(document))
    (base / "config.json").write_text(json.dumps({"package_name_override": PACKAGE}))
    result = subprocess.run(
        [
            str(GENERATOR),
            *("generate", "--path", "openapi.json", "--config", "config.json"),
            *("--meta", "none", "--output-path", PACKAGE),
        ],
        cwd=base,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert (base / PACKAGE / "api" / "sax_gateway" / "generate.py").exists(), result.stdout
    return base


def test_a_generated_client_calls_the_api(stack: Stack, generated: Path) -> None:
    with (
        published(stack, "/sax/test/openapi-gen", TEST_LM, {"text": "hello"}) as model,
        published(stack, "/sax/test/openapi-gen-inf", TEST_LM, {"score": "-inf"}) as other,
    ):
        result = subprocess.run(
            [sys.executable, "-c", CALLS, model, other, stack.http_url],
            cwd=generated,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "ok"
