"""What `saxgw up` tells once it is up: where the models restored from an earlier run stand,
asked of a gateway process's own gRPC port.

restored = RestoredModels("127.0.0.1:50051", "/sax/test", patience=90)
restored.poll()   # the models that serve or failed to load since the last poll (None: none);
                  # `final` once each did, or 90 s passed, with those that did neither
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import partial

import grpc
from saxgateway.v1 import gateway_pb2, gateway_pb2_grpc

from gateway.cli._listing import every_model

# `saxgw up` asks between two ticks of its supervisor, so a gateway that hangs must not hold
# up the restart of another child for long; a healthy one answers in milliseconds.
RESTORED_TIMEOUT_S = 1.0
#: GetModel calls a poll makes at most (each costs the gateway an admin List and WatchLoc).
#: Asked of every model no replica served, twice a second, 204 restored models the cell's
#: servers had no room for cost ~400 admin RPCs a second, 40% of a core in the gateway and a
#: third of one in the admin, for as long as `saxgw up` ran.
LOAD_ERRORS_PER_POLL = 8


@dataclass(frozen=True)
class Restored:
    """Where the models restored from an earlier run stand."""

    ready: list[tuple[str, int, int]]
    """(model ID, active replicas, requested replicas) of those that serve."""
    failed: list[tuple[str, str]]
    """(model ID, why it failed to load) of those that never will."""
    waiting: list[str]
    """Those that neither served nor failed within the patience: no model server took them
    (the cell's servers are full, or none serves their model path), or they still load."""
    final: bool = True
    """The last report: ``waiting`` is known; earlier ones name what was new since the last."""


@dataclass
class RestoredModels:
    """Follows the models a restarted cell restored until each serves or failed to load, or
    ``patience`` seconds have passed: a model no server can take stays published and does
    neither, and `saxgw up` asked after it for good. Each `poll` asks a gateway process's own
    gRPC port one ListModels and at most `LOAD_ERRORS_PER_POLL` GetModels (ListModels does
    not say why a model failed to load; GetModel does), however many models the cell holds.

    Not through Envoy: with API keys or JWTs configured Envoy refuses a caller without one
    (and ListModels may be reserved for admins), and `saxgw up` holds no credential; it
    holds the stack's token, which the gateway port then requires (``metadata``)."""

    gateway: str
    cell: str
    patience: float
    metadata: tuple[tuple[str, str], ...] = ()
    """Of every call: the stack's token, if it has one (gateway/common/stacktoken.py)."""
    started: float = field(default_factory=time.monotonic)
    _errors: dict[str, str] = field(default_factory=dict)
    _asked: dict[str, float] = field(default_factory=dict)
    _told: set[str] = field(default_factory=set)

    def poll(self, now: float | None = None) -> Restored | None:
        """The models that serve, and those that failed to load, since the last report; the
        final report once each did one or the other (or the patience ran out), with those
        that did neither. None: nothing new; poll again, also when the gateway does not
        answer (no answer is not "no models"). Each is told as it comes: one model that no
        server can take held back the news of all the others for the whole patience."""
        now = time.monotonic() if now is None else now
        with grpc.insecure_channel(self.gateway) as channel:
            stub = gateway_pb2_grpc.SaxGatewayStub(channel)
            try:
                listed = every_model(
                    partial(stub.ListModels, timeout=RESTORED_TIMEOUT_S, metadata=self.metadata),
                    self.cell,
                )
                models = listed.models
                unserved = [m.model for m in models if m.active_replicas < min(m.max_replicas, 1)]
                self._learn_load_errors(stub, unserved, now)
            except grpc.RpcError:
                return None
        waiting = [m for m in unserved if m not in self._errors]
        final = not waiting or now - self.started >= self.patience
        unplaced = set(unserved)
        ready = [
            (m.model, m.active_replicas, m.max_replicas)
            for m in models
            if m.model not in unplaced and m.model not in self._told
        ]
        failed = [
            (m, self._errors[m]) for m in unserved if m in self._errors and m not in self._told
        ]
        self._told.update([m for m, _, _ in ready] + [m for m, _ in failed])
        if not (ready or failed or final):
            return None
        return Restored(ready, failed, waiting if final else [], final=final)

    def _learn_load_errors(
        self, stub: gateway_pb2_grpc.SaxGatewayStub, unserved: list[str], now: float
    ) -> None:
        """Asks GetModel of the unserved models without a known load error, those asked least
        recently first, a few a poll. A model that failed to load stays failed until it is
        published again, which a restart does not do."""
        unknown = sorted(
            (m for m in unserved if m not in self._errors), key=lambda m: self._asked.get(m, -1.0)
        )
        for model in unknown[:LOAD_ERRORS_PER_POLL]:
            self._asked[model] = now
            request = gateway_pb2.GetModelRequest(model=model)
            reply = stub.GetModel(request, timeout=RESTORED_TIMEOUT_S, metadata=self.metadata)
            if reply.model.load_error:
                self._errors[model] = reply.model.load_error
