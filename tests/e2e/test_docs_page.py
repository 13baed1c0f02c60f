"""GET /docs: Swagger UI served by Envoy, driven in headless Chromium (Debian's `chromium`,
which `make test` installs) with playwright-core from `npm ci`. The screenshot is kept in
.artifacts/ (git-ignored)."""

from __future__ import annotations

import json

import httpx
import pytest

from gateway.launch.stack import Stack
from tests.e2e._browser import ROOT, run_in_chromium
from tests.e2e._published import TEST_LM, published

ARTIFACTS = ROOT / ".artifacts"


@pytest.mark.parametrize(
    ("path", "content_type", "needle"),
    [
        ("/docs", "text/html; charset=utf-8", b'<div id="swagger-ui">'),
        ("/docs/docs.js", "text/javascript; charset=utf-8", b'url: "/openapi.json"'),
        ("/docs/swagger-ui-bundle.js", "text/javascript; charset=utf-8", b"SwaggerUIBundle"),
        ("/docs/swagger-ui.css", "text/css; charset=utf-8", b".swagger-ui"),
    ],
)
def test_envoy_serves_the_docs_page_files(
    http: httpx.Client, path: str, content_type: str, needle: bytes
) -> None:
    response = http.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"] == content_type
    assert needle in response.content


def test_the_large_files_are_gzipped_for_a_client_that_takes_gzip(
    stack: Stack, http: httpx.Client
) -> None:
    # The /docs page fetched 2.3 MB as they are (the OpenAPI document 392 KB, Swagger UI's
    # bundle 1.7 MB), where gzip sends a quarter of it.
    for path in ("/openapi.json", "/docs/swagger-ui-bundle.js", "/docs/swagger-ui.css"):
        plain = http.get(path, headers={"accept-encoding": "identity"})
        assert "content-encoding" not in plain.headers, path
        raw = httpx.get(stack.http_url + path, headers={"accept-encoding": "gzip"})
        assert raw.headers["content-encoding"] == "gzip", path
        assert "accept-encoding" in raw.headers["vary"].lower()
        assert raw.content == plain.content, path  # httpx decodes it
        assert raw.num_bytes_downloaded < len(plain.content) / 3, path
        assert raw.headers["content-type"] == plain.headers["content-type"]
    # API replies are left as they are: small JSON, and streams a compressor would hold back.
    with published(stack, "/sax/test/docs-gzip", TEST_LM, {"text": "a b"}) as model:
        call = {"model": model, "query": "q"}
        ok = http.post("/generate", json=call, headers={"accept-encoding": "gzip"})
        with http.stream(
            "POST", "/generate_stream", json=call, headers={"accept-encoding": "gzip"}
        ) as sse:
            events = [line for line in sse.iter_lines() if line]
    assert "content-encoding" not in ok.headers and ok.json()["texts"][0]["text"] == "a b"
    assert "content-encoding" not in sse.headers and len(events) == 3, events
    listing = http.get("/listall?sax_cell=/sax/test", headers={"accept-encoding": "gzip"})
    assert listing.status_code == 200 and "content-encoding" not in listing.headers


def test_the_files_are_revalidated_not_fetched_again(stack: Stack, http: httpx.Client) -> None:
    # No validator, no Cache-Control: each visit of /docs fetched the page's files whole again
    # (Swagger UI's bundle 1.7 MB, ~500 KB gzipped), and a proxy could keep a stale document.
    for path in ("/openapi.json", "/docs", "/docs/docs.js", "/docs/swagger-ui-bundle.js"):
        for encoding in ("identity", "gzip"):
            sent = {"accept-encoding": encoding}
            first = httpx.get(stack.http_url + path, headers=sent)
            etag = first.headers["etag"]
            assert first.status_code == 200 and first.headers["cache-control"] == "no-cache"
            again = httpx.get(stack.http_url + path, headers={**sent, "if-none-match": etag})
            assert (again.status_code, again.content) == (304, b""), (path, encoding)
            assert again.headers["etag"].removeprefix("W/") == etag.removeprefix("W/")
            assert again.headers["cache-control"] == "no-cache"
            # Another tag, even one that holds this one's hash, is not this one; `*` is any.
            held = etag.removeprefix("W/").strip('"')
            for others in ('"other", W/"x"', f'"{held}-old"', f"W/{held}"):
                other = http.get(path, headers={**sent, "if-none-match": others})
                assert other.status_code == 200, (path, others)
                assert other.content == http.get(path).content
            for any_or_listed in ("*", f'"other", {etag}'):
                again = http.get(path, headers={**sent, "if-none-match": any_or_listed})
                assert again.status_code == 304, (path, any_or_listed)


