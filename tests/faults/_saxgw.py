"""`saxgw up` as a real process on free ports of its own, for tests that kill it or its parts."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import IO

import httpx

from gateway.launch.processes import free_port


def start_saxgw(
    args: list[str],
    log_dir: Path,
    *,
    env: Mapping[str, str] | None = None,
    stderr: IO[str] | int = subprocess.PIPE,
    open_files: int | None = None,
) -> subprocess.Popen[str]:
    """``saxgw up --log-dir LOG_DIR ARGS``; ``env`` on top of ours; ``open_files``: its
    RLIMIT_NOFILE, soft and hard (set by a shell that execs it: no ``preexec_fn``, whose
    fork handlers can hang in a process that runs grpc)."""
    argv = [sys.executable, "-m", "gateway.cli", "up", "--log-dir", str(log_dir), *args]
    if open_files is not None:
        argv = ["sh", "-c", f'ulimit -n {open_files} && exec "$@"', "sh", *argv]
    return subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
        env={**os.environ, **(env or {})},
    )


def up_args(tmp_path: Path) -> tuple[list[str], dict[str, int]]:
    """`saxgw up` flags for a stack of its own on free ports, and those ports by flag."""
    ports = {
        "--port": free_port(),
        "--envoy-admin-port": free_port(),
        "--gateway-ports": free_port(),
        "--admin-port": free_port(),
        "--model-server-ports": free_port(),
        "--ops-port": free_port(),  # not the default 8889, which another stack may hold
    }
    args = [f"{flag}={port}" for flag, port in ports.items()]
    args += [
        "--listen=127.0.0.1",
        f"--sax-root={tmp_path / 'root'}",
        f"--fs-root={tmp_path / 'fs'}",
        "--log-format=text",  # saxgw's own lines as text, as these tests read them
    ]
    return args, ports


def healthy(port: int) -> bool:
    """Whether Envoy's /healthz on ``port`` says 200."""
    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def wait_healthy(saxgw: subprocess.Popen[str], port: int, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while not healthy(port):
        assert saxgw.poll() is None, saxgw.communicate()
        assert time.monotonic() < deadline, "saxgw up never became healthy"
        time.sleep(0.2)


def wait_banner(saxgw: subprocess.Popen[str]) -> None:
    """Reads ``saxgw``'s stdout up to the end of its banner: it is healthy, and its
    supervisor runs (it prints the banner from the loop that ticks it)."""
    assert saxgw.stdout is not None
    for line in saxgw.stdout:
        if line.startswith("Ctrl-C stops everything"):
            return
    raise AssertionError(f"saxgw up ended before its banner: {saxgw.wait()}")


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, killed but not yet reaped, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat").read_text() if Path(f"/proc/{pid}").exists() else ""
    return bool(stat) and stat.rsplit(")", 1)[1].split()[0] != "Z"


def stop_saxgw(saxgw: subprocess.Popen[str]) -> None:
    """Stops ``saxgw`` as Ctrl-C would (SIGTERM), killing it if it takes over 30 s."""
    if saxgw.poll() is None:
        saxgw.send_signal(signal.SIGTERM)
        try:
            saxgw.wait(30)
        except subprocess.TimeoutExpired:
            saxgw.kill()
    saxgw.communicate()


def ended(saxgw: subprocess.Popen[str]) -> str:
    """Kills ``saxgw`` if it still runs (a test that failed before it stopped); its stderr."""
    if saxgw.poll() is None:
        saxgw.kill()
    return saxgw.communicate()[1]
