"""A synchronous client of the SaxGateway gRPC API.

with Client("localhost:8888") as client:
    print(client.generate("/sax/test/lm2b", "Q: Who is Harry Potter's mom? A: "))
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from types import TracebackType
from typing import Any, TypeVar

import grpc
from google.protobuf import message
from saxgateway.v1 import gateway_pb2 as pb
from saxgateway.v1 import gateway_pb2_grpc

from saxgateway_client import _requests as requests
from saxgateway_client._errors import closed_error, from_rpc_error
from saxgateway_client._requests import JSONValue, in_band_error

_Result = TypeVar("_Result")


def _items(start: Callable[[], Any], closed: Callable[[], bool]) -> Iterator[Any]:
    """A streaming call's messages, the call started at the first ``next``; a failure, before
    the first message or in-band in the last one, raised as a SaxGatewayError (a call on a
    closed client, ``closed()``, too)."""
    if closed():
        raise closed_error()
    call = start()
    try:
        for item in call:
            # A consumer that stops at the last message (`done`, as a loop that breaks there
            # does) would cancel a call that succeeded, and the gateway would count it so.
            # A failed call's last message is in-band too: its status, which follows, is
            # raised instead (its trailers say when to retry), or the in-band error if none.
            if getattr(item, "done", False):
                for _ in call:  # the call's status follows its last message: read it
                    pass
            if (error := in_band_error(item)) is not None:
                raise error
            yield item
    except grpc.RpcError as exc:
        raise from_rpc_error(exc) from exc
    finally:
        call.cancel()  # a consumer that stops early frees the call at once


class Client:
    """One channel to a gateway (Envoy's public port, or a gateway process).

    Every call has a deadline: ``timeout`` seconds unless the call passes its own
    (``math.inf``: none of the client's; the gateway's default timeout still ends it). Failures
    raise a :class:`SaxGatewayError` subclass chosen by status code.
    """

    def __init__(
        self,
        target: str = "localhost:8888",
        *,
        timeout: float = 60.0,
        credentials: grpc.ChannelCredentials | None = None,
        metadata: Sequence[tuple[str, str]] = (),
        options: Sequence[tuple[str, Any]] = (),
    ) -> None:
        requests.check_target(target)
        self.timeout = timeout
        self._closed = False  # a call after close raises CancelledError, not grpc's ValueError
        self._metadata = requests.metadata((), metadata)
        self._channel = (
            grpc.secure_channel(target, credentials, requests.channel_options(options))
            if credentials is not None
            else grpc.insecure_channel(target, requests.channel_options(options))
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
        """Closes the channel; calls in flight and later calls raise :class:`CancelledError`."""
        self._closed = True
        self._channel.close()

    def call(
        self,
        method: str,
        request: message.Message,
        *,
        timeout: float | None = None,
        metadata: requests.Metadata = (),
    ) -> Any:
        """Any unary RPC by name (``"ListModels"``), with the deadline and error mapping."""
        requests.check_unary(self, method, request)
        if self._closed:
            raise closed_error()
        try:
            return getattr(self.stub, method)(
                request,
                timeout=requests.timeout(self.timeout, timeout),
                metadata=requests.metadata(self._metadata, metadata),
            )
        except grpc.RpcError as exc:
            raise from_rpc_error(exc) from exc

    def _run(
        self, call: requests.Unary[_Result], timeout: float | None, metadata: requests.Metadata
    ) -> _Result:
        return call.read(self.call(call.method, call.request, timeout=timeout, metadata=metadata))

    def publish(
        self,
        model: str,
        model_path: str,
        checkpoint: str,
        replicas: int = 1,
        *,
        overrides: Mapping[str, str] | None = None,
        timeout: float | None = None,
        metadata: requests.Metadata = (),
    ) -> pb.PublishModelResponse:
        """Publishes a model; AlreadyExistsError if it is published."""
        call = requests.publish(model, model_path, checkpoint, replicas, overrides)
        return self._run(call, timeout, metadata)

    def unpublish(
        self, model: str, *, timeout: float | None = None, metadata: requests.Metadata = ()
    ) -> None:
        """Unpublishes a model; NotFoundError if it is not published."""
        self._run(requests.unpublish(model), timeout, metadata)

    def wait_for_ready(
        self,
        model: str,
        replicas: int = 1,
        *,
        timeout: float | None = None,
        metadata: requests.Metadata = (),
    ) -> int:
        """Waits until ``replicas`` replicas serve ``model``; returns how many do."""
        return self._run(requests.wait_for_ready(model, replicas), timeout, metadata)

    def generate(
        self,
        model: str,
        query: str,
        *,
        extra: Mapping[str, JSONValue] | None = None,
        timeout: float | None = None,
        metadata: requests.Metadata = (),
    ) -> list[tuple[str, float]]:
        """The model's samples for ``query`` as (text, score), best first."""
        return self._run(requests.generate(model, query, extra), timeout, metadata)

    def generate_stream(
        self,
        model: str,
        query: str,
        *,
        extra: Mapping[str, JSONValue] | None = None,
        timeout: float | None = None,
        metadata: requests.Metadata = (),
    ) -> Iterator[pb.GenerateStreamResponse]:
        """The stream's messages as they arrive; the last has ``done`` and the full texts.

        A stream that fails, whether before its first message or in-band in its last one,
        raises the same exceptions as a unary call.
        """
        request = requests.generate_stream(model, query, extra)
        return self.stream("GenerateStream", request, timeout=timeout, metadata=metadata)

    def stream(
        self,
        method: str,
        request: message.Message,
        *,
        timeout: float | None = None,
        metadata: requests.Metadata = (),
    ) -> Iterator[Any]:
        """Any streaming RPC by name (``"WatchAddresses"``): its messages as they arrive, with
        the deadline and error mapping; a message whose ``error`` is set is raised."""
        requests.check_stream(self, method, request)
        deadline = requests.timeout(self.timeout, timeout)
        sent = requests.metadata(self._metadata, metadata)
        rpc = getattr(self.stub, method)
        return _items(lambda: rpc(request, timeout=deadline, metadata=sent), lambda: self._closed)

    def score(
        self,
        model: str,
        prefix: str,
        suffixes: Sequence[str],
        *,
        extra: Mapping[str, JSONValue] | None = None,
        timeout: float | None = None,
        metadata: requests.Metadata = (),
    ) -> list[float]:
        """The log-probability of each suffix after ``prefix``."""
        return self._run(requests.score(model, prefix, suffixes, extra), timeout, metadata)

    def embed(
        self,
        model: str,
        text: str,
        *,
        extra: Mapping[str, JSONValue] | None = None,
        timeout: float | None = None,
        metadata: requests.Metadata = (),
    ) -> list[float]:
        """The model's embedding of ``text``."""
        return self._run(requests.embed(model, text, extra), timeout, metadata)
