"""A second Envoy in front of the secure stack's gateways, rendered from another edge config
(TLS, a rate for anonymous callers, ...): what an operator's config change gives, without a
second stack."""

from __future__ import annotations

import dataclasses
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from gateway.edge import EdgeConfig
from gateway.launch.envoy import envoy_binary, render
from gateway.launch.processes import ProcessGroup, free_port
from tests.e2e.security.conftest import SecureStack


def _ready(admin: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{admin}/ready", timeout=1) as r:
            return bool(r.status == 200)
    except OSError:
        return False


@contextmanager
def front_envoy(secure: SecureStack, edge: EdgeConfig, base: Path, name: str) -> Iterator[int]:
    """Runs Envoy ``name`` with the secure stack's settings but ``edge``, its config, secrets
    and log under ``base``, until the block ends; yields its port once it is ready."""
    port, admin = free_port(), free_port()
    settings = dataclasses.replace(
        secure.stack.envoy, listen_port=port, admin_port=admin, edge=edge
    )
    config = base / "envoy.yaml"
    config.write_text(render(settings, secrets_dir=base / "secrets"))
    group = ProcessGroup()
    try:
        group.start(
            name,
            [str(envoy_binary()), "-c", str(config), "-l", "warn", "--disable-hot-restart"],
            log_path=str(base / "envoy.log"),
        )
        group.wait_until(name, lambda: _ready(admin), 30)
        yield port
    finally:
        group.stop()
