"""Server reflection as grpcurl, Postman and Evans expect it: v1 beside v1alpha, and every
symbol (services, methods, messages, enums) resolvable.

grpcio-reflection only ships v1alpha, and its lookup misses methods: upb's descriptor pool
finds the file of a service or a message but not of ``Service.Method``, which is exactly what
``grpcurl describe saxgateway.v1.SaxGateway.Generate`` asks for.
"""

from __future__ import annotations

from collections.abc import Iterable

import grpc
from google.protobuf import descriptor_pool
from google.protobuf.descriptor import FileDescriptor
from grpc_reflection.v1alpha import reflection, reflection_pb2, reflection_pb2_grpc

V1_SERVICE = "grpc.reflection.v1.ServerReflection"
"""v1 is v1alpha under a new package name: same messages and field numbers on the wire."""
SERVICE_NAMES = (V1_SERVICE, reflection.SERVICE_NAME)


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
