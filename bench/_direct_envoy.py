"""Design (b)'s ceiling: Envoy transcoding HTTP/JSON straight to a model server, no gateway.

BENCHMARKS.md names "Envoy routing data calls straight to model servers" as one way past the
Python hop's floor. This measures what that would cost before anyone builds it: one Envoy
whose transcoder maps ``POST /direct/generate`` onto Sax's own ``LMService.Generate`` (the
request body is Sax's ``GenerateRequest`` as JSON, ``{"model_key": ..., "text": ...}``) and
whose one cluster is the bench's model server; ``POST /direct/generate_stream`` maps onto
``GenerateStream`` as server-sent events, as the product's ``/generate_stream`` does. It has
the transcoder and the router only: no access log, CORS, cost header, health check or local
replies, and none of the gateway's work (keys, ACLs, quotas, metrics, error mapping,
failover, discovery). So it is a lower bound for
design (b), which would need some of that back as Envoy filters (our filters and access log
measured ~100-200 µs per request on top of the transcoder and router).

    python -m bench._direct_envoy --port P --admin-port A --model-server HOST:PORT --workdir D
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from google.api import annotations_pb2, http_pb2
from google.protobuf import descriptor_pb2
from google.protobuf.descriptor import FileDescriptor
from saxml.protobuf import lm_pb2

from gateway.launch.envoy import envoy_binary

ROUTE = "/direct/generate"
STREAM_ROUTE = "/direct/generate_stream"  # server-sent events, as the product's /generate_stream
SERVICE = "sax.server.lm.LMService"


def _with_deps(files: list[FileDescriptor]) -> list[FileDescriptor]:
    """``files`` and everything they import, each once, imports first (as Envoy reads them)."""
    seen: dict[str, FileDescriptor] = {}

    def visit(f: FileDescriptor) -> None:
        if f.name in seen:
            return
        for dep in f.dependencies:
            visit(dep)
        seen[f.name] = f

    for f in files:
        visit(f)
    return list(seen.values())


def descriptor_set() -> bytes:
    """Sax's lm.proto with two HTTP rules added, and its imports, as a FileDescriptorSet."""
    out = descriptor_pb2.FileDescriptorSet()
    for f in _with_deps([annotations_pb2.DESCRIPTOR, lm_pb2.DESCRIPTOR]):
        proto = out.file.add()
        f.CopyToProto(proto)
        if f is not lm_pb2.DESCRIPTOR:
            continue
        proto.dependency.append(annotations_pb2.DESCRIPTOR.name)
        service = next(s for s in proto.service if s.name == "LMService")
        for name, route in (("Generate", ROUTE), ("GenerateStream", STREAM_ROUTE)):
            method = next(m for m in service.method if m.name == name)
            method.options.Extensions[annotations_pb2.http].CopyFrom(  # type: ignore[index]
                http_pb2.HttpRule(post=route, body="*")
            )
    return out.SerializeToString()


def config(*, port: int, admin_port: int, model_server: str, descriptor: Path) -> dict[str, object]:
    host, server_port = model_server.rsplit(":", 1)
    endpoint = {"endpoint": {"address": _address(host, int(server_port))}}
    return {
        "admin": {"address": _address("127.0.0.1", admin_port)},
        "static_resources": {
            "listeners": [
                {
                    "name": "direct",
                    "address": _address("127.0.0.1", port),
                    "filter_chains": [{"filters": [_connection_manager(descriptor)]}],
                }
            ],
            "clusters": [
                {
                    "name": "modelserver",
                    "type": "STATIC",
                    "connect_timeout": "1s",
                    "typed_extension_protocol_options": {
                        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                            "@type": "type.googleapis.com/"
                            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                            "explicit_http_config": {"http2_protocol_options": {}},
                        }
                    },
                    "load_assignment": {
                        "cluster_name": "modelserver",
                        "endpoints": [{"lb_endpoints": [endpoint]}],
                    },
                }
            ],
        },
    }


def _address(host: str, port: int) -> dict[str, object]:
    return {"socket_address": {"address": host, "port_value": port}}


def _connection_manager(descriptor: Path) -> dict[str, object]:
    return {
        "name": "envoy.filters.network.http_connection_manager",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.network."
            "http_connection_manager.v3.HttpConnectionManager",
            "stat_prefix": "direct",
            "codec_type": "AUTO",
            "route_config": {
                "virtual_hosts": [
                    {
                        "name": "all",
                        "domains": ["*"],
                        "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "modelserver"}}],
                    }
                ]
            },
            "http_filters": [
                {
                    "name": "envoy.filters.http.grpc_json_transcoder",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.http."
                        "grpc_json_transcoder.v3.GrpcJsonTranscoder",
                        "proto_descriptor": str(descriptor),
                        "services": [SERVICE],
                        "print_options": {
                            "preserve_proto_field_names": True,
                            "stream_sse_style_delimited": True,
                        },
                        "convert_grpc_status": True,
                    },
                },
                {
                    "name": "envoy.filters.http.router",
                    "typed_config": {
                        "@type": "type.googleapis.com/"
                        "envoy.extensions.filters.http.router.v3.Router"
                    },
                },
            ],
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--admin-port", type=int, required=True)
    parser.add_argument("--model-server", required=True, help="HOST:PORT")
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--concurrency", type=int, default=1)
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    descriptor = args.workdir / "direct.binpb"
    descriptor.write_bytes(descriptor_set())
    cfg = config(
        port=args.port,
        admin_port=args.admin_port,
        model_server=args.model_server,
        descriptor=descriptor,
    )
    path = args.workdir / "direct-envoy.json"
    path.write_text(json.dumps(cfg))
    exec_envoy(path, args.concurrency)


def exec_envoy(config_path: Path, concurrency: int) -> None:
    """Becomes Envoy running ``config_path``: the bench reads this pid's CPU time, so Envoy
    must be this process."""
    binary = str(envoy_binary())
    os.execv(
        binary,
        [
            binary,
            "-c",
            str(config_path),
            "--log-level",
            "warn",
            "--concurrency",
            str(concurrency),
            "--disable-hot-restart",
        ],
    )


if __name__ == "__main__":
    main()
