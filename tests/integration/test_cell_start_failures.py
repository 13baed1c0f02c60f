"""A cell that cannot start (its storage refuses it, its port is taken) says why in a line,
not a traceback: the admin server on its own, and the embedded cell (what `saxgw up` runs)
around it."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path


def _run(module: str, sax_root: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", module, f"--sax-root={sax_root}", *flags]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


def test_an_admin_whose_sax_root_refuses_it_exits_with_one_line(tmp_path: Path) -> None:
    # It ended in a StorageError traceback, and the embedded cell in a RuntimeError one.
    (tmp_path / "sax").write_bytes(b"")  # a file where the cells' directory should be
    admin = _run("gateway.cell.admin", tmp_path, "--port=0")
    assert admin.returncode == 1
    config = tmp_path / "sax" / "test" / "config.proto"
    why = f"writing {config} failed: [Errno 20] Not a directory: '{tmp_path}/sax/test'"
    assert admin.stderr.splitlines()[-1] == f"python -m gateway.cell.admin: could not start: {why}"
    assert "Traceback" not in admin.stderr

    cell = _run("gateway.cell", tmp_path, "--admin-port=0", "--model-servers=0")
    assert cell.returncode == 1
    assert cell.stderr.splitlines()[-1] == (
        "python -m gateway.cell: admin#1 exited before it came to listen"
    )
    assert "Traceback" not in cell.stderr


def test_an_admin_whose_port_is_taken_exits_with_one_line(tmp_path: Path) -> None:
    # It ended in an UnavailableError traceback, as if a call had failed.
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        admin = _run("gateway.cell.admin", tmp_path, f"--port={port}")
        cell = _run("gateway.cell", tmp_path, f"--admin-port={port}", "--model-servers=0")
    assert admin.returncode == 1
    assert admin.stderr.splitlines()[-1].startswith(
        f"python -m gateway.cell.admin: cannot listen on 127.0.0.1:{port} (is another process "
        "using it? choose another port)"
    )
    assert "Traceback" not in admin.stderr
    assert cell.returncode == 1
    assert "Traceback" not in cell.stderr
