"""examples/curl.sh, the seed's walk-through as a script, against the stack."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from gateway.launch.stack import Stack

ROOT = Path(__file__).resolve().parents[2]
LM2B = "saxml.server.pax.lm.params.lm_cloud.LmCloudSpmd2BTest"


def test_curl_walkthrough(stack: Stack) -> None:
    model = "/sax/test/curl-walkthrough"
    result = subprocess.run(
        [ROOT / "examples" / "curl.sh", stack.http_url, model],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    steps = [line for line in lines if line.startswith("# ")]
    bodies = [json.loads(line) for line in lines if not line.startswith("# ")]
    assert [step.split(" : ")[0] for step in steps] == [
        "# GET /",
        "# POST /publish",
        "# POST /wait_for_ready",
        "# GET /listcell",
        "# POST /generate",
        "# POST /unpublish",
    ]
    greeting, published, ready, listed, generated, unpublished = bodies
    assert greeting["message"] == "HTTP Server for SAX Client"
    assert published == {"model": model, "path": LM2B, "checkpoint": "None", "replicas": 1}
    assert ready == {"model": model, "active_replicas": 1}
    assert listed == {
        "model": model,
        "model_path": LM2B,
        "checkpoint": "None",
        "max_replicas": 1,
        "active_replicas": 1,
    }
    assert len(generated["texts"]) >= 1
    assert all(isinstance(t["text"], str) and t["score"] < 0 for t in generated["texts"])
    assert unpublished == {"model": model}
