"""An asyncio client of the SaxGateway gRPC API, for programs that must not block their event
loop (a web server calling models, many calls in flight at once).

async with AsyncClient("localhost:8888") as client:
    print(await client.generate("/sax/test/lm2b", "Q: Who is Harry Potter's mom? A: "))

Same calls, deadlines and exceptions as :class:`Client`; the requests and replies are built
and read in one place for both (``_requests``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
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


async def _items(start: Callable[[], Any], closed: Callable[[], bool]) -> AsyncIterator[Any]:
    """A streaming call's messages, the call started at the first step; a failure, before
    the first message or in-band in the last one, raised as a SaxGatewayError (a close of
    the client, ``closed()``, too)."""
    if closed():
        raise closed_error()
    call = start()
    try:
        async for item in call:
            # A consumer that stops at the last message (`done`, as a loop that breaks there
            # does) would cancel a call that succeeded, and the gateway would count it so.
            # A failed call's last message is in-band too: its status, which follows, is
            # raised instead (its trailers say when to retry), or the in-band error if none.
            if getattr(item, "done", False):
                async for _ in call:  # the call's status follows its last message: read it
                    pass
            if (error := in_band_error(item)) is not None:
                raise error
            yield item
    except grpc.RpcError as exc:
        raise from_rpc_error(exc) from exc
    except asyncio.CancelledError:
        if not closed():
            raise  # the caller's task was cancelled
        raise closed_error() from None
    finally:
        call.cancel()  # a consumer that stops early (or is cancelled) frees the call at once


class AsyncClient:
    """One grpc.aio channel to a gateway (Envoy's public port, or a gateway process).

    Create it inside the event loop that uses it (grpc.aio binds a channel to its loop).
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
        # Closed: grpc.aio ends the calls in flight with asyncio.CancelledError, and refuses
        # later ones with its UsageError, which no `except SaxGatewayError` caught; both raise
        # CancelledError.
        self._closed = False
        self._metadata = requests.metadata((), metadata)
        self._channel = (
            grpc.aio.secure_channel(target, credentials, requests.channel_options(options))
            if credentials is not None
            else grpc.aio.insecure_channel(target, requests.channel_options(options))
        )
        self.stub = gateway_pb2_grpc.SaxGatewayStub(self._channel)
        """The generated stub (grpc.aio), for calls without this wrapper's deadline and errors."""

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Closes the channel; calls in flight and later calls raise :class:`CancelledError`."""
        self._closed = True
        await self._channel.close()

    async def call(
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
            return await getattr(self.stub, method)(
                request,
                timeout=requests.timeout(self.timeout, timeout),
                metadata=requests.metadata(self._metadata, metadata),
            )
        except grpc.RpcError as exc:
            raise from_rpc_error(exc) from exc
        except asyncio.CancelledError:
            if not self._closed:
                raise  # the caller's task was cancelled
            raise closed_error() from None

    async def _run(
        self, call: requests.Unary[_Result], timeout: float | None, metadata: requests.Metadata
    ) -> _Result:
        return call.read(
            await self.call(call.method, call.request, timeout=timeout, metadata=metadata)
        )

    async def publish(
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
        return await self._run(call, timeout, metadata)

    async def unpublish(
        self, model: str, *, timeout: float | None = None, metadata: requests.Metadata = ()
    ) -> None:
        """Unpublishes a model; NotFoundError if it is not published."""
        await self._run(requests.unpublish(model), timeout, metadata)

    async def wait_for_ready(
        self,
        model: str,
        replicas: int = 1,
        *,
        timeout: float | None = None,
        metadata: requests.Metadata = (),
    ) -> int:
        """Waits until ``replicas`` replicas serve ``model``; returns how many do."""
        return await self._run(requests.wait_for_ready(model, replicas), timeout, metadata)

    async def generate(
        self,
        model: str,
        query: str,
        *,
        extra: Mapping[str, JSONValue] | None = None,
        timeout: float | None = None,
        metadata: requests.Metadata = (),
    ) -> list[tuple[str, float]]:
        """The model's samples for ``query`` as (text, score), best first."""
        return await self._run(requests.generate(model, query, extra), timeout, metadata)

    def generate_stream(
        self,
        model: str,
        query: str,
        *,
        extra: Mapping[str, JSONValue] | None = None,
        timeout: float | None = None,
        metadata: requests.Metadata = (),
    ) -> AsyncIterator[pb.GenerateStreamResponse]:
        """The stream's messages as they arrive (``async for``); the last has ``done`` and the
        full texts. A failure, before the first message or in-band in the last one, raises
        the same exceptions as a unary call."""
        request = requests.generate_stream(model, query, extra)
        return self.stream("GenerateStream", request, timeout=timeout, metadata=metadata)

    def stream(
        self,
        method: str,
        request: message.Message,
        *,
        timeout: float | None = None,
        metadata: requests.Metadata = (),
    ) -> AsyncIterator[Any]:
        """Any streaming RPC by name (``"WatchAddresses"``): its messages as they arrive, with
        the deadline and error mapping; a message whose ``error`` is set is raised."""
        requests.check_stream(self, method, request)
        deadline = requests.timeout(self.timeout, timeout)
        sent = requests.metadata(self._metadata, metadata)
        rpc = getattr(self.stub, method)
        return _items(lambda: rpc(request, timeout=deadline, metadata=sent), lambda: self._closed)

    async def score(
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
        return await self._run(requests.score(model, prefix, suffixes, extra), timeout, metadata)

    async def embed(
        self,
        model: str,
        text: str,
        *,
        extra: Mapping[str, JSONValue] | None = None,
        timeout: float | None = None,
        metadata: requests.Metadata = (),
    ) -> list[float]:
        """The model's embedding of ``text``."""
        return await self._run(requests.embed(model, text, extra), timeout, metadata)
