"""release/: the proto bundle resolves on its own, and its three forms hold the same files."""

from __future__ import annotations

import io
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from google.protobuf import descriptor_pb2
from grpc_tools import protoc  # type: ignore[import-untyped]
from saxgateway.v1 import gateway_pb2, openai_pb2

ROOT = Path(__file__).resolve().parents[2]
RELEASE = ROOT / "release"
BUF = ROOT / "node_modules" / ".bin" / "buf"
PROTOS = sorted(str(p.relative_to(RELEASE / "proto")) for p in RELEASE.rglob("proto/**/*.proto"))


def _compiled(tmp_path: Path, *files: str) -> descriptor_pb2.FileDescriptorSet:
    """``files`` compiled by protoc with the bundle as the only include path (protoc.main adds
    none of its own: the bundle must hold every import, google/protobuf's included)."""
    out = tmp_path / "set.binpb"
    args = ["protoc", f"-I{RELEASE / 'proto'}", "--include_imports", f"--descriptor_set_out={out}"]
    assert protoc.main([*args, *files]) == 0
    return descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())


def test_gateway_proto_compiles_with_the_bundle_alone(tmp_path: Path) -> None:
    names = {f.name for f in _compiled(tmp_path, "saxgateway/v1/gateway.proto").file}
    assert names == set(PROTOS) - {
        "google/rpc/error_details.proto",
        "saxgateway/v1/openai.proto",
        "google/api/httpbody.proto",
    }


def test_openai_proto_compiles_with_the_bundle_alone(tmp_path: Path) -> None:
    # The stack serves saxgateway.v1.OpenAIGateway over gRPC (and reflection), but the bundle
    # lacked openai.proto and the google/api/httpbody.proto it imports.
    fds = _compiled(tmp_path, "saxgateway/v1/openai.proto")
    openai = next(f for f in fds.file if f.name == "saxgateway/v1/openai.proto")
    assert [s.name for s in openai.service] == ["OpenAIGateway"]
    assert {f.name for f in fds.file} == {
        "saxgateway/v1/openai.proto",
        "google/api/httpbody.proto",
        "google/api/annotations.proto",
        "google/api/http.proto",
        "google/protobuf/any.proto",
        "google/protobuf/descriptor.proto",
    }


def test_the_bundle_holds_every_service_the_stack_serves() -> None:
    fds = descriptor_pb2.FileDescriptorSet.FromString(
        (RELEASE / "saxgateway-v1.binpb").read_bytes()
    )
    services = {f"{f.package}.{s.name}" for f in fds.file for s in f.service}
    assert services == {
        f"{s.file.package}.{s.name}"
        for module in (gateway_pb2, openai_pb2)
        for s in module.DESCRIPTOR.services_by_name.values()
    }
    assert services == {"saxgateway.v1.SaxGateway", "saxgateway.v1.OpenAIGateway"}


@pytest.mark.skipif(not BUF.exists(), reason="buf not installed: npm ci (make contract)")
def test_the_bundle_builds_with_buf_alone(tmp_path: Path) -> None:
    # buf reads release/proto as a module of its own (no buf.yaml): every file, both services.
    out = tmp_path / "image.binpb"
    result = subprocess.run(
        [BUF, "build", RELEASE / "proto", "-o", out],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    image = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())
    assert sorted(f.name for f in image.file) == PROTOS
    services = {f"{f.package}.{s.name}" for f in image.file for s in f.service}
    assert services == {"saxgateway.v1.SaxGateway", "saxgateway.v1.OpenAIGateway"}


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


CLIENTS_MD = Path(__file__).resolve().parents[2] / "docs" / "clients.md"
_TYPED_USE = """\
import grpc
from saxgateway.v1 import gateway_pb2, gateway_pb2_grpc


def version(channel: grpc.Channel) -> str:
    stub = gateway_pb2_grpc.SaxGatewayStub(channel)
    reply: gateway_pb2.GetInfoResponse = stub.GetInfo(gateway_pb2.GetInfoRequest(), timeout=5)
    return reply.version
"""


def _blocks(language: str) -> list[str]:
    text = CLIENTS_MD.read_text()
    return [block.split("```")[0] for block in text.split(f"```{language}\n")[1:]]


def _mypy_strict_on_stubs(tmp_path: Path, command: str) -> subprocess.CompletedProcess[str]:
    """Runs docs/clients.md's protoc ``command`` in ``tmp_path``, then mypy --strict on a
    program using the stubs it wrote, with the page's mypy.ini."""
    tmp_path.mkdir()
    command = " ".join(command.replace("\\\n", " ").split())
    command = command.replace("python -m", f"{sys.executable} -m")
    command = command.replace("-I release/proto", f"-I {RELEASE / 'proto'}")
    bin_dir = str(Path(sys.executable).parent)  # mypy-protobuf's protoc plugins
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin"}
    made = subprocess.run(command, shell=True, cwd=tmp_path, env=env, capture_output=True)
    assert made.returncode == 0, made.stderr
    assert (tmp_path / "saxgateway" / "v1" / "gateway_pb2_grpc.py").exists()
    [ini] = [block for block in _blocks("ini") if "google.rpc" in block]
    (tmp_path / "mypy.ini").write_text(ini)
    (tmp_path / "use.py").write_text(_TYPED_USE)
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--cache-dir",
            str(tmp_path / "cache"),
            "use.py",
        ],
        cwd=tmp_path,
        env={**env, "PYTHONPATH": ""},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_typed_python_stubs_pass_mypy_strict(tmp_path: Path) -> None:
    # docs/clients.md gave only --grpc_python_out stubs, which mypy --strict refuses at the
    # first call (no-untyped-call): a typed project could not use them as told.
    start = "python -m grpc_tools.protoc"
    commands = [block[block.index(start) :] for block in _blocks("sh") if start in block]
    [untyped] = [c for c in commands if "--pyi_out" in c]
    [typed] = [c for c in commands if "--mypy_grpc_out" in c]
    refused = _mypy_strict_on_stubs(tmp_path / "untyped", untyped)
    assert "untyped function" in refused.stdout, refused.stdout  # the stubs mypy checked
    checked = _mypy_strict_on_stubs(tmp_path / "typed", typed)
    assert checked.returncode == 0, checked.stdout + checked.stderr
