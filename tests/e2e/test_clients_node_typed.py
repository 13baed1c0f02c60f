"""clients/node (@sax-gateway/client) as a new user gets it: a fresh Node project that runs
the install and build commands its README and examples/node/typed_client.ts's header give,
word for word, type-checks both programs with the TypeScript that installs, and runs them
through Envoy's gRPC port; and the built client against a server slow to end a stream."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import uuid
from pathlib import Path

import grpc
import pytest
import saxgateway_client
from saxgateway.v1 import gateway_pb2

from gateway.cell.models import random_lm
from gateway.launch.stack import Stack
from tests.e2e._access_log import access_log_line, access_log_lines
from tests.e2e._published import TEST_CUSTOM, TEST_LM, published

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "clients" / "node" / "README.md"
EXAMPLE = ROOT / "examples" / "node" / "typed_client.ts"
# What both clients say of a URL given for the gateway's gRPC address.
URL_TARGET = (
    "TypeError: 'http://localhost:8888' is a URL; the client takes the gateway's gRPC "
    "address, host:port ('localhost:8888'), and credentials for TLS"
)
# npm's own settings, so that the documented commands run as written: packages from npm's
# cache where it has them, and no audit or funding requests.
NPM_ENV = {
    "npm_config_prefer_offline": "true",
    "npm_config_audit": "false",
    "npm_config_fund": "false",
    "npm_config_update_notifier": "false",
}


def _run(args: list[str | Path], cwd: Path, timeout: float) -> str:
    result = subprocess.run(
        args,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **NPM_ENV},
    )
    assert result.returncode == 0, f"{args}: {result.stdout}\n{result.stderr}"
    return result.stdout


def _shell(commands: list[str], cwd: Path) -> str:
    """Runs documented shell lines as written, the repository where they say /path/to."""
    script = "set -e\n" + "\n".join(commands).replace("/path/to/sax-gateway", str(ROOT))
    return _run(["bash", "-c", script], cwd, 600)


def _readme_blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README.read_text(), flags=re.S)


def _header_commands() -> list[str]:
    """The commands in typed_client.ts's header (`//   npm ...`, `//   npx ...`)."""
    lines = [line.removeprefix("//   ") for line in EXAMPLE.read_text().splitlines()]
    return [line for line in lines if line.startswith(("npm ", "npx "))]


# npm installs and two TypeScript compilations (~60 s on a quiet 2-core machine): past the
# suite's 120 s hang guard when the machine is loaded, which is not what this tests.
@pytest.mark.timeout(360)
def test_fresh_project_follows_the_readme_and_calls_the_typed_client(
    stack: Stack, tmp_path: Path
) -> None:
    assert shutil.which("npm") and shutil.which("node"), "node and npm are needed"
    (tmp_path / "package.json").write_text('{"name": "fresh", "private": true}\n')
    install, build = (block.splitlines() for block in _readme_blocks("sh"))
    header = _header_commands()
    assert header[: len(install)] == install  # the example installs as the README does
    _shell(install, tmp_path)
    # The example's next step installs TypeScript. After `npm install --install-links` of the
    # folder (what the README said), that second install turned the package into a link to
    # the repository and removed its dependencies: tsc and node then failed to find them.
    shutil.copy(EXAMPLE, tmp_path)
    _shell(header[len(install) :], tmp_path)
    package = tmp_path / "node_modules" / "@sax-gateway" / "client"
    assert not package.is_symlink()
    assert (tmp_path / "node_modules" / "@grpc" / "grpc-js" / "package.json").exists()

    model = "/sax/test/typed-node-client"
    out = _run(["node", "typed_client.js", stack.grpc_address, model], tmp_path, 120)
    assert [json.loads(line) for line in out.splitlines()] == [
        {"step": "ready", "active_replicas": 1},
        {"step": "generate", "texts": ["hello from"]},
        {
            "step": "stream",
            "deltas": ["hello", " from", " typescript"],
            "done": True,
            "text": "hello from typescript",
        },
        {"step": "bad_request", "code": "INVALID_ARGUMENT", "fields": ["model"]},
        {"step": "not_found", "code": "NOT_FOUND"},
        {"step": "stream_error", "code": "UNAVAILABLE"},
        {"step": "cancelled", "code": "CANCELLED"},
        {"step": "unpublish", "model": model},
    ]

    # The README's own program, saved as main.mts and built and run as it says.
    [program] = _readme_blocks("ts")
    with published(stack, "/sax/test/typed-node-readme", random_lm.MODEL_PATH) as readme_model:
        program = program.replace('"localhost:8888"', json.dumps(stack.grpc_address))
        (tmp_path / "main.mts").write_text(program.replace('"/sax/test/lm2b"', f'"{readme_model}"'))
        out = _shell(build, tmp_path)
    assert "INVALID_ARGUMENT [" in out and "field: 'model'" in out, out


