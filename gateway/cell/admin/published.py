"""One published model as the admin keeps it: the definition saved in state.proto, the address
set that WatchLoc follows, the ready count that WaitForReady waits on, and the method names
its servers reported. The manager decides what changes and when; this module says what the
model servers' reports mean for one model (its List entry, its addresses, its load failure)::

    entry = Published.new(definition(request.model, uuid=os.urandom(16)))
    entry.show(modelets)  # addresses, ready count and load failure, as the servers report
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass

import grpc
from saxml.protobuf import admin_pb2

from gateway.cell._errors import cell_error
from gateway.cell.admin.modelet import ModeletConnection
from gateway.cell.admin.waitable import ReadyCounter
from gateway.cell.admin.watchable import WatchableSet, WatchResult


def definition(
    model: admin_pb2.Model, *, uuid: bytes, methods: Iterable[str] = ()
) -> admin_pb2.Model:
    """``model`` as the admin saves it: with the deployment ID ``uuid`` and the method names
    its servers reported, never ones a caller sent."""
    spec = admin_pb2.Model()
    spec.CopyFrom(model)
    spec.uuid = uuid
    spec.ClearField("method_names")
    spec.method_names.extend(sorted(methods))
    return spec


def needs_reload(old: admin_pb2.Model, new: admin_pb2.Model) -> bool:
    """Whether the servers must load the model again for the change to take effect."""
    return (
        old.model_path != new.model_path
        or old.checkpoint_path != new.checkpoint_path
        or dict(old.overrides) != dict(new.overrides)
    )


@dataclass
class Published:
    """A published model's entry in the admin's memory (``spec`` is what state.proto holds)."""

    spec: admin_pb2.Model
    addresses: WatchableSet
    ready: ReadyCounter
    #: Until then (monotonic) no new replicas: servers that have it may still re-join.
    adopt_until: float = 0.0
    #: Method names its servers reported; saved in state.proto as upstream does.
    methods: frozenset[str] = frozenset()
    #: Read from state.proto at start and not reloaded since: a server that re-joins with the
    #: model was given this definition by an earlier admin, and keeps its replica. Servers
    #: only report a model's key, so a model published or reloaded since cannot be told from
    #: the copy an earlier definition left on a server that had not re-joined yet.
    restored: bool = False

    @classmethod
    def new(
        cls, spec: admin_pb2.Model, *, adopt_until: float = 0.0, restored: bool = False
    ) -> Published:
        return cls(
            spec=spec,
            addresses=WatchableSet(),
            ready=ReadyCounter(model_id=spec.model_id),
            adopt_until=adopt_until,
            restored=restored,
        )

    def listed(self, servers: Iterable[ModeletConnection]) -> admin_pb2.PublishedModel:
        """Its List entry; ``servers`` are those assigned the model."""
        model_id = self.spec.model_id
        # Only servers that loaded the model count: one that failed to load is no replica.
        addresses = sorted(s.data_address for s in servers if s.serving(model_id))
        # Upstream keeps the deployment ID to itself.
        model = definition(self.spec, uuid=b"", methods=self.methods)
        return admin_pb2.PublishedModel(model=model, modelet_addresses=addresses)

    def learn_methods(self, servers: Iterable[ModeletConnection]) -> bool:
        """Adds the method names that ``servers`` (those assigned the model) report for it;
        whether there were new ones, which state.proto does not have yet."""
        methods = set(self.methods)
        for server in servers:
            seen = server.seen.get(self.spec.model_id)
            if seen is not None:
                methods |= seen.methods
        if methods == self.methods:
            return False
        self.methods = frozenset(methods)
        self.spec.ClearField("method_names")
        self.spec.method_names.extend(sorted(methods))
        return True

    def show(self, modelets: Collection[ModeletConnection]) -> None:
        """Brings its watched address set, its ready count and its load failure up to date
        with what ``modelets`` (every joined server) report."""
        model_id = self.spec.model_id
        serving = [m for m in modelets if m.serving(model_id)]
        self.addresses.sync_to({m.data_address for m in serving})
        self.ready.set(len(serving))
        failures = [
            f"{m.address}: {m.failed[model_id]}"
            for m in modelets
            if model_id in m.wanted and model_id in m.failed
        ]
        failure = (
            f"{model_id} failed to load ({'; '.join(failures)})"
            if failures and not serving
            else None
        )
        self.addresses.set_failure(failure)
        self.ready.set_failure(failure)

    async def watch(self, *, full: bool, seqno: int) -> WatchResult:
        """Its addresses (``full``), or the changes after ``seqno`` once there are some."""
        result = self.addresses.full() if full else await self.addresses.watch(seqno)
        if self.addresses.failure is not None:
            # Clients fail their calls at once with it, instead of waiting for a replica.
            raise cell_error(grpc.StatusCode.FAILED_PRECONDITION, self.addresses.failure)
        return result

    def close(self) -> None:
        """Ends its watches and waits: the model is unpublished."""
        self.addresses.close()
        self.ready.close()
