"""The models a model server holds, their status and statistics, and a log of cancelled streams.

loaded = LoadedModels(seed=0)
await loaded.load(request)                  # sax.LoadRequest
with loaded.call("/sax/test/foo", "lm.generate") as model: ...
loaded.cancellations("/sax/test/foo")       # when GenerateStream calls were cancelled
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import grpc
from saxml.protobuf import common_pb2, modelet_pb2

from gateway.cell._errors import cell_error, invalid_argument, not_found
from gateway.cell.models import LoadSpec, create_model
from gateway.cell.models.base import ServableModel
from gateway.cell.modelserver.stats import MethodStats
from gateway.common.errors import SaxError
from gateway.common.names import ACL_METHODS

_log = logging.getLogger("gateway.cell.modelserver")
#: The cancelled streams a model server (and the launcher, from its log) keeps, newest last.
KEPT_CANCELLATIONS = 1000


@dataclass
class LoadedModel:
    key: str
    model_path: str
    checkpoint: str
    status: common_pb2.ModelStatus.ValueType
    overrides: dict[str, str] = field(default_factory=dict)
    model: ServableModel | None = None
    failure: str = ""
    stats: dict[str, MethodStats] = field(default_factory=dict)


@dataclass(frozen=True)
class Cancellation:
    model_key: str
    #: time.time() when the server noticed.
    at: float
    tokens_sent: int


class LoadedModels:
    def __init__(
        self, *, seed: int, on_cancelled: Callable[[Cancellation], None] | None = None
    ) -> None:
        self._seed = seed
        self._on_cancelled = on_cancelled
        self._models: dict[str, LoadedModel] = {}
        self._cancellations: list[Cancellation] = []

    async def load(self, request: modelet_pb2.LoadRequest) -> None:
        key: str = request.model_key
        if not key:
            raise invalid_argument("model_key is not specified")
        existing = self._models.get(key)
        if existing is not None and existing.status == common_pb2.LOADED:
            if existing.model_path == request.model_path:
                return  # a repeated Load (e.g. from a restarted admin) is a no-op
            raise cell_error(
                grpc.StatusCode.ALREADY_EXISTS, f"{key} is already loaded as {existing.model_path}"
            )
        self._install(
            LoadedModel(
                key=key,
                model_path=request.model_path,
                checkpoint=request.checkpoint_path,
                overrides=dict(request.overrides),
                status=common_pb2.LOADING,
            )
        )

    def _install(self, entry: LoadedModel) -> None:
        """Loads ``entry``'s model and holds it under its key (FAILED, and raises, if it does
        not load)."""
        self._models[entry.key] = entry
        spec = LoadSpec(
            model_path=entry.model_path,
            checkpoint=entry.checkpoint,
            overrides=entry.overrides,
            seed=self._seed,
        )
        try:
            model = create_model(spec)
        except SaxError as exc:
            entry.status, entry.failure = common_pb2.FAILED, exc.message
            _log.warning("failed to load %s (%s): %s", entry.key, entry.model_path, exc.message)
            raise
        entry.model = model
        entry.stats = {name: MethodStats(name) for name in sorted(model.method_names)}
        entry.status = common_pb2.LOADED
        _log.info("loaded %s (%s)", entry.key, entry.model_path)

    def unload(self, key: str) -> None:
        if not key:
            raise invalid_argument("model_key is not specified")
        if self._models.pop(key, None) is None:
            # INVALID_ARGUMENT, not NOT_FOUND: what upstream's model servers answer.
            raise invalid_argument(f"{key} is not loaded, cannot unload")
        _log.info("unloaded %s", key)

    def update(self, key: str, checkpoint: str) -> None:
        """UpdateLoaded. As upstream's model servers: with a checkpoint (an upstream admin
        sends one with every update), the model is loaded anew from it, with its path and
        overrides; without one only its ACLs change, which the gateway enforces, not this
        server (upstream's open-source servers know no caller to check them against)."""
        entry = self._models.get(key)
        if entry is None or entry.model is None:
            raise not_found(f"{key} is not loaded, cannot update")
        if checkpoint:
            self._install(
                LoadedModel(
                    key=key,
                    model_path=entry.model_path,
                    checkpoint=checkpoint,
                    overrides=entry.overrides,
                    status=common_pb2.LOADING,
                )
            )

    def status(
        self, *, failures: bool, method_stats: bool
    ) -> list[modelet_pb2.GetStatusResponse.ModelWithStatus]:
        out = []
        for key, entry in sorted(self._models.items()):
            model = modelet_pb2.GetStatusResponse.ModelWithStatus(
                model_key=key, model_status=entry.status
            )
            if failures and entry.failure:
                model.failure_reason = entry.failure
            if method_stats:
                model.method_stats.extend(s.to_proto() for s in entry.stats.values())
            out.append(model)
        return out

    @contextmanager
    def call(self, key: str, method: str, *, custom: bool = False) -> Iterator[ServableModel]:
        """The loaded model for a data call, counted in the method's statistics; ``custom``
        for a call of the custom service, which names the method itself."""
        entry = self._models.get(key)
        if entry is None or entry.model is None:
            available = ", ".join(k for k, e in self._models.items() if e.model) or "none"
            raise not_found(f"{key} is not loaded on this server. Available models: {available}")
        stats = entry.stats.get(method)
        if custom and stats is not None and method in ACL_METHODS:
            # Upstream's servers queue a method under the service that serves it: the custom
            # service finds no queue for a method of another one, and says NOT_FOUND.
            service = method.split(".")[0]
            raise not_found(f"{key} has no custom method {method}: its {service} service serves it")
        if stats is None:
            raise invalid_argument(
                f"{key} ({entry.model_path}) does not support {method}; it supports "
                + ", ".join(sorted(entry.stats))
            )
        started = stats.started()
        ok = False
        try:
            yield entry.model
            ok = True
        finally:
            stats.finished(started, ok=ok)

    def record_cancellation(self, key: str, *, tokens_sent: int) -> None:
        event = Cancellation(model_key=key, at=time.time(), tokens_sent=tokens_sent)
        self._cancellations.append(event)
        del self._cancellations[:-KEPT_CANCELLATIONS]
        # The launcher and tests read this line from the server's log; keep its shape.
        _log.info("stream cancelled model=%s tokens_sent=%d at=%.6f", key, tokens_sent, event.at)
        if self._on_cancelled is not None:
            self._on_cancelled(event)

    def cancellations(self, key: str | None = None) -> list[Cancellation]:
        return [c for c in self._cancellations if key is None or c.model_key == key]