def test_a_loop_that_stops_at_done_leaves_the_call_succeeded() -> None:
    # Breaking out of a stream's loop cancels the call; at `done` that cancelled a stream that
    # had answered in full whenever its status had not arrived yet (the script's server sends
    # it 300 ms after done), and the gateway and Envoy counted a CANCELLED call.
    node = shutil.which("node")
    assert node, "node is needed"
    out = _run([node, ROOT / "tests" / "e2e" / "node" / "stop_at_done.js"], ROOT, 60)
    assert json.loads(out) == {"text": "one two", "server": "ok"}


def test_a_wrong_method_from_plain_javascript_is_named_not_a_crash_in_grpc_js() -> None:
    # TypeScript refuses these; from JavaScript, an unknown name threw "Cannot read properties
    # of undefined (reading 'requestType')" and the wrong kind failed inside grpc-js.
    node = shutil.which("node")
    assert node, "node is needed"
    out = json.loads(_run([node, ROOT / "tests" / "e2e" / "node" / "wrong_method.js"], ROOT, 60))
    # The service's RPCs as ts-proto names them (lowerCamelCase), sorted as JavaScript sorts.
    service = gateway_pb2.DESCRIPTOR.services_by_name["SaxGateway"]
    names = ", ".join(sorted(m.name[0].lower() + m.name[1:] for m in service.methods))
    assert out == {
        "unknown": f'TypeError: "nope" is not an RPC of saxgateway.v1.SaxGateway; it has {names}',
        "inherited": (
            f'TypeError: "toString" is not an RPC of saxgateway.v1.SaxGateway; it has {names}'
        ),
        "stream_as_unary": (
            'TypeError: generateStream is a streaming RPC: use client.stream("generateStream", ...)'
        ),
        "unary_as_stream": (
            'TypeError: generate is not a streaming RPC: use client.unary("generate", ...)'
        ),
        # UNAVAILABLE ("Name resolution failed"), which says retry, for a URL before.
        "url_target": URL_TARGET,
    }


def test_a_call_on_a_closed_client_is_its_cancelled_error() -> None:
    # grpc-js threw a plain Error ("Channel has been shut down"), which no `instanceof
    # SaxGatewayError` caught, where the README says each failure is one.
    node = shutil.which("node")
    assert node, "node is needed"
    out = json.loads(_run([node, ROOT / "tests" / "e2e" / "node" / "after_close.js"], ROOT, 60))
    closed = {
        "class": "CancelledError",
        "gateway_error": True,
        "code": "CANCELLED",
        "message": "CANCELLED: Channel closed!",
    }
    assert out == {"unary": closed, "stream": closed}


def test_an_error_carries_its_details_and_a_oneof_set_twice_is_refused(stack: Stack) -> None:
    # SaxGatewayError kept the field violations alone: no details, no request ID, no message
    # as it arrived. And `{text, image_bytes}` as one MultimodalItem went out as both fields.
    node = shutil.which("node")
    assert node, "node is needed"
    script = ROOT / "tests" / "e2e" / "node" / "error_details.js"
    out = _run([node, script, stack.grpc_address], ROOT, 60)
    info = ["type.googleapis.com/google.rpc.RequestInfo"]
    not_found = {
        "code": "NOT_FOUND",
        "message": "NOT_FOUND: model /sax/test/node-nosuch is not published: NotFound",
        "rawMessage": "model /sax/test/node-nosuch is not published: NotFound",
        "details": info,
    }
    one_of = "saxgateway.v1.MultimodalItem takes one of text, image_bytes, video (oneof item)"
    steps = [json.loads(line) for line in out.splitlines()]
    assert steps[:3] == [
        {"step": "unknown_model", **not_found, "requestId": "node-details-17"},
        {
            "step": "text_and_image",
            "name": "TypeError",
            "message": f"items[1]: text and image_bytes are both set, but {one_of}: set one",
        },
        {
            "step": "three_of_a_oneof",
            "name": "TypeError",
            "message": "suffix_items[1]: text, image_bytes and video are all set, but "
            f"{one_of}: set one",
        },
    ]
    # One member each (the others undefined or null) is a request like any other.
    assert steps[3] == {"step": "one_of_each", **not_found, "requestId": steps[3]["requestId"]}
    assert steps[3]["requestId"]
    # Metadata for every call was the Python client's alone (Client(metadata=...)): a Node
    # caller set its API key on each call.
    assert steps[4:] == [
        {"step": "client_metadata", **not_found, "requestId": "node-client-wide-5"},
        {"step": "call_metadata_wins", **not_found, "requestId": "node-details-17"},
    ]


