"""What the benchmarks ran on: CPU, memory, kernel, and the versions of every moving part."""

from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

from gateway.launch.envoy import envoy_binary


def _first_line(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except OSError:
        return "unavailable"
    return ((out.stdout or out.stderr).strip().splitlines() or ["unavailable"])[0]


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _memory_gb() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return round(int(line.split()[1]) / 1e6, 1)
    return 0.0


def describe() -> dict[str, Any]:
    packages = ("grpcio", "protobuf", "fastapi", "uvicorn", "httptools", "uvloop", "py-spy")
    versions = {}
    for name in packages:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "memory_gb": _memory_gb(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "envoy": _first_line([str(envoy_binary()), "--version"]).split("version: ")[-1],
        "wrk": _first_line(["wrk", "--version"]),
        "h2load": _first_line(["h2load", "--version"]),
        "packages": versions,
    }
