"""A channel as the generated Sax stubs see it: each call's request is serialized by its
caller, before grpc sees it.

grpc.aio (1.85) runs a stub's request serializer itself and, when it raises (upb's
EncodeError once the gateway is out of memory), logs ``Exception serializing message!`` and
sends the call on with an empty request. The model server answered that NOT_FOUND (`` is not
loaded on this server``), which the router took for a replica without the model: it retried
until the call's deadline (60 s, an ERROR logged at each attempt), then answered 503
``no replica of ... has it loaded``. Serialized here, the error is raised in the caller and
the call fails at once: out of memory (upb's EncodeError too), RESOURCE_EXHAUSTED, a 429.

    stub = lm_pb2_grpc.LMServiceStub(serializing(channel))
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import grpc
from google.protobuf.message import EncodeError

_Serializer = Callable[[Any], bytes]


class _Serialized:
    """A multicallable whose request is serialized before grpc's turn."""

    __slots__ = ("_call", "_serialize")

    def __init__(self, call: Callable[..., Any], serialize: _Serializer) -> None:
        self._call = call
        self._serialize = serialize

    def __call__(self, request: object, **kwargs: Any) -> Any:
        try:
            payload = self._serialize(request)
        except EncodeError as exc:
            # upb's word for an allocation it could not make: a proto3 message fails to
            # serialize for nothing else below 2 GiB, far above every message limit here.
            raise MemoryError(f"serializing a {type(request).__name__}: {exc}") from exc
        return self._call(payload, **kwargs)


class _SerializingChannel:
    """What `serializing` hands the stubs: the two kinds of call Sax's services have."""

    __slots__ = ("_channel",)

    def __init__(self, channel: grpc.aio.Channel) -> None:
        self._channel = channel

    def unary_unary(
        self, method: str, request_serializer: _Serializer, **kwargs: Any
    ) -> _Serialized:
        return _Serialized(self._channel.unary_unary(method, **kwargs), request_serializer)

    def unary_stream(
        self, method: str, request_serializer: _Serializer, **kwargs: Any
    ) -> _Serialized:
        return _Serialized(self._channel.unary_stream(method, **kwargs), request_serializer)


def serializing(channel: grpc.aio.Channel) -> grpc.aio.Channel:
    """``channel`` for a generated stub whose calls serialize their requests themselves."""
    return cast(grpc.aio.Channel, _SerializingChannel(channel))
