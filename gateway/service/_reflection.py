"""Server reflection as grpcurl, Postman and Evans expect it: v1 beside v1alpha, and every
symbol (services, methods, messages, enums) resolvable.

grpcio-reflection only ships v1alpha, and its lookup misses methods: upb's descriptor pool
finds the file of a service or a message but not of ``Service.Method``, which is exactly what
``grpcurl describe saxgateway.v1.SaxGateway.Generate`` asks for. Nor does it ship v1's
file, so v1 is described from v1alpha's under v1's names: grpcui and Evans describe every
listed service at start, and one that does not resolve stops them.

And the files it serves are the released ones (``documented.binpb`` here, a link to scripts/gen's
copy of release/saxgateway-v1.binpb), not what the generated modules hold: those have neither
comments nor ``json_name``, so ``grpcurl describe`` showed no documentation and grpcurl
printed ``model_path`` where the released protoset prints ``modelPath``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from functools import cache
from importlib import resources

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool
from google.protobuf.descriptor import FileDescriptor
from grpc_reflection.v1alpha import reflection, reflection_pb2, reflection_pb2_grpc

from gateway.common.rpc import add_servicer

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


# The runtime's own descriptor.proto stays: the released copy is grpc_tools' (another
# protobuf release), and a client's linker may hold yet another.
_RUNTIME_ONLY = frozenset({"google/protobuf/descriptor.proto"})


@cache
def _documented() -> Mapping[str, descriptor_pb2.FileDescriptorProto]:
    """The released files, by name, with their comments and JSON names."""
    data = (resources.files("gateway.service") / "documented.binpb").read_bytes()
    files = descriptor_pb2.FileDescriptorSet.FromString(data).file
    return {f.name: f for f in files if f.name not in _RUNTIME_ONLY}


class _Documented:
    """A file as reflection serves it: the released copy where there is one."""

    def __init__(self, file: FileDescriptor) -> None:
        self._file = file
        self.name: str = file.name

    @property
    def dependencies(self) -> list[_Documented]:
        return [_Documented(dependency) for dependency in self._file.dependencies]

    def CopyToProto(self, proto: descriptor_pb2.FileDescriptorProto) -> None:
        released = _documented().get(self.name)
        if released is None:
            self._file.CopyToProto(proto)
        else:
            proto.CopyFrom(released)


class _MethodAwarePool:
    """The default pool, where a method's full name finds the file of its service, and an
    enum value named in its enum's scope (``grpc.health.v1.HealthCheckResponse.ServingStatus.
    SERVING``, as grpcurl and other clients built on Go's protoreflect name it; protobuf's own
    name, a sibling of the enum, the pool finds) the file of its enum; and whose files are
    served as released (`_Documented`)."""

    def __init__(self, pool: descriptor_pool.DescriptorPool) -> None:
        self._pool = pool

    def FindFileByName(self, name: str) -> _Documented:
        return _Documented(self._pool.FindFileByName(name))

    def FindFileContainingSymbol(self, name: str) -> _Documented:
        try:
            return _Documented(self._pool.FindFileContainingSymbol(name))
        except KeyError:
            scope, _, member = name.rpartition(".")
            if not scope:
                raise
            return _Documented(self._file_of_member(scope, member))

    def _file_of_member(self, scope: str, member: str) -> FileDescriptor:
        """The file of the method or enum value ``member`` of ``scope``."""
        try:
            service = self._pool.FindServiceByName(scope)
        except KeyError:
            pass
        else:
            if member in service.methods_by_name:
                return service.file
        try:
            enum = self._pool.FindEnumTypeByName(scope)
        except KeyError:
            pass
        else:
            if member in enum.values_by_name:
                return enum.file
        raise KeyError(f"{scope}.{member}")

    def __getattr__(self, name: str) -> object:
        return getattr(self._pool, name)


def enable_reflection(server: grpc.aio.Server, service_names: Iterable[str]) -> None:
    """Serves v1 and v1alpha reflection for ``service_names`` (plus reflection itself)."""
    _add_v1_file(descriptor_pool.Default())
    servicer = reflection.aio.ReflectionServicer(
        (*service_names, *SERVICE_NAMES), pool=_MethodAwarePool(descriptor_pool.Default())
    )
    add_servicer(server, reflection_pb2_grpc.add_ServerReflectionServicer_to_server, servicer)
    v1 = grpc.stream_stream_rpc_method_handler(
        servicer.ServerReflectionInfo,
        request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
        response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString,
    )
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(V1_SERVICE, {"ServerReflectionInfo": v1}),)
    )
