"""scripts/buf-check catches what `make test` must reject: breaking changes, lint, format."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BUF = ROOT / "node_modules" / ".bin" / "buf"
GATEWAY = "proto/saxgateway/v1/gateway.proto"
ADMIN = "proto/saxml/protobuf/admin.proto"

pytestmark = pytest.mark.skipif(not BUF.exists(), reason="buf not installed: make contract")


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A copy of buf.yaml and proto/ (baseline included) to break."""
    shutil.copy(ROOT / "buf.yaml", tmp_path / "buf.yaml")
    shutil.copytree(ROOT / "proto", tmp_path / "proto")
    return tmp_path


def _check(tree: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [ROOT / "scripts" / "buf-check", tree], capture_output=True, text=True, timeout=60
    )


def _edit(tree: Path, rel: str, old: str, new: str) -> None:
    path = tree / rel
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


def test_buf_check_passes_on_the_committed_protos(tree: Path) -> None:
    result = _check(tree)
    assert result.returncode == 0, result.stdout + result.stderr


# Each edit buf-check must reject, and the line of its report that says why.
_BREAKS = {
    "changed field type": (
        GATEWAY,
        "  string query = 2 [",
        "  bytes query = 2 [",
        'Field "2" with name "query" on message "GenerateRequest" changed type',
    ),
    "removed rpc": (
        GATEWAY,
        "  rpc GetInfo(GetInfoRequest) returns",
        "  rpc Info(GetInfoRequest) returns",
        'Previously present RPC "GetInfo" on service "SaxGateway" was deleted',
    ),
    "renumbered Sax wire field": (
        ADMIN,
        "  string location = 1;",
        "  string location = 3;",
        'Previously present field "1" with name "location" on message "Location"',
    ),
    "lint": (
        GATEWAY,
        "message GetInfoRequest {}",
        "message GetInfoRequest {}\n\n// A bad name.\nmessage bad_name {}",
        'Message name "bad_name" should be PascalCase',
    ),
    "format": (
        GATEWAY,
        "message GetInfoRequest {}",
        "message   GetInfoRequest {}",
        "-message   GetInfoRequest {}",
    ),
}


@pytest.mark.parametrize("case", list(_BREAKS))
def test_buf_check_fails(tree: Path, case: str) -> None:
    rel, old, new, reason = _BREAKS[case]
    _edit(tree, rel, old, new)
    result = _check(tree)
    assert result.returncode != 0
    assert reason in result.stdout
