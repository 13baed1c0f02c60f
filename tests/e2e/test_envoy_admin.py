"""Envoy's admin port answers the reads the stack, the ops server and docs/security.md name,
and nothing that would stop or change Envoy: it has no authentication, and a web page can
reach a laptop's loopback port by DNS rebinding. Which endpoints change Envoy is read from
the real binary's own /help (those it marks POST), so an endpoint a later Envoy adds is
checked too."""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from gateway.launch.envoy import envoy_binary
from gateway.launch.processes import free_port
from gateway.launch.stack import Stack

# What the stack (readiness, the gateways' health), run-envoy.sh (active requests), the ops
# server (the Prometheus scrape) and docs/security.md read.
READS = (
    "/ready",
    "/stats",
    "/stats?filter=^server\\.live$",
    "/stats?format=json&filter=^server\\.live$",
    "/stats/prometheus",
    "/stats/prometheus?usedonly",
    "/memory",
    "/server_info",
    "/clusters",
    "/clusters?format=json",
)


def _envoy_help(folder: Path) -> str:
    """/help of a bare Envoy of the binary the stack runs (an admin that allows every path)."""
    port = free_port()
    config = folder / "admin-only.json"
    address = {"socket_address": {"address": "127.0.0.1", "port_value": port}}
    config.write_text(json.dumps({"admin": {"address": address}}))
    argv = [str(envoy_binary()), "-c", str(config), "-l", "error", "--disable-hot-restart"]
    with subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) as envoy:
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    return httpx.get(f"http://127.0.0.1:{port}/help", timeout=5).text
                except httpx.TransportError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)
        finally:
            envoy.terminate()
            envoy.wait(timeout=30)


@pytest.fixture(scope="module")
def mutating(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """The admin endpoints that change Envoy: /help marks them `(POST)`."""
    paths = re.findall(r"^  (/\S*) \(POST\):", _envoy_help(tmp_path_factory.mktemp("help")), re.M)
    # Envoy 1.40's, as /help lists them: the parse found them all.
    assert {"/quitquitquit", "/reset_counters", "/stats/recentlookups/enable"} <= set(paths)
    assert len(paths) >= 14, paths
    return paths


@pytest.fixture
def admin(stack: Stack) -> Iterator[httpx.Client]:
    envoy = stack.envoy
    url = f"http://{envoy.admin_address}:{envoy.admin_port}"
    with httpx.Client(base_url=url, timeout=10) as client:
        yield client


def test_every_admin_endpoint_that_changes_envoy_is_refused(
    admin: httpx.Client, http: httpx.Client, mutating: list[str]
) -> None:
    # The prefix /stats let POST /stats/recentlookups/enable, /disable and /clear through.
    for path in mutating:
        for method in ("POST", "GET"):
            refused = admin.request(method, path)
            assert refused.status_code == 403, (method, path, refused.text)
            assert refused.text == f"request to path {path} not allowed"
    # Spelt otherwise: Envoy merges slashes and dot segments before it matches the paths.
    for path in ("//stats/recentlookups/enable", "/stats/./recentlookups/clear", "/stats/x/../"):
        assert admin.post(path).status_code == 403, path
    assert http.get("/healthz").status_code == 200  # still serving, still healthy


def test_the_reads_the_stack_and_the_docs_rely_on_are_answered(admin: httpx.Client) -> None:
    for path in READS:
        response = admin.get(path)
        assert response.status_code == 200, (path, response.text)
    assert admin.get("/stats?filter=^server\\.live$").text == "server.live: 1\n"
    assert "envoy_server_live{} 1" in admin.get("/stats/prometheus").text.splitlines()
    # Reads it has but nothing here uses stay closed.
    for path in ("/config_dump", "/stats/recentlookups", "/runtime", "/listeners", "/certs"):
        assert admin.get(path).status_code == 403, path


def test_the_stacks_envoy_leaves_no_shared_memory_behind(admin: httpx.Client, stack: Stack) -> None:
    # It ran with `--base-id ADMIN_PORT`, for a hot restart nothing does: each Envoy made
    # /dev/shm/envoy_shared_memory_<base id>0 and left it there when it stopped, cleanly or
    # not (2,845 of them on a test host), as the containers' Envoy, started with
    # --disable-hot-restart, does not.
    options = admin.get("/server_info").json()["command_line_options"]
    assert options["disable_hot_restart"] is True
    # Mapped by this Envoy, not merely there: a host keeps earlier Envoys' files, one of them
    # named after this admin port.
    [envoy] = [proc for name, proc in stack.group.children if name == "envoy"]
    assert "envoy_shared_memory" not in Path(f"/proc/{envoy.pid}/maps").read_text()
