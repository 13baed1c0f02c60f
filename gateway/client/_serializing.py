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

A reply is parsed the same way: one that does not parse (a string that is not UTF-8, a
truncated field) is an `Unparsed` in its place, which the router turns into the call's
INTERNAL naming the model server. Left to grpc.aio, it logged ``Exception deserializing
message!`` with a traceback and handed the stub None, on which the gateway tripped with an
AttributeError of its own: a second traceback, and a 500 'internal error in sax-gateway' that
blamed the gateway for its model server's reply.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import grpc
from google.protobuf.message import DecodeError, EncodeError

_Serializer = Callable[[Any], bytes]
_Deserializer = Callable[[bytes], Any]


class Unparsed:
    """A reply that did not parse: ``why``, the parser's words."""

    __slots__ = ("why",)

    def __init__(self, why: str) -> None:
        self.why = why


def _parsing(deserialize: _Deserializer) -> _Deserializer:
    def parse(data: bytes | None) -> Any:
        if data is None:
            # grpc.aio's reply to a unary call that ended OK with no message (or with one
            # cut short): parsed, a TypeError, and the same two tracebacks as below.
            return Unparsed("it ended OK with no reply message")
        try:
            return deserialize(data)
        except DecodeError as exc:
            return Unparsed(str(exc))

    return parse


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

    def unary_unary(self, method: str, **options: Any) -> _Serialized:
        return _wrapped(self._channel.unary_unary, method, **options)

    def unary_stream(self, method: str, **options: Any) -> _Serialized:
        return _wrapped(self._channel.unary_stream, method, **options)


def _wrapped(
    make: Callable[..., Any],
    method: str,
    *,
    request_serializer: _Serializer,
    response_deserializer: _Deserializer,
    **options: Any,
) -> _Serialized:
    """``make``'s multicallable for ``method``, serializing and parsing as described above."""
    call = make(method, response_deserializer=_parsing(response_deserializer), **options)
    return _Serialized(call, request_serializer)


def serializing(channel: grpc.aio.Channel) -> grpc.aio.Channel:
    """``channel`` for a generated stub whose calls serialize their requests themselves."""
    return cast(grpc.aio.Channel, _SerializingChannel(channel))
