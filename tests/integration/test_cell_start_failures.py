"""A cell that cannot start because of its storage says why in a line, not a traceback: the
admin server on its own, and the embedded cell (what `saxgw up` runs) around it."""

from __future__ import annotations

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
