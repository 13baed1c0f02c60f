"""`saxgw up` run to its end as a process, on free ports of its own: for the refusals and
failures of its start."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from gateway.launch.processes import free_port


def run_up(
    sax_root: Path, *flags: str, wrapper: Sequence[str] = ()
) -> subprocess.CompletedProcess[str]:
    """`saxgw up` on ``sax_root`` (and its fs root beside it) on free ports of its own, run
    through ``wrapper`` (such as ``prlimit --nofile=16:16``) if given."""
    ports = [f"--port={free_port()}", f"--envoy-admin-port={free_port()}"]
    ports += [f"--gateway-ports={free_port()}", f"--ops-port={free_port()}"]
    ports += [f"--admin-port={free_port()}", f"--model-server-ports={free_port()}"]
    roots = [f"--sax-root={sax_root}", f"--fs-root={sax_root.parent / 'fs-root'}"]
    command = [sys.executable, "-m", "gateway.cli", "up", "--log-format=text", *ports, *roots]
    # A TMPDIR of its own: the fault tests SIGKILL stacks, and an up that finds the stack
    # directory such a stack left logs a line of its own removing it before "started cell".
    tmp = sax_root.parent / "tmp"
    tmp.mkdir(exist_ok=True)
    env = {**os.environ, "TMPDIR": str(tmp)}
    run = subprocess.run
    return run([*wrapper, *command, *flags], capture_output=True, text=True, timeout=120, env=env)
