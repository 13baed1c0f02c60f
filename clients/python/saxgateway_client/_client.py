"""A synchronous client of the SaxGateway gRPC API.

with Client("localhost:8888") as client:
    print(client.generate("/sax/test/lm2b", "Q: Who is Harry Potter's mom? A: "))
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from types import TracebackType
from typing import Any, TypeGuard, TypeVar

import grpc
from google.protobuf import message, struct_pb2
from saxgateway.v1 import gateway_pb2 as pb
from saxgateway.v1 import gateway_pb2_grpc

from saxgateway_client._errors import from_rpc_error, from_status

_Response = TypeVar("_Response", bound=message.Message)
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


# The server-streaming RPCs of saxgateway.v1.SaxGateway, read from the generated descriptor.
_STREAMS = frozenset(
    m.name for m in pb.DESCRIPTOR.services_by_name["SaxGateway"].methods if m.server_streaming
)


def _items(start: Callable[[], Any]) -> Iterator[Any]:
    """A streaming call's messages, the call started at the first ``next``; a failure, before
    the first message or in-band in the last one, raised as a SaxGatewayError."""
    call = start()
    try:
        for item in call:
            if "error" in item.DESCRIPTOR.fields_by_name and item.error.code:
                raise from_status(item.error)
            yield item
    except grpc.RpcError as exc:
        raise from_rpc_error(exc) from exc
    finally:
        call.cancel()  # a consumer that stops early frees the call at once


class Client:
    """One channel to a gateway (Envoy's public port, or a gateway process).

    Every call has a deadline: ``timeout`` seconds unless the call passes its own. Failures
    raise a :class:`SaxGatewayError` subclass chosen by status code.
    """

    def __init__(
        self,
        target: str = "localhost:8888",
        *,
        timeout: float = 60.0,
        credentials: grpc.ChannelCredentials | None = None,
        metadata: Sequence[tuple[str, str]] = (),
    ) -> None:
        self.timeout = timeout
        self._metadata = tuple(metadata)
        self._channel = (
            grpc.secure_channel(target, credentials)
            if credentials is not None
            else grpc.insecure_channel(target)
        )
        self.stub = gateway_pb2_grpc.SaxGatewayStub(self._channel)
        """The generated stub, for calls without this wrapper's deadline and errors."""

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Closes the channel."""
        self._channel.close()

    def call(self, method: str, request: message.Message, *, timeout: float | None = None) -> Any:
        """Any unary RPC by name (``"ListModels"``), with the deadline and error mapping."""
        if method in _STREAMS:
            raise TypeError(f"{method} is a streaming RPC: use Client.stream({method!r}, ...)")
        try:
            return getattr(self.stub, method)(
                request,
                timeout=self.timeout if timeout is None else timeout,
                metadata=self._metadata,
            )
        except grpc.RpcError as exc:
            raise from_rpc_error(exc) from exc

    def publish(
        self,
        model: str,
        model_path: str,
        checkpoint: str,
        replicas: int = 1,
        *,
        overrides: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> pb.PublishModelResponse:
        """Publishes a model; AlreadyExistsError if it is published."""
        request = pb.PublishModelRequest(
            model=model,
            model_path=model_path,
            checkpoint=checkpoint,
            replicas=replicas,
            overrides=dict(overrides or {}),
        )
        response: pb.PublishModelResponse = self.call("PublishModel", request, timeout=timeout)
        return response

    def unpublish(self, model: str, *, timeout: float | None = None) -> None:
        """Unpublishes a model; NotFoundError if it is not published."""
        self.call("UnpublishModel", pb.UnpublishModelRequest(model=model), timeout=timeout)

    def wait_for_ready(self, model: str, replicas: int = 1, *, timeout: float | None = None) -> int:
        """Waits until ``replicas`` replicas serve ``model``; returns how many do."""
        request = pb.WaitForReadyRequest(model=model, replicas=replicas)
        response: pb.WaitForReadyResponse = self.call("WaitForReady", request, timeout=timeout)
        return response.active_replicas

    def generate(
        self,
        model: str,
        query: str,
        *,
        extra: Mapping[str, JSONValue] | None = None,
        timeout: float | None = None,
    ) -> list[tuple[str, float]]:
        """The model's samples for ``query`` as (text, score), best first."""
        request = pb.GenerateRequest(
            model=model, query=query, extra_inputs=extra_inputs(extra or {})
        )
        response: pb.GenerateResponse = self.call("Generate", request, timeout=timeout)
        return [(t.text, t.score) for t in response.texts]

    def generate_stream(
        self,
        model: str,
        query: str,
        *,
        extra: Mapping[str, JSONValue] | None = None,
        timeout: float | None = None,
    ) -> Iterator[pb.GenerateStreamResponse]:
        """The stream's messages as they arrive; the last has ``done`` and the full texts.

        A stream that fails, whether before its first message or in-band in its last one,
        raises the same exceptions as a unary call.
        """
        request = pb.GenerateStreamRequest(
            model=model, query=query, extra_inputs=extra_inputs(extra or {})
        )
        return self.stream("GenerateStream", request, timeout=timeout)

    def stream(
        self, method: str, request: message.Message, *, timeout: float | None = None
    ) -> Iterator[Any]:
        """Any streaming RPC by name (``"WatchAddresses"``): its messages as they arrive, with
        the deadline and error mapping; a message whose ``error`` is set is raised."""
        if method not in _STREAMS:
            raise TypeError(f"{method} is not a streaming RPC: use Client.call({method!r}, ...)")
        deadline = self.timeout if timeout is None else timeout
        rpc = getattr(self.stub, method)
        return _items(lambda: rpc(request, timeout=deadline, metadata=self._metadata))

    def score(
        self,
        model: str,
        prefix: str,
        suffixes: Sequence[str],
        *,
        extra: Mapping[str, JSONValue] | None = None,
        timeout: float | None = None,
    ) -> list[float]:
        """The log-probability of each suffix after ``prefix``."""
        request = pb.ScoreRequest(
            model=model,
            prefix=prefix,
            suffix=list(suffixes),
            extra_inputs=extra_inputs(extra or {}),
        )
        response: pb.ScoreResponse = self.call("Score", request, timeout=timeout)
        return list(response.logp)

    def embed(
        self,
        model: str,
        text: str,
        *,
        extra: Mapping[str, JSONValue] | None = None,
        timeout: float | None = None,
    ) -> list[float]:
        """The model's embedding of ``text``."""
        request = pb.EmbedRequest(model=model, text=text, extra_inputs=extra_inputs(extra or {}))
        response: pb.EmbedResponse = self.call("Embed", request, timeout=timeout)
        return list(response.embedding)
