"""The name of Envoy's span of a request: the gRPC method it ran, as the gateway names its own
span of the call (``saxgateway.v1.SaxGateway/Generate``), so that a trace viewer lists and
filters Envoy's spans by method. Envoy named every span ``ingress``, the same for a
/generate and a /v1/chat/completions.

Envoy reads the name when the span ends, once the transcoder has turned an HTTP request's
path into its gRPC method. Only the methods the gateways serve name a span, and the files
Envoy serves itself (``/openapi.json``): any other path (one that names no method, or a
gRPC call to a method that does not exist) gives its HTTP method alone, as OpenTelemetry's
HTTP conventions name a request of no known route, so that a scanner's paths do not become
span names, which trace stores index by name. A CEL map (no substring function in Envoy's
CEL) gives each method's path its name without the leading slash.
"""

from __future__ import annotations

from pathlib import Path

from google.protobuf import descriptor_pb2
from grpc_health.v1 import health_pb2

from gateway.launch._methods import ENVOY_GET_PATHS
from gateway.launch.direct._listener import GATEWAY_PATH
from gateway.launch.direct._resources import SAX_PATH

_HEALTH = health_pb2.DESCRIPTOR.services_by_name["Health"]
#: The services of this API that no descriptor of it holds (grpcio's health and reflection).
#: Health's methods from its own descriptor: written out, they lacked List, named POST.
_OTHER_METHODS = (
    *(f"{_HEALTH.full_name}/{method.name}" for method in _HEALTH.methods),
    "grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
    "grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
)
_PATH = "request.url_path"


def _methods(descriptor: Path) -> list[str]:
    files = descriptor_pb2.FileDescriptorSet.FromString(descriptor.read_bytes())
    ours = [
        f"{f.package}.{s.name}/{m.name}" for f in files.file for s in f.service for m in s.method
    ]
    return [*ours, *_OTHER_METHODS]


def span_operation(descriptor: Path) -> str:
    """The ``operation`` of the HTTP connection manager's tracing: a CEL formatter naming the
    span after the method in ``descriptor`` (a FileDescriptorSet) the request ran, or the file
    Envoy served (its path; Envoy's CEL joins no strings, so not its method too)."""
    names = [f"'/{m}': '{m}'" for m in _methods(descriptor)]
    names += [f"'{p}': '{p}'" for p in (*ENVOY_GET_PATHS, "/healthz")]
    # A direct call (docs/operations.md "Direct mode") ran Generate: its route rewrote the
    # path to the model server's method, and its span was named POST.
    names.append(f"'{SAX_PATH}': '{GATEWAY_PATH.removeprefix('/')}'")
    by_path = f"{{{', '.join(names)}}}"
    return f"%CEL({_PATH} in {by_path} ? {by_path}[{_PATH}] : request.method)%"
