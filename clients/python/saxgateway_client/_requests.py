"""What each call of the clients sends and how its reply reads: one place for both the
synchronous :class:`Client` and the asyncio :class:`AsyncClient`, which only differ in how
they wait."""

from __future__ import annotations

import math
import numbers
import re
import urllib.parse
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeGuard, TypeVar

from google.protobuf import message, struct_pb2
from saxgateway.v1 import gateway_pb2 as pb

from saxgateway_client._errors import SaxGatewayError, from_status

_Result = TypeVar("_Result")
JSONValue = float | str | Iterable[float]
"""An extra input: a number, a string, or a list of numbers (a tensor, any iterable)."""


def extra_inputs(values: Mapping[str, JSONValue]) -> dict[str, struct_pb2.Value]:
    """Plain Python values as the google.protobuf.Value map the API takes."""
    result = {}
    for key, value in values.items():
        proto = struct_pb2.Value()
        if isinstance(value, str):
            proto.string_value = value
        elif _is_number(value):
            proto.number_value = float(value)
        elif (tensor := _tensor(value)) is not None:
            proto.list_value.extend(tensor)
        else:
            # What the gateway would refuse (and True, which would pass as 1.0 where the
            # HTTP/JSON API and the Node client refuse it), refused here with the key named.
            raise TypeError(
                f"extra_inputs[{key}]: must be a number, a string or a list of numbers,"
                f" not {type(value).__name__}"
            )
        result[key] = proto
    return result


def _is_number(value: object) -> TypeGuard[float]:
    # numbers.Real takes numpy's scalars too; a bool is an int, but not a number here.
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _tensor(value: object) -> list[float] | None:
    """Any iterable of numbers (a list, a tuple, a numpy array) as floats; else None."""
    if isinstance(value, str | bytes | Mapping) or not isinstance(value, Iterable):
        return None
    items = list(value)
    return [float(v) for v in items] if all(_is_number(v) for v in items) else None


# A timeout longer than this (about 31 years) is no deadline: grpc takes one past ~9.2e9 s
# (2**63 ns), or infinity, for a deadline already past, and fails the call at once with
# DEADLINE_EXCEEDED. The gateway's own --default-timeout still bounds the call.
_ENDLESS = 1e9


#: What every channel of the clients sets unless the caller's ``options`` do: grpc's own
#: receive limit is 4 MiB, where the gateway sends replies up to its message limit (32 MiB by
#: default, more if its config says so): a 5 MB image or custom reply raised
#: ResourceExhaustedError, which reads as a rate limit. The gateway bounds what it sends.
DEFAULT_CHANNEL_OPTIONS: tuple[tuple[str, Any], ...] = (("grpc.max_receive_message_length", -1),)


def channel_options(options: Sequence[tuple[str, Any]]) -> list[tuple[str, Any]]:
    """The caller's channel ``options`` over `DEFAULT_CHANNEL_OPTIONS`."""
    return list({**dict(DEFAULT_CHANNEL_OPTIONS), **dict(options)}.items())


def timeout(default: float | None, given: float | None) -> float | None:
    """The timeout grpc is given: ``given``, else the client's ``default``; None (no deadline of
    the client's) for infinity or one too long to be any. A NaN is a ValueError, where grpc
    took it for a deadline already past."""
    chosen = default if given is None else given
    if chosen is None:
        return None
    if math.isnan(chosen):
        raise ValueError(f"timeout must be a number of seconds, not {chosen}")
    return None if chosen > _ENDLESS else chosen


def check_target(target: str) -> None:
    """Refuses an http(s) URL for the gateway's address: grpc resolved it as a host name and
    failed every call UNAVAILABLE, which says the gateway is down and a retry may help."""
    url = urllib.parse.urlsplit(target)
    if url.scheme in ("http", "https") and url.hostname:
        port = url.port or (443 if url.scheme == "https" else 80)
        host = f"[{url.hostname}]" if ":" in url.hostname else url.hostname
        raise ValueError(
            f"{target!r} is a URL; the client takes the gateway's gRPC address, host:port "
            f"({f'{host}:{port}'!r}), and credentials for TLS"
        )


Metadata = Sequence[tuple[str, str]]
"""gRPC metadata: (key, value) pairs, such as ``("authorization", "Bearer sk-...")``."""


def metadata(client: Metadata, call: Metadata) -> tuple[tuple[str, str], ...]:
    """What a call sends: the client's metadata with the call's own, whose values replace the
    client's for a key both set (a call's own x-request-id, say). Keys are header names, of
    any case (``Authorization``); grpc takes lowercase alone, and failed a call with another
    INTERNAL 'Invalid metadata' (grpc.aio: ExecuteBatchError), as if the server had failed."""
    own = [_header(key, value) for key, value in call]
    named = {key for key, _ in own}
    every = [_header(key, value) for key, value in client]
    return (*((key, value) for key, value in every if key not in named), *own)


_HEADER_NAME = re.compile(r"[0-9a-z_.-]+")
_HEADER_VALUE = re.compile(r"[\x20-\x7e]*")


