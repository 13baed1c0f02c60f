"""The compose stack of `make container-test`: docker-compose.yml plus the host-network
override, driven through Debian's docker-compose and docker CLIs against the engine that
scripts/container-engine started (DOCKER_HOST)."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import httpx

T = TypeVar("T")

ROOT = Path(__file__).resolve().parents[2]
DOCKER = "/usr/bin/docker"  # Debian's CLI, matched to its engine


@dataclass(frozen=True, kw_only=True)
class Ports:
    """Loopback ports of the stack (SAXGW_CT_* in deploy/compose/host-network.yml)."""

    http: int = 18888
    envoy_admin: int = 18901
    gateway: int = 25051
    admin: int = 20000
    model: int = 20001
    ops: int = 18889

    def env(self) -> dict[str, str]:
        return {
            "SAXGW_CT_HTTP_PORT": str(self.http),
            "SAXGW_CT_ENVOY_ADMIN_PORT": str(self.envoy_admin),
            "SAXGW_CT_GATEWAY_PORT": str(self.gateway),
            "SAXGW_CT_ADMIN_PORT": str(self.admin),
            "SAXGW_CT_MODEL_PORT": str(self.model),
            "SAXGW_CT_OPS_PORT": str(self.ops),
        }


@dataclass(frozen=True, kw_only=True)
class Compose:
    """``docker-compose -p PROJECT -f docker-compose.yml -f deploy/compose/host-network.yml``."""

    project: str
    ports: Ports
    env: Mapping[str, str]

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.http}"

    def run(self, *args: str, timeout: float = 300) -> str:
        command = [
            "docker-compose",
            "--no-ansi",
            "-p",
            self.project,
            "-f",
            str(ROOT / "docker-compose.yml"),
            "-f",
            str(ROOT / "deploy/compose/host-network.yml"),
            *args,
        ]
        return run_command(command, {**self.env, **self.ports.env()}, timeout)

    def docker(self, *args: str, timeout: float = 120) -> str:
        return run_command([DOCKER, *args], dict(self.env), timeout)

    def container(self, service: str) -> str:
        """The ID of the service's (only) container, running or not."""
        ids = self.run("ps", "-a", "-q", service).split()
        assert len(ids) == 1, (service, ids)
        return ids[0]

    def state(self, service: str) -> tuple[bool, int]:
        """(running, exit code) of the service's container."""
        out = self.docker(
            "inspect", "-f", "{{.State.Running}} {{.State.ExitCode}}", self.container(service)
        )
        running, code = out.split()
        return running == "true", int(code)

    def logs(self) -> str:
        return self.run("logs", "--no-color", "--tail", "40")


def run_command(command: list[str], env: Mapping[str, str], timeout: float) -> str:
    result = subprocess.run(
        command,
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=ROOT,
    )
    if result.returncode != 0:
        raise AssertionError(f"{' '.join(command)} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout


def poll(probe: Callable[[], T | None], what: str, timeout: float = 90) -> T:
    """Calls ``probe`` until it returns something other than None (errors count as None)."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            value = probe()
        except (httpx.HTTPError, OSError, AssertionError) as exc:
            value, last = None, exc
        if value is not None:
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what} (last error: {last!r})")
