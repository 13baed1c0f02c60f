"""The seed README's curl walk-through: its requests, byte for byte, and the replies it gets.

Run against `make up` (tests/e2e/test_seed.py) and against the containers
(tests/container/test_compose_stack.py).
"""

from __future__ import annotations

from collections.abc import Mapping

import httpx

MODEL = "/sax/test/lm2b"
LM2B = "saxml.server.pax.lm.params.lm_cloud.LmCloudSpmd2BTest"
# What the seed's `curl --data` sent to /publish, and what it got back.
PUBLISH_BODY = f"""
{{
    "model": "{MODEL}",
    "model_path": "{LM2B}",
    "checkpoint": "None",
    "replicas": 1
}}
"""
PUBLISHED = {"model": MODEL, "path": LM2B, "checkpoint": "None", "replicas": 1}
# The body of the seed's /listcell and /unpublish calls.
MODEL_BODY = f'\n{{\n    "model": "{MODEL}"\n}}\n'
# What /listcell answers once the model serves.
LISTED = {
    "model": MODEL,
    "model_path": LM2B,
    "checkpoint": "None",
    "max_replicas": 1,
    "active_replicas": 1,
}


def raw(
    method: str,
    url: str,
    body: str,
    content_type: str | None = None,
    *,
    headers: Mapping[str, str] | None = None,
) -> httpx.Response:
    """Sends ``body`` exactly as the seed's curl --data does (no Content-Type unless given),
    plus ``headers`` (an API key, say)."""
    sent = {**(headers or {}), **({"content-type": content_type} if content_type else {})}
    return httpx.request(method, url, content=body.encode(), headers=sent, timeout=60)
