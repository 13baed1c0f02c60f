"""release/: the proto bundle resolves on its own, and its three forms hold the same files."""

from __future__ import annotations

import io
import subprocess
import sys
import tarfile
from pathlib import Path

from google.protobuf import descriptor_pb2
from grpc_tools import protoc  # type: ignore[import-untyped]

RELEASE = Path(__file__).resolve().parents[2] / "release"
PROTOS = sorted(str(p.relative_to(RELEASE / "proto")) for p in RELEASE.rglob("proto/**/*.proto"))


def test_gateway_proto_compiles_with_the_bundle_alone(tmp_path: Path) -> None:
    # protoc.main adds no include path of its own: the bundle must hold every import,
    # google/protobuf's included.
    out = tmp_path / "set.binpb"
    args = ["protoc", f"-I{RELEASE / 'proto'}", "--include_imports", f"--descriptor_set_out={out}"]
    assert protoc.main([*args, "saxgateway/v1/gateway.proto"]) == 0
    names = {f.name for f in descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes()).file}
    assert names == set(PROTOS) - {"google/rpc/error_details.proto"}


def test_descriptor_set_holds_the_bundle_with_comments() -> None:
    fds = descriptor_pb2.FileDescriptorSet.FromString(
        (RELEASE / "saxgateway-v1.binpb").read_bytes()
    )
    assert sorted(f.name for f in fds.file) == PROTOS
    gateway = next(f for f in fds.file if f.name == "saxgateway/v1/gateway.proto")
    assert gateway.service[0].name == "SaxGateway"
    assert any(
        "SaxGateway reaches" in c.leading_comments for c in gateway.source_code_info.location
    )


def _content(tar: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    file = tar.extractfile(member)
    assert file is not None, f"{member.name} is not a regular file"
    return file.read()


def test_tarball_holds_the_same_files() -> None:
    data = (RELEASE / "saxgateway-v1-proto.tar.gz").read_bytes()
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        files = {
            m.name.removeprefix("saxgateway-v1-proto/"): _content(tar, m) for m in tar.getmembers()
        }
    assert sorted(files) == PROTOS
    assert all(files[name] == (RELEASE / "proto" / name).read_bytes() for name in PROTOS)


def test_python_stubs_from_the_bundle_import(tmp_path: Path) -> None:
    # docs/clients.md's Python steps: compile only our file; google.* come from the wheels.
    args = ["protoc", f"-I{RELEASE / 'proto'}", f"--python_out={tmp_path}"]
    args += [f"--grpc_python_out={tmp_path}", "saxgateway/v1/gateway.proto"]
    assert protoc.main(args) == 0
    script = (
        "import sys\n"
        "from saxgateway.v1 import gateway_pb2, gateway_pb2_grpc\n"
        "assert gateway_pb2.__file__.startswith(sys.argv[1]), gateway_pb2.__file__\n"
        "request = gateway_pb2.GenerateRequest(model='/sax/test/lm2b', query='hi')\n"
        "request.extra_inputs['temperature'].number_value = 0.5\n"
        "print(gateway_pb2_grpc.SaxGatewayStub.__name__, request.ByteSize())\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)],
        env={"PYTHONPATH": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("SaxGatewayStub ")
