"""One runner for the Node examples (examples/node/*) the e2e tests drive: node with the
repository's node_modules (`npm ci`, which `make test` runs through `make contract`), a bare
PATH, and one JSON line printed per step."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _node(package: str) -> str:
    """The node binary, once ``package`` is installed in the repository's node_modules."""
    node = shutil.which("node")
    if node is None or not (ROOT / "node_modules" / package).exists():
        pytest.fail(f"node and {package} (`npm ci`, run by `make contract`) are needed")
    return node


def example_steps(script: str, *args: str, package: str) -> list[Any]:
    """Runs ``examples/node/<script>`` with ``args`` and returns the JSON lines it printed;
    ``package`` is the npm package it needs (e.g. ``@grpc/grpc-js``)."""
    result = subprocess.run(
        [_node(package), ROOT / "examples" / "node" / script, *args],
        env={"PATH": "/usr/bin:/bin"},  # the examples read their protos from the repository
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def node_program(program: str, *args: str, package: str, module: bool = False) -> Any:
    """Runs ``program`` (a docs page's snippet, or an ES ``module``) with ``args`` from the
    repository's root, as a reader who copied it there would, and returns the JSON it printed."""
    result = subprocess.run(
        [_node(package), *(["--input-type=module"] if module else []), "-e", program, *args],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)
