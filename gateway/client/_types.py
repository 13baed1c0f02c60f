"""Settings, per-call options and result types of the Sax client."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from saxml.protobuf import admin_pb2, common_pb2

from gateway import naming
from gateway.common.deadline import Deadline

# One shared read-only empty mapping serves as every default: no per-call dicts.
_EMPTY: Mapping[str, Any] = MappingProxyType({})


def _empty() -> Mapping[str, Any]:
    return _EMPTY


# How long an admin may stay unreachable before a call that needs it fails with UNAVAILABLE.
ADMIN_UNREACHABLE_AFTER_S = 5.0
# How long a data call retries an overloaded model before it fails with RESOURCE_EXHAUSTED.
OVERLOADED_AFTER_S = 1.0


@dataclass(frozen=True, kw_only=True)
class ClientSettings:
    """How a ``Client`` finds and talks to Sax cells; built once at the edge."""

    sax_root: str
    """Local directory or ``gs://bucket/prefix`` holding ``sax/<cell>/location.proto``."""
    gcs_endpoint: str | None = None
    """GCS API endpoint override (an emulator); anonymous credentials are used with it."""
    admin_timeout: float = 10.0
    """Deadline in seconds of one admin operation when the caller gives none."""
    admin_unreachable_after: float = ADMIN_UNREACHABLE_AFTER_S
    """Seconds an admin may stay unreachable (refused, no address) before a call that needs it
    fails with UNAVAILABLE, whatever its deadline."""
    overloaded_after: float = OVERLOADED_AFTER_S
    """Seconds a data call retries (with backoff) a model whose replicas answer
    RESOURCE_EXHAUSTED, from the first such answer, before it fails with RESOURCE_EXHAUSTED,
    whatever its deadline (0: every replica once). Upstream's client retries until the
    deadline, so a model that stays overloaded was reported only then (60 s by default)."""
    num_conn: int = 3
    """How many of a model's replicas one client spreads its data calls over."""
    fail_fast: bool = False
    """True: a data call fails at once when no replica serves; False: it waits in its deadline."""
    fail_unrequested: bool = False
    """True: a data call to a model the admin lists with no replica requested (published or
    updated with 0) fails at once with FAILED_PRECONDITION (`_requested.py`); False, as
    upstream's clients: it waits in its deadline, as for a model whose replicas load, for
    someone to ask for replicas. A gateway's client has it set (`GatewayServer`): its callers
    (HTTP, the OpenAI SDKs) cannot tell that wait from a slow model, and waited a minute for a
    504, three with the SDKs' retries."""
    max_reply_bytes: int | None = None
    """The largest reply a model server may send (None: any, as upstream's client takes); a
    larger one fails the call INVALID_ARGUMENT as grpc refuses to read it. A gateway's client
    has its message limit (`GatewayServer`): a reply over it cannot be passed on, and was read,
    parsed and copied all the same, seconds of a gateway's event loop for 200 MB, while every
    other call waited."""
    proxy_addr: str | None = None
    """Send every data call to this address instead of the model's servers (upstream's
    ``Options.proxy_addr``); no admin is consulted for data calls then."""


@dataclass(frozen=True, kw_only=True, slots=True)  # one per open stream
class CallOptions:
    """Per-call options of a data call."""

    extra_inputs: Mapping[str, float] = field(default_factory=_empty)
    """Float extra inputs (``ExtraInputs.items``), e.g. ``{"temperature": 0.5}``."""
    extra_strings: Mapping[str, str] = field(default_factory=_empty)
    """String extra inputs (``ExtraInputs.strings``)."""
    extra_tensors: Mapping[str, Sequence[float]] = field(default_factory=_empty)
    """Tensor extra inputs (``ExtraInputs.tensors``), flattened row-major."""
    timeout: float | None = None
    """Seconds; bounds the whole call (waiting for a replica and retries included) and is sent
    as the gRPC deadline."""
    deadline: Deadline | None = None
    """An absolute deadline fixed by the caller (e.g. where a gateway call entered); the call
    ends at the sooner of it and ``timeout``."""

    def call_deadline(self) -> Deadline:
        """The call's deadline, fixed now: the sooner of ``deadline`` and ``timeout`` from now."""
        return Deadline.after(self.timeout).earliest(self.deadline)

    def extra_inputs_proto(self) -> common_pb2.ExtraInputs | None:
        """The ``ExtraInputs`` message, or None when there are none (saves building one)."""
        if not (self.extra_inputs or self.extra_strings or self.extra_tensors):
            return None
        return common_pb2.ExtraInputs(
            items=self.extra_inputs,
            strings=self.extra_strings,
            tensors={k: common_pb2.Tensor(values=v) for k, v in self.extra_tensors.items()},
        )


DEFAULT_CALL_OPTIONS = CallOptions()


@dataclass(frozen=True)
class ModelDetail:
    """A published model as the admin reports it."""

    model_id: str
    model_path: str
    checkpoint: str
    max_replicas: int
    """Requested number of replicas."""
    active_replicas: int
    """Servers serving it now: its distinct ``addresses`` that are ``HOST:PORT`` (an admin
    may name others, or one twice; calls never reach them, `naming.is_server_address`)."""
    overrides: dict[str, str]
    addresses: list[str]
    method_names: list[str]
    admin_acl: str
    acls: dict[str, str]

    @classmethod
    def from_proto(cls, published: admin_pb2.PublishedModel) -> ModelDetail:
        model = published.model
        addresses = sorted(published.modelet_addresses)
        return cls(
            model_id=model.model_id,
            model_path=model.model_path,
            checkpoint=model.checkpoint_path,
            max_replicas=model.requested_num_replicas,
            active_replicas=len({a for a in addresses if naming.is_server_address(a)}),
            overrides=dict(model.overrides),
            addresses=addresses,
            method_names=list(model.method_names),
            admin_acl=model.admin_acl,
            acls=dict(model.acls.items),
        )


@dataclass(frozen=True)
class StreamItem:
    """One sample of a streamed generation, with Sax's semantics unchanged: the sample's text
    so far is ``previous_text[:prefix_len] + text``."""

    text: str
    prefix_len: int
    scores: list[float]


@dataclass(frozen=True)
class ServerTypeStat:
    """Number of model servers of one chip type and topology."""

    chip_type: str
    """Enum name, e.g. ``"CHIP_TYPE_CPU"``."""
    chip_topology: str
    """Enum name, e.g. ``"CHIP_TOPOLOGY_1"``."""
    num_replicas: int


@dataclass(frozen=True)
class CellStats:
    """Model servers of a cell (or of one model's servers)."""

    server_types: list[ServerTypeStat]
    servers_by_model_path: dict[str, int]

    @classmethod
    def from_proto(cls, response: admin_pb2.StatsResponse) -> CellStats:
        return cls(
            server_types=[
                ServerTypeStat(
                    chip_type=_enum_name(admin_pb2.ModelServer.ChipType, s.chip_type),
                    chip_topology=_enum_name(admin_pb2.ModelServer.ChipTopology, s.chip_topology),
                    num_replicas=s.num_replicas,
                )
                for s in response.model_server_type_stats
            ],
            servers_by_model_path=dict(response.num_servers_by_servable_model_path),
        )


def _enum_name(enum: object, value: int) -> str:
    try:
        name: str = enum.Name(value)  # type: ignore[attr-defined]
    except ValueError:
        return str(value)  # a newer server's value this proto does not know yet
    return name
