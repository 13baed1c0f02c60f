"""Server reflection as grpcurl, Postman and Evans expect it: v1 beside v1alpha, and every
symbol (services, methods, messages, enums) resolvable.

grpcio-reflection only ships v1alpha, and its lookup misses methods: upb's descriptor pool
finds the file of a service or a message but not of ``Service.Method``, which is exactly what
``grpcurl describe saxgateway.v1.SaxGateway.Generate`` asks for. Nor does it ship v1's
file, so v1 is described from v1alpha's under v1's names: grpcui and Evans describe every
listed service at start, and one that does not resolve stops them.
"""

from __future__ import annotations

from collections.abc import Iterable

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool
from google.protobuf.descriptor import FileDescriptor
from grpc_reflection.v1alpha import reflection, reflection_pb2, reflection_pb2_grpc

V1_SERVICE = "grpc.reflection.v1.ServerReflection"
"""v1 is v1alpha under a new package name: same messages and field numbers on the wire."""
SERVICE_NAMES = (V1_SERVICE, reflection.SERVICE_NAME)
_V1_FILE = "grpc/reflection/v1/reflection.proto"
_V1ALPHA, _V1 = "grpc.reflection.v1alpha", "grpc.reflection.v1"


def _add_v1_file(pool: descriptor_pool.DescriptorPool) -> None:
    """Adds v1's reflection.proto, v1alpha's messages and service renamed, unless present."""
    try:
        pool.FindFileByName(_V1_FILE)
        return
    except KeyError:
        pass
    proto = descriptor_pb2.FileDescriptorProto()
    reflection_pb2.DESCRIPTOR.CopyToProto(proto)
    proto.name, proto.package = _V1_FILE, _V1
    proto.ClearField("options")  # v1alpha's java_package and the like name v1alpha
    for message in proto.message_type:
        for field in message.field:
            if field.HasField("type_name"):
                field.type_name = field.type_name.replace(f".{_V1ALPHA}.", f".{_V1}.")
    for method in proto.service[0].method:
        method.input_type = method.input_type.replace(f".{_V1ALPHA}.", f".{_V1}.")
        method.output_type = method.output_type.replace(f".{_V1ALPHA}.", f".{_V1}.")
    pool.Add(proto)


class _MethodAwarePool:
    """The default pool, where a method's full name finds the file of its service."""

    def __init__(self, pool: descriptor_pool.DescriptorPool) -> None:
        self._pool = pool

    def FindFileContainingSymbol(self, name: str) -> FileDescriptor:
        try:
            return self._pool.FindFileContainingSymbol(name)
        except KeyError:
            service, _, method = name.rpartition(".")
            if not service or method not in self._pool.FindServiceByName(service).methods_by_name:
                raise
            return self._pool.FindFileContainingSymbol(service)

    def __getattr__(self, name: str) -> object:
        return getattr(self._pool, name)


def enable_reflection(server: grpc.aio.Server, service_names: Iterable[str]) -> None:
    """Serves v1 and v1alpha reflection for ``service_names`` (plus reflection itself)."""
    _add_v1_file(descriptor_pool.Default())
    servicer = reflection.aio.ReflectionServicer(
        (*service_names, *SERVICE_NAMES), pool=_MethodAwarePool(descriptor_pool.Default())
    )
    reflection_pb2_grpc.add_ServerReflectionServicer_to_server(servicer, server)
    v1 = grpc.stream_stream_rpc_method_handler(
        servicer.ServerReflectionInfo,
        request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
        response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString,
    )
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(V1_SERVICE, {"ServerReflectionInfo": v1}),)
    )
