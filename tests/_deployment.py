"""The pod's liveness probes as deploy/k8s/base/deployment.yaml writes them, for the tests that
run them against real processes (tests/faults/test_liveness.py) and in the real images
(tests/container)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

DEPLOYMENT = Path(__file__).resolve().parents[1] / "deploy/k8s/base/deployment.yaml"


def liveness(container: str, where: dict[str, str]) -> tuple[list[str], float]:
    """The container's liveness command, each word that ``where`` names replaced (ports,
    paths), and kubelet's timeout for it."""
    pod = yaml.safe_load(DEPLOYMENT.read_text())["spec"]["template"]["spec"]
    [found] = [c for c in pod["containers"] if c["name"] == container]
    probe: dict[str, Any] = found["livenessProbe"]
    command = [where.get(word, word) for word in probe["exec"]["command"]]
    return command, float(probe["timeoutSeconds"])
