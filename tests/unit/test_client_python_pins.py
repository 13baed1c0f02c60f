"""clients/python's dependency floors admit no protobuf or grpcio its generated stubs refuse.

`pip install ./clients/python` next to protobuf 6.33.5 (inside the old `protobuf>=6.31` floor,
and `pip check` clean) failed at `import saxgateway_client` with "gencode 7.35.1 runtime 6.33.5":
the stubs check the runtime at import time.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
GEN = ROOT / "gen" / "saxgateway" / "v1"


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


def _floors() -> dict[str, tuple[int, ...]]:
    project = tomllib.loads((ROOT / "clients" / "python" / "pyproject.toml").read_text())
    floors = {}
    for requirement in project["project"]["dependencies"]:
        name, floor = re.fullmatch(r"([a-z-]+)>=([0-9.]+),<[0-9.]+", requirement).groups()  # type: ignore[union-attr]
        floors[name] = _version(floor)
    return floors


def test_protobuf_floor_is_the_gencode_version_of_every_stub() -> None:
    floor = _floors()["protobuf"]
    for stub in sorted(GEN.glob("*_pb2.py")):
        found = re.search(r"^# Protobuf Python Version: ([0-9.]+)$", stub.read_text(), re.M)
        assert found, stub
        gencode = _version(found.group(1))
        # The runtime must have the gencode's major version and be no older than it.
        assert floor[0] == gencode[0] and floor >= gencode, (stub.name, floor, gencode)


def test_grpcio_floor_is_the_version_the_stubs_were_made_for() -> None:
    floor = _floors()["grpcio"]
    for stub in sorted(GEN.glob("*_pb2_grpc.py")):
        found = re.search(r"^GRPC_GENERATED_VERSION = '([0-9.]+)'$", stub.read_text(), re.M)
        assert found, stub
        assert floor >= _version(found.group(1)), (stub.name, floor)
