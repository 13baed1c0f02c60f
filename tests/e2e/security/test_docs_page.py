"""GET /docs on a stack that asks for credentials: the page offers the schemes the edge takes
(the OpenAPI document's securitySchemes), and "Try it out" works once a key is entered in
its Authorize dialog. Driven in headless Chromium as tests/e2e/test_docs_page.py drives it."""

from __future__ import annotations

import json

from tests.e2e._browser import ROOT, run_in_chromium
from tests.e2e.security.conftest import TEAM_A_KEY, SecureStack

ARTIFACTS = ROOT / ".artifacts"


def test_docs_page_authorizes_with_a_key_and_tries_generate_and_the_stream(
    secure: SecureStack,
) -> None:
    # The document named no credentials: the page had no Authorize button, and every "Try it
    # out" on a stack with keys was a 401.
    ARTIFACTS.mkdir(exist_ok=True)
    screenshot = ARTIFACTS / "docs-page-authorized.png"
    with secure.published("/sax/test/sec-docs-page", {"text": "hello docs"}) as model:
        args = [secure.stack.http_url, model, str(screenshot), TEAM_A_KEY]
        page = run_in_chromium("docs_page.mjs", args, ARTIFACTS)
    assert page["errors"] == []
    assert page["schemes"] == ["bearer", "apiKey"]
    generate, stream = page["operations"]["Generate"], page["operations"]["GenerateStream"]
    assert generate["status"] == "200", generate["body"]
    assert json.loads(generate["body"]) == {"texts": [{"text": "hello docs", "score": -0.2}]}
    assert stream["status"] == "200", stream["body"]
    events = [
        json.loads(line.removeprefix("data: "))
        for line in stream["body"].splitlines()
        if line.startswith("data: ")
    ]
    assert [d["text"] for e in events for d in e["deltas"]] == ["hello", " docs"]
    assert events[-1]["texts"] == [{"text": "hello docs", "score": -0.2}]