def _header(key: str, value: str) -> tuple[str, str]:
    """A metadata pair as grpc takes it, the key lowercase; a ValueError naming the key (never
    the value, which may be a secret) for what grpc would fail the call INTERNAL over."""
    lowered = key.lower()
    if not _HEADER_NAME.fullmatch(lowered):
        raise ValueError(
            f"metadata key {key!r} is not a header name: letters, digits, '-', '_' and '.'"
        )
    binary = lowered.endswith("-bin") and isinstance(value, bytes)
    if not binary and not (isinstance(value, str) and _HEADER_VALUE.fullmatch(value)):
        raise ValueError(
            f"metadata {lowered!r}: its value is not one a header may have (printable ASCII, "
            "no line break; bytes under a key ending -bin)"
        )
    return lowered, value


# The RPCs of saxgateway.v1.SaxGateway, read from the generated descriptor: the request type
# each takes, and which stream.
_SERVICE = pb.DESCRIPTOR.services_by_name["SaxGateway"]
_STREAMS = frozenset(m.name for m in _SERVICE.methods if m.server_streaming)
_METHODS = frozenset(m.name for m in _SERVICE.methods)
_REQUESTS = {m.name: m.input_type.full_name for m in _SERVICE.methods}


def _check_known(method: str) -> None:
    # Else the stub's AttributeError (Python) names neither the service nor what it offers.
    if method not in _METHODS:
        raise ValueError(
            f"{method!r} is not an RPC of saxgateway.v1.SaxGateway; it has "
            + ", ".join(sorted(_METHODS))
        )


def _check_request(method: str, request: object) -> None:
    # grpc serializes any message it is handed: another RPC's request went out as this one's,
    # its fields read by number as whatever this one's are.
    expected = _REQUESTS[method]
    descriptor = getattr(request, "DESCRIPTOR", None)
    given = getattr(descriptor, "full_name", None) or type(request).__name__
    if given != expected:
        raise TypeError(f"{method} takes a {expected}, not a {given}")


def check_unary(client: object, method: str, request: object) -> None:
    _check_known(method)
    if method in _STREAMS:
        name = type(client).__name__
        raise TypeError(f"{method} is a streaming RPC: use {name}.stream({method!r}, ...)")
    _check_request(method, request)


def check_stream(client: object, method: str, request: object) -> None:
    _check_known(method)
    if method not in _STREAMS:
        name = type(client).__name__
        raise TypeError(f"{method} is not a streaming RPC: use {name}.call({method!r}, ...)")
    _check_request(method, request)


def in_band_error(item: Any) -> SaxGatewayError | None:
    """A stream message's in-band failure (its ``error`` field, when it has one and it is set)."""
    if "error" in item.DESCRIPTOR.fields_by_name and item.error.code:
        return from_status(item.error)
    return None


@dataclass(frozen=True, slots=True)
class Unary(Generic[_Result]):
    """One unary call: the method, its request, and how its response reads."""

    method: str
    request: message.Message
    read: Callable[[Any], _Result]


def publish(
    model: str,
    model_path: str,
    checkpoint: str,
    replicas: int,
    overrides: Mapping[str, str] | None,
) -> Unary[pb.PublishModelResponse]:
    request = pb.PublishModelRequest(
        model=model,
        model_path=model_path,
        checkpoint=checkpoint,
        replicas=replicas,
        overrides=dict(overrides or {}),
    )
    return Unary("PublishModel", request, lambda response: response)


def unpublish(model: str) -> Unary[None]:
    return Unary("UnpublishModel", pb.UnpublishModelRequest(model=model), lambda _: None)


def wait_for_ready(model: str, replicas: int) -> Unary[int]:
    request = pb.WaitForReadyRequest(model=model, replicas=replicas)
    return Unary("WaitForReady", request, lambda response: int(response.active_replicas))


def generate(
    model: str, query: str, extra: Mapping[str, JSONValue] | None
) -> Unary[list[tuple[str, float]]]:
    request = pb.GenerateRequest(model=model, query=query, extra_inputs=extra_inputs(extra or {}))
    return Unary("Generate", request, lambda response: [(t.text, t.score) for t in response.texts])


def generate_stream(
    model: str, query: str, extra: Mapping[str, JSONValue] | None
) -> pb.GenerateStreamRequest:
    return pb.GenerateStreamRequest(
        model=model, query=query, extra_inputs=extra_inputs(extra or {})
    )


def score(
    model: str, prefix: str, suffixes: Sequence[str], extra: Mapping[str, JSONValue] | None
) -> Unary[list[float]]:
    request = pb.ScoreRequest(
        model=model, prefix=prefix, suffix=list(suffixes), extra_inputs=extra_inputs(extra or {})
    )
    return Unary("Score", request, lambda response: list(response.logp))


def embed(model: str, text: str, extra: Mapping[str, JSONValue] | None) -> Unary[list[float]]:
    request = pb.EmbedRequest(model=model, text=text, extra_inputs=extra_inputs(extra or {}))
    return Unary("Embed", request, lambda response: list(response.embedding))
