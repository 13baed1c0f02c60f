"""The dependency floors of both Python distributions admit no protobuf or grpcio their
generated stubs refuse.

`pip install ./clients/python` next to protobuf 6.33.5 (inside the old `protobuf>=6.31` floor,
and `pip check` clean) failed at `import saxgateway_client` with "gencode 7.35.1 runtime 6.33.5":
the stubs check the runtime at import time. The sax-gateway wheel, which ships the same stubs
and Sax's (gen/saxml), kept `grpcio>=1.85`: installed beside grpcio 1.85.0 (`pip check` clean),
every `saxgw` command, `--help` too, died with "generated code ... depends on grpcio>=1.85.1".
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
#: Each distribution's pyproject.toml, and the generated stubs it imports: sax-gateway ships
#: gen/saxml and takes gen/saxgateway from sax-gateway-client, at its own version.
DISTRIBUTIONS = {
    "sax-gateway-client": (ROOT / "clients" / "python", [ROOT / "gen" / "saxgateway" / "v1"]),
    "sax-gateway": (ROOT, [ROOT / "gen" / "saxgateway" / "v1", ROOT / "gen" / "saxml"]),
}


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


def _floor(distribution: str, package: str) -> tuple[int, ...]:
    folder, _ = DISTRIBUTIONS[distribution]
    project = tomllib.loads((folder / "pyproject.toml").read_text())
    for requirement in project["project"]["dependencies"]:
        found = re.fullmatch(rf"{package}>=([0-9.]+),<[0-9.]+", requirement)
        if found:
            return _version(found.group(1))
    raise AssertionError(f"{distribution} has no {package}>=FLOOR,<CEILING requirement")


def _stubs(distribution: str, pattern: str) -> list[Path]:
    _, folders = DISTRIBUTIONS[distribution]
    stubs = sorted(stub for folder in folders for stub in folder.rglob(pattern))
    assert stubs, (distribution, pattern)
    return stubs


@pytest.mark.parametrize("distribution", sorted(DISTRIBUTIONS))
def test_protobuf_floor_is_the_gencode_version_of_every_stub(distribution: str) -> None:
    floor = _floor(distribution, "protobuf")
    for stub in _stubs(distribution, "*_pb2.py"):
        found = re.search(r"^# Protobuf Python Version: ([0-9.]+)$", stub.read_text(), re.M)
        assert found, stub
        gencode = _version(found.group(1))
        # The runtime must have the gencode's major version and be no older than it.
        assert floor[0] == gencode[0] and floor >= gencode, (stub.name, floor, gencode)


@pytest.mark.parametrize("distribution", sorted(DISTRIBUTIONS))
def test_grpcio_floor_is_the_version_the_stubs_were_made_for(distribution: str) -> None:
    floor = _floor(distribution, "grpcio")
    for stub in _stubs(distribution, "*_pb2_grpc.py"):
        found = re.search(r"^GRPC_GENERATED_VERSION = '([0-9.]+)'$", stub.read_text(), re.M)
        assert found, stub
        assert floor >= _version(found.group(1)), (stub.name, floor)


@pytest.mark.parametrize("distribution", sorted(DISTRIBUTIONS))
def test_every_folder_of_typed_stubs_is_marked_typed(distribution: str) -> None:
    # The sax-gateway wheel shipped saxml/protobuf/*.pyi without a py.typed marker (PEP 561),
    # so mypy skipped them: `from saxml.protobuf import lm_pb2` in a user's code failed
    # mypy --strict with import-untyped, every message Any. saxml.protobuf is a namespace
    # package, so its marker is its own; saxgateway.v1's is its regular parent's.
    _, folders = DISTRIBUTIONS[distribution]
    for folder in {stub.parent for f in folders for stub in f.rglob("*.pyi")}:
        marked = folder
        while not (marked / "py.typed").exists() and (marked / "__init__.py").exists():
            marked = marked.parent
        assert (marked / "py.typed").exists(), folder
