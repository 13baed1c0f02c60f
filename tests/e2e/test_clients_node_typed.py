"""clients/node (@sax-gateway/client) as a new user gets it: a fresh Node project that
installs the package from the repository folder, type-checks examples/node/typed_client.ts
against it with tsc --strict, and runs it through Envoy's gRPC port; and the built client
against a server slow to end a stream."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

from gateway.launch.stack import Stack

ROOT = Path(__file__).resolve().parents[2]
TSC = ROOT / "node_modules" / ".bin" / "tsc"


def _run(args: list[str | Path], cwd: Path, timeout: float) -> str:
    result = subprocess.run(
        args, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=dict(os.environ)
    )
    assert result.returncode == 0, f"{args}: {result.stdout}\n{result.stderr}"
    return result.stdout


def test_fresh_project_installs_and_calls_the_typed_client(stack: Stack, tmp_path: Path) -> None:
    npm, node = shutil.which("npm"), shutil.which("node")
    assert npm and node, "node and npm are needed"
    (tmp_path / "package.json").write_text('{"name": "fresh", "private": true}\n')
    # --install-links: a copy with its own dependencies, as from a registry, not a link
    # that would borrow the repository's node_modules.
    install = [npm, "install", "--install-links", "--prefer-offline", "--no-audit", "--no-fund"]
    _run([*install, ROOT / "clients" / "node"], tmp_path, 300)
    assert not (tmp_path / "node_modules" / "@sax-gateway" / "client").is_symlink()
    shutil.copy(ROOT / "examples" / "node" / "typed_client.ts", tmp_path)
    flags = ["--strict", "--target", "ES2022", "--module", "commonjs"]
    flags += ["--moduleResolution", "node", "--esModuleInterop", "--skipLibCheck"]
    _run([TSC, *flags, "typed_client.ts"], tmp_path, 120)
    model = "/sax/test/typed-node-client"
    out = _run([node, "typed_client.js", stack.grpc_address, model], tmp_path, 120)
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


def test_a_loop_that_stops_at_done_leaves_the_call_succeeded() -> None:
    # Breaking out of a stream's loop cancels the call; at `done` that cancelled a stream that
    # had answered in full whenever its status had not arrived yet (the script's server sends
    # it 300 ms after done), and the gateway and Envoy counted a CANCELLED call.
    node = shutil.which("node")
    assert node, "node is needed"
    out = _run([node, ROOT / "tests" / "e2e" / "node" / "stop_at_done.js"], ROOT, 60)
    assert json.loads(out) == {"text": "one two", "server": "ok"}
