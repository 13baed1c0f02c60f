"""A gateway told to stop (SIGTERM, as `saxgw`, systemd and Kubernetes stop it) gives calls its
grace period; a stream that outlasts it ends with an error its client raises, on both faces,
not as if its text were complete, and a unary call with the same error, in its face's shape."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import openai

from gateway.config import GatewaySettings
from tests.e2e._published import request_info
from tests.faults.conftest import Faults, publish

ROOT = Path(__file__).resolve().parents[2]
GRACE = GatewaySettings.grace_period  # the fault stack's gateways run with the default
CLOSED = "the Sax client was closed during the call: its owner is stopping"

# Streams a completion and prints each chunk's text, then how the stream ended.
NODE = """
import OpenAI from "openai";
const client = new OpenAI({baseURL: process.argv[1], apiKey: "-", maxRetries: 0});
try {
  const body = {model: process.argv[2], prompt: "q", stream: true};
  const stream = await client.completions.create(body);
  for await (const chunk of stream) console.log(JSON.stringify({text: chunk.choices[0].text}));
  console.log(JSON.stringify({end: "complete"}));
} catch (e) {
  console.log(JSON.stringify({end: e.constructor.name, error: e.error ?? String(e)}));
}
"""


def _python_sdk(url: str, model: str, started: threading.Event, out: dict[str, Any]) -> None:
    with openai.OpenAI(base_url=url + "/v1", api_key="-", max_retries=0) as sdk:
        try:
            for _ in sdk.completions.create(model=model, prompt="q", stream=True):
                started.set()
            out["end"] = "complete"
        except Exception as exc:  # the test asserts which it was
            out["end"], out["error"] = type(exc), getattr(exc, "body", exc)


def _native(url: str, model: str, started: threading.Event, out: dict[str, Any]) -> None:
    body = {"model": model, "query": "q"}
    with (
        httpx.Client(base_url=url, timeout=60) as http,
        http.stream("POST", "/generate_stream", json=body) as response,
    ):
        for line in response.iter_lines():
            if line.startswith("data: "):
                started.set()
                out["last"] = json.loads(line.removeprefix("data: "))
        out["request_info"] = request_info(response)


def _unary(url: str, model: str, started: threading.Event, out: dict[str, Any]) -> None:
    with httpx.Client(base_url=url, timeout=60) as http:
        started.set()  # the test then waits until Envoy has sent the call on to a gateway
        response = http.post("/generate", json={"model": model, "query": "q"})
    out["status"], out["body"], out["request_info"] = (
        response.status_code,
        response.json(),
        request_info(response),
    )


def _python_sdk_unary(url: str, model: str, started: threading.Event, out: dict[str, Any]) -> None:
    with openai.OpenAI(base_url=url + "/v1", api_key="-", max_retries=0) as sdk:
        started.set()
        try:
            sdk.completions.create(model=model, prompt="q")
            out["end"] = "complete"
        except openai.APIStatusError as exc:
            out["end"], out["status"], out["error"] = type(exc), exc.status_code, exc.body


def _calls_upstream(faults: Faults) -> int:
    """The calls Envoy has sent on to a gateway and not seen end."""
    stats = f"http://127.0.0.1:{faults.stack.envoy.admin_port}/stats"
    pattern = r"^cluster\.gateway_(grpc|open)\.upstream_rq_active$"
    text = httpx.get(stats, params={"filter": pattern}, timeout=10).text
    return sum(int(line.rpartition(":")[2]) for line in text.splitlines() if line)


def test_a_stream_outlasting_the_grace_period_ends_with_an_error(
    faults: Faults, http: httpx.Client
) -> None:
    model = "/sax/test/outlasts"
    publish(http, model, text=" ".join(["tok"] * 300), delay_ms="100")  # 30 s, over the grace
    node = shutil.which("node")
    assert node is not None, "node is needed"
    js = subprocess.Popen(
        [node, "--input-type=module", "-e", NODE, faults.url + "/v1", model],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin"},
        stdout=subprocess.PIPE,
        text=True,
    )
    assert js.stdout is not None
    python: dict[str, Any] = {}
    native: dict[str, Any] = {}
    threads = []
    unary: dict[str, Any] = {}
    python_unary: dict[str, Any] = {}
    runs = [(_python_sdk, python), (_native, native), (_unary, unary)]
    for run, out in [*runs, (_python_sdk_unary, python_unary)]:
        started = threading.Event()
        threads.append(threading.Thread(target=run, args=(faults.url, model, started, out)))
        threads[-1].start()
        assert started.wait(30), out
    assert json.loads(js.stdout.readline()) == {"text": "tok"}
    # Every call has reached a gateway (Envoy sent it on): one still on its way when the
    # gateways stop is refused, by Envoy (503 "remote connection failure"), not ended by the
    # stopping gateway. A fixed 0.5 s assumed a client's thread had sent its call by then.
    calls = len(threads) + 1  # and the Node SDK's stream
    faults.wait_until(lambda: _calls_upstream(faults) == calls, 30, "every call to reach a gateway")
    # Both gateways: each stream is on one of them.
    pids = [faults.pid(port) for port in faults.stack.settings.gateway_ports]
    stopped = time.monotonic()
    for pid in pids:
        os.kill(pid, signal.SIGTERM)
    for thread in threads:
        thread.join(GRACE + 10)
    node_end = json.loads(js.communicate(timeout=GRACE + 10)[0].splitlines()[-1])
    ended = time.monotonic() - stopped
    error = {"message": CLOSED, "type": "service_unavailable_error", "param": None, "code": None}
    assert python == {"end": openai.APIError, "error": error}
    assert node_end == {"end": "APIError", "error": error}
    assert native["last"] == {
        "deltas": [],
        "done": True,
        "texts": [],
        "error": {"code": 14, "message": CLOSED, "details": [native["request_info"]]},
    }
    # Unary calls end with the streams, a second before the grace period, with the same
    # error. They ran on until gRPC cancelled them at its end, and then got gRPC's own words
    # (503 "Cancelling all calls"), on the OpenAI face too, where its SDKs read an OpenAI
    # error envelope: the Sax client's close left every call it had not streamed running.
    assert unary == {
        "status": 503,
        "body": {"code": 14, "message": CLOSED, "details": [unary["request_info"]]},
        "request_info": unary["request_info"],
    }
    assert python_unary == {
        "end": openai.InternalServerError,
        "status": 503,
        "error": error,
    }
    assert GRACE - 2 < ended < GRACE + 2  # the grace given, and no more
    faults.healthy()  # the supervisor restarts the gateways for the next tests