def test_a_page_on_an_allowed_origin_reads_the_document_again_once_cached(
    http: httpx.Client,
) -> None:
    # A browser that revalidated its copy of /openapi.json got a 304 without
    # Access-Control-Allow-Origin, which a page on another origin may not read ("Failed to
    # fetch"); and the 200 did not vary by Origin, so a copy named one origin for every page.
    origin = {"origin": "http://allowed.example"}
    first = http.get("/openapi.json", headers=origin)
    again = http.get("/openapi.json", headers={**origin, "if-none-match": first.headers["etag"]})
    assert (first.status_code, again.status_code) == (200, 304)
    for reply in (first, again):
        assert reply.headers["access-control-allow-origin"] == "http://allowed.example"
        varies = {v.strip().lower() for v in reply.headers["vary"].split(",")}
        assert {"origin", "accept-encoding"} <= varies
        # A page reads the headers docs/api.md documents on Envoy's replies too: a 405's
        # Allow, a 415's Accept-Encoding.
        exposed = {h.strip() for h in reply.headers["access-control-expose-headers"].split(",")}
        assert {"allow", "accept-encoding", "x-request-id"} <= exposed


def test_no_other_site_may_frame_the_docs_page(http: httpx.Client) -> None:
    # A page where a caller may type in its key and try calls: framed by another site, its
    # clicks could be someone else's (clickjacking). It also runs only its own files; the
    # Chromium tests below show Swagger UI works under that.
    headers = http.get("/docs").headers
    directives = headers["content-security-policy"].split("; ")
    policy = {name: value for name, _, value in (d.partition(" ") for d in directives)}
    assert policy["frame-ancestors"] == "'none'"
    assert policy["default-src"] == "'self'"
    assert "'unsafe-eval'" not in headers["content-security-policy"]
    assert headers["x-frame-options"] == "DENY"
    assert headers["x-content-type-options"] == "nosniff"


def test_docs_with_a_trailing_slash_redirects_to_the_page(http: httpx.Client) -> None:
    # /docs/ was Envoy's JSON 404 "Could not resolve /docs/ to a method."
    response = http.get("/docs/")
    assert response.status_code == 301
    assert response.headers["location"].endswith("/docs")
    page = http.get("/docs/", follow_redirects=True)
    assert page.status_code == 200
    assert page.url.path == "/docs"
    assert b'<div id="swagger-ui">' in page.content


def test_docs_page_tries_generate_and_the_stream_in_chromium(stack: Stack) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    screenshot = ARTIFACTS / "docs-page.png"
    screenshot.unlink(missing_ok=True)
    with published(stack, "/sax/test/docs-page", TEST_LM, {"text": "hello docs"}) as model:
        page = run_in_chromium("docs_page.mjs", [stack.http_url, model, str(screenshot)], ARTIFACTS)
    assert page["errors"] == []
    assert page["title"].startswith("SaxGateway HTTP/JSON API")
    generate, stream = page["operations"]["Generate"], page["operations"]["GenerateStream"]
    # The page offers the documented example, and calls this same origin.
    assert generate["example"] == {
        "model": "/sax/test/lm2b",
        "query": "Q: Who is Harry Potter's mom? A: ",
    }
    assert generate["url"] == f"{stack.http_url}/generate"
    assert generate["status"] == "200"
    assert json.loads(generate["body"]) == {"texts": [{"text": "hello docs", "score": -0.2}]}
    assert stream["status"] == "200"
    events = [
        json.loads(line.removeprefix("data: "))
        for line in stream["body"].splitlines()
        if line.startswith("data: ")
    ]
    assert [d["text"] for e in events for d in e["deltas"]] == ["hello", " docs"]
    assert events[-1]["done"] is True
    assert events[-1]["texts"] == [{"text": "hello docs", "score": -0.2}]
    assert screenshot.read_bytes().startswith(b"\x89PNG")