def test_an_endless_timeout_is_no_deadline_and_a_nan_one_a_type_error(stack: Stack) -> None:
    # grpc-js threw "Deadline is too far in the future" from a timer for a timeoutMs of
    # Infinity or NaN: no catch of the caller's could take it, and the process died.
    node = shutil.which("node")
    assert node, "node is needed"
    script = ROOT / "tests" / "e2e" / "node" / "timeouts.js"
    out = _run([node, script, stack.grpc_address], ROOT, 60)
    nan = "TypeError: timeoutMs must be a number of milliseconds, not NaN"
    assert [json.loads(line) for line in out.splitlines()] == [
        {"step": "endless", "message": "HTTP Server for SAX Client"},
        {"step": "far", "message": "HTTP Server for SAX Client"},
        {"step": "nan", "error": nan},
        {"step": "stream_nan", "error": nan},
    ]


def test_channel_options_reach_the_channel(stack: Stack) -> None:
    # docs/clients.md's retry policy is a channel's service config; the client took no
    # channel options, so a Node caller of it could not retry as the page says.
    node = shutil.which("node")
    assert node, "node is needed"
    request_id = f"node-retried-{uuid.uuid4()}"
    script = ROOT / "tests" / "e2e" / "node" / "channel_options.js"
    out = _run([node, script, stack.grpc_address, request_id], ROOT, 60)
    assert json.loads(out) == {"code": "NOT_FOUND"}
    assert [line["grpc_status"] for line in access_log_lines(stack, request_id, 3)] == [5, 5, 5]


def test_a_reply_over_grpc_js_default_limit_is_received(stack: Stack) -> None:
    # 5 MiB: over grpc-js's default receive limit (4 MiB), under the gateway's (32 MiB); the
    # client raised RESOURCE_EXHAUSTED "Received message larger than max".
    node = shutil.which("node")
    assert node, "node is needed"
    script = ROOT / "tests" / "e2e" / "node" / "big_reply.js"
    with published(stack, "/sax/test/node-client-custom", TEST_CUSTOM) as model:
        out = _run([node, script, stack.grpc_address, model], ROOT, 60)
    assert json.loads(out) == {"length": 5 << 20}


def test_each_status_code_is_the_python_clients_error_class() -> None:
    # Every failure was a bare SaxGatewayError: a Node caller compared codes where a Python
    # one catches NotFoundError, AbortedError, ...; a code gRPC lacks had codeName undefined.
    node = shutil.which("node")
    assert node, "node is needed"
    out = json.loads(_run([node, ROOT / "tests" / "e2e" / "node" / "error_classes.js"], ROOT, 60))
    unknown = grpc.StatusCode.UNKNOWN
    expected = {}
    for number in [*range(17), 99]:
        code = next((c for c in grpc.StatusCode if c.value[0] == number), unknown)
        code = unknown if code is grpc.StatusCode.OK else code
        name = type(saxgateway_client.error_for(code, "m")).__name__
        expected[str(number)] = {"class": name, "name": name, "code": code.name, "exported": True}
    assert out == expected


def test_a_stream_failing_midway_fails_with_its_status_and_is_not_cancelled(stack: Stack) -> None:
    # The client threw the in-band error and cancelled the call before its status came: Envoy
    # logged about half of such streams CANCELLED (response flag DR), and retryAfterMs was
    # undefined though the status's trailers asked for 1 s.
    node = shutil.which("node")
    assert node, "node is needed"
    overrides = {"text": "a b c d", "fail_after_tokens": "2", "fail_code": "RESOURCE_EXHAUSTED"}
    ids = [f"node-midway-{uuid.uuid4()}" for _ in range(6)]
    script = ROOT / "tests" / "e2e" / "node" / "stream_midway.js"
    with published(stack, "/sax/test/node-midway", TEST_LM, overrides) as model:
        out = _run([node, script, stack.grpc_address, model, *ids], ROOT, 60)
    code = "RESOURCE_EXHAUSTED"
    assert [json.loads(line) for line in out.splitlines()] == [
        {"code": code, "retryAfterMs": 1000, "requestId": request_id} for request_id in ids
    ]
    lines = [access_log_line(stack, request_id) for request_id in ids]
    assert [(line["grpc_status"], line["response_flags"]) for line in lines] == [(8, "-")] * 6
