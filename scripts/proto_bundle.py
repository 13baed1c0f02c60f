#!/usr/bin/env python3
"""The proto release bundle: the public API with every proto it imports, so that a client in
any language resolves it with nothing else installed.

Writes, into OUT_DIR (scripts/gen passes ROOT/release):
  proto/                        saxgateway/v1/gateway.proto and saxgateway/v1/openai.proto
                                (the OpenAIGateway service the stack also serves over gRPC),
                                each google/ proto they import (transitively), and
                                google/rpc/error_details.proto (the BadRequest in error details)
  saxgateway-v1.binpb           the same files as one FileDescriptorSet, comments included
  saxgateway-v1-proto.tar.gz    proto/ as one reproducible download

    scripts/proto_bundle.py OUT_DIR
"""

from __future__ import annotations

import gzip
import io
import shutil
import sys
import tarfile
import tempfile
from importlib import resources
from pathlib import Path

import google.api
from google.protobuf import descriptor_pb2
from grpc_tools import protoc  # type: ignore[import-untyped]

ROOT = Path(__file__).resolve().parent.parent
ENTRY = (
    "saxgateway/v1/gateway.proto",
    "saxgateway/v1/openai.proto",
    "google/rpc/error_details.proto",
)
NAME = "saxgateway-v1"


def _include_dirs() -> list[Path]:
    """Where each proto comes from: ours, googleapis-common-protos, protobuf's own."""
    googleapis = Path(google.api.__path__[0]).parent.parent
    well_known = Path(str(resources.files("grpc_tools") / "_proto"))
    return [ROOT / "proto", googleapis, well_known]


def _descriptor_set(dirs: list[Path]) -> descriptor_pb2.FileDescriptorSet:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "set.binpb"
        args = ["protoc", *(f"-I{d}" for d in dirs), "--include_imports", "--include_source_info"]
        if protoc.main([*args, f"--descriptor_set_out={out}", *ENTRY]) != 0:
            raise SystemExit("protoc failed")
        return descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())


def _tarball(tree: Path, names: list[str]) -> bytes:
    """``names`` under ``tree`` as a tar.gz whose bytes depend on the contents only."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in names:
            data = (tree / name).read_bytes()
            info = tarfile.TarInfo(f"{NAME}-proto/{name}")
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tar.addfile(info, io.BytesIO(data))
    packed = io.BytesIO()
    with gzip.GzipFile(fileobj=packed, mode="wb", mtime=0, filename="") as gz:
        gz.write(raw.getvalue())
    return packed.getvalue()


def main(out: Path) -> None:
    dirs = _include_dirs()
    fds = _descriptor_set(dirs)
    names = sorted(f.name for f in fds.file)
    shutil.rmtree(out / "proto", ignore_errors=True)
    for name in names:
        source = next(d / name for d in dirs if (d / name).is_file())
        target = out / "proto" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
    (out / f"{NAME}.binpb").write_bytes(fds.SerializeToString(deterministic=True))
    (out / f"{NAME}-proto.tar.gz").write_bytes(_tarball(out / "proto", names))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    main(Path(sys.argv[1]))
