"""What the parts of the kubelet-lite (tests/container/_pod.py) share: the objects a pod refers
to, its errors, and the small rules of the Kubernetes API it follows."""

from __future__ import annotations

import base64
import re
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tests.container._compose import DOCKER

POD_IP = "192.0.2.2"  # RFC 5737 TEST-NET-1: never routed; it exists on the pod's loopback only
CLUSTER_IP = "192.0.2.1"  # every Service's, in the variables kubelet sets; never dialled
LABEL = "saxgw-ct-pod"  # on every container and volume of a pod, its value the pod's name
Spec = dict[str, Any]


class NotEmulated(AssertionError):
    """The pod spec uses something the kubelet-lite does not do: the test fails, never skips."""


class PodFailed(AssertionError):
    """What kubelet would report instead of running the pod, or a container that died."""


def only(spec: Mapping[str, Any], known: set[str], where: str) -> None:
    """NotEmulated unless every field of ``spec`` is one of ``known``."""
    if unknown := set(spec) - known:
        raise NotEmulated(f"{where}: {', '.join(sorted(unknown))}")


def docker(*args: str, timeout: float = 60) -> str:
    """The docker CLI (DOCKER_HOST: the engine of scripts/container-engine); its stdout."""
    result = subprocess.run(
        [DOCKER, *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if result.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)}: {result.stderr.strip()}")
    return result.stdout.strip()


def tail(name: str, container_id: str, lines: int) -> str:
    """The last ``lines`` lines a container wrote (stdout, then stderr), headed by ``name``."""
    command = [DOCKER, "logs", "--tail", str(lines), container_id]
    result = subprocess.run(command, capture_output=True, text=True, timeout=30)
    return f"--- {name}\n{result.stdout}{result.stderr}"


@dataclass(frozen=True)
class Cluster:
    """The objects a pod refers to (ConfigMaps, Secrets, its ServiceAccount, Services), and
    the local image that stands for each image reference (no registry is reachable here)."""

    objects: tuple[Spec, ...]
    images: Mapping[str, str]

    def get(self, kind: str, name: str) -> Spec | None:
        found = [o for o in self.objects if (o["kind"], o["metadata"]["name"]) == (kind, name)]
        return found[0] if found else None

    def data(self, kind: str, name: str) -> dict[str, bytes] | None:
        """A ConfigMap's or Secret's keys and values; None if there is no such object."""
        if (found := self.get(kind, name)) is None:
            return None
        data = found.get("data", {})
        if kind == "Secret":
            return {key: base64.b64decode(value) for key, value in data.items()}
        binary = {key: base64.b64decode(v) for key, v in found.get("binaryData", {}).items()}
        return {**{key: value.encode() for key, value in data.items()}, **binary}

    def image(self, reference: str) -> str:
        if "@" not in reference and ":" not in reference.rsplit("/", 1)[-1]:
            reference += ":latest"  # as the engine (and kubelet) reads a reference with no tag
        if reference not in self.images:
            raise NotEmulated(f"no local image stands for {reference}")
        return self.images[reference]


def secret(name: str, files: Mapping[str, str]) -> Spec:
    """What `kubectl create secret generic NAME --from-file=...` creates."""
    data = {key: base64.b64encode(text.encode()).decode() for key, text in files.items()}
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "data": data}


def container_port(container: Spec, port: int | str) -> int:
    """A probe's or hook's port: a number, or the name of one of the container's ports."""
    if isinstance(port, int):
        return port
    named = {p["name"]: p["containerPort"] for p in container.get("ports", []) if "name" in p}
    if port not in named:
        raise PodFailed(f"container {container['name']} has no port named {port}")
    return int(named[port])


_REFERENCE = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


def expand(text: str, env: Mapping[str, str]) -> str:
    """$(VAR) in command, args and env values: $$ is a $; an unknown $(VAR) stays as it is."""
    return _REFERENCE.sub(lambda m: "$" if m[0] == "$$" else env.get(m[1], m[0]), text)


_UNITS = {"": 1, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30}


def quantity(text: str | int) -> float:
    """A Kubernetes quantity ("500m", "64Mi", "1")."""
    match = re.fullmatch(r"([0-9.]+)([A-Za-z]*)", str(text))
    if match is None or match[2] not in _UNITS:
        raise NotEmulated(f"quantity {text}")
    return float(match[1]) * _UNITS[match[2]]


def resources(spec: Spec, where: str) -> list[str]:
    """Docker's flags for kubelet's cgroup settings: the limits, and a CPU request as
    cpu.shares. A memory request is the scheduler's alone (kubelet sets nothing for it)."""
    only(spec, {"requests", "limits"}, f"{where} resources")
    requests, limits = spec.get("requests", {}), spec.get("limits", {})
    only(requests, {"cpu", "memory"}, f"{where} requests")
    only(limits, {"cpu", "memory"}, f"{where} limits")
    flags = []
    if "cpu" in requests:
        flags.append(f"--cpu-shares={max(2, int(quantity(requests['cpu']) * 1024))}")
    if "memory" in limits:
        flags.append(f"--memory={int(quantity(limits['memory']))}")
    if "cpu" in limits:
        flags.append(f"--cpus={quantity(limits['cpu'])}")
    return flags
