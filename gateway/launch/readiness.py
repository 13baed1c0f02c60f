"""What `saxgw up` checks before it starts and tells once it is up.

busy = busy_ports([("127.0.0.1", 8888, "Envoy's public port")])  # [] when all are free
models = restored_models("127.0.0.1:50051", "/sax/test")    # [(id, active, wanted, load error)]
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Iterable

import grpc
from saxgateway.v1 import gateway_pb2, gateway_pb2_grpc


def busy_ports(wanted: Iterable[tuple[str, int, str]]) -> list[tuple[int, str]]:
    """The (port, role) pairs of ``wanted`` (host, port, role) that another process holds."""
    busy = []
    for host, port, role in wanted:
        if port == 0:
            continue
        with socket.socket() as probe:
            # As servers bind: a port in TIME_WAIT is free, one with a listener is not.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((host, port))
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE:
                    raise
                busy.append((port, role))
    return busy


# `saxgw up` asks between two ticks of its supervisor, so a gateway that hangs must not hold
# up the restart of another child for long; a healthy one answers in milliseconds.
RESTORED_TIMEOUT_S = 1.0


def restored_models(gateway: str, cell: str) -> list[tuple[str, int, int, str]] | None:
    """(model ID, active replicas, requested replicas, why it failed to load or "") of every
    model published in ``cell``, asked of a gateway process's own gRPC port; None if it does
    not answer (ask again: no answer is not "no models"). Not through Envoy: with API keys or
    JWTs configured Envoy refuses a caller without one (and ListModels may be reserved for
    admins), and `saxgw up` holds no credential of its own. ListModels does not say why a
    model failed to load; GetModel, asked of the models no replica serves, does."""
    request = gateway_pb2.ListModelsRequest(sax_cell=cell)
    with grpc.insecure_channel(gateway) as channel:
        try:
            stub = gateway_pb2_grpc.SaxGatewayStub(channel)
            reply = stub.ListModels(request, timeout=RESTORED_TIMEOUT_S)
            models = []
            for m in reply.models:
                error = ""
                if m.active_replicas < min(m.max_replicas, 1):
                    one = gateway_pb2.GetModelRequest(model=m.model)
                    error = stub.GetModel(one, timeout=RESTORED_TIMEOUT_S).model.load_error
                models.append((m.model, m.active_replicas, m.max_replicas, error))
        except grpc.RpcError:
            return None
    return models
