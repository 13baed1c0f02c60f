"""Model servers that fail in ways grpc words itself: a status message longer than grpc's
metadata limits, a connection cut while a call is out, a reply that ends OK with no message.
Stand-ins over real sockets (a grpc.aio server, a TCP proxy that resets, a raw HTTP/2 server),
called through the client as the gateway calls them."""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
import h2.config
import h2.connection
import h2.events
import pytest

from gateway.client import (
    CallOptions,
    Client,
    ClientSettings,
    InternalError,
    InvalidArgumentError,
    UnavailableError,
)
from gateway.client._failover import LOST_AT_MOST
from tests._faultproxy import FaultProxy
from tests.integration._cell_fixtures import stand_in_server

MODEL = "/sax/test/lm"
T = CallOptions(timeout=10)


class _Refusing(grpc.GenericRpcHandler):
    """Refuses every call INVALID_ARGUMENT with a message of ``chars`` characters, as a server
    that puts its exception's whole text (a traceback, an XLA dump) in the status does."""

    def __init__(self, chars: int) -> None:
        self.chars = chars
        self.calls = 0

    def service(
        self, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler[bytes, bytes] | None:
        async def generate(
            request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]
        ) -> bytes:
            self.calls += 1
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "E" * self.chars)

        return grpc.unary_unary_rpc_method_handler(generate)


async def test_a_long_status_message_is_the_replicas_failure_not_an_overload(
    tmp_path: Path,
) -> None:
    # Over grpc's default metadata limits (8 KiB, 16 KiB at most) grpc failed the call
    # RESOURCE_EXHAUSTED "received metadata size exceeds ... limit": the model was taken
    # for overloaded, the call sent again to every replica for a second, and answered 429
    # "overloaded; retry later" (which the OpenAI SDKs retried: 54 runs of one request).
    refusing = _Refusing(30_000)
    async with stand_in_server(lambda s: s.add_generic_rpc_handlers((refusing,))) as address:
        settings = ClientSettings(sax_root=str(tmp_path), proxy_addr=address)
        async with Client(settings) as client:
            with pytest.raises(InvalidArgumentError) as refused:
                await client.lm_generate(MODEL, "hi", T)
            assert refused.value.message == (
                f"the model server of {MODEL} at {address} failed the call: {'E' * 30_000}"
            )
            assert refusing.calls == 1
            # Past this client's limit too: the replica's fault, once, not an overload.
            refusing.chars = 2 << 20
            with pytest.raises(InternalError) as over:
                await client.lm_generate(MODEL, "hi", T)
            assert over.value.message.startswith(
                f"a model server of {MODEL} answered with headers or trailers over this "
                "client's limit (Stream removed (received metadata size exceeds"
            ), over.value.message
            assert refusing.calls == 2


class _Poisoned(grpc.GenericRpcHandler):
    """A model server that each call brings down: its connections are reset (``cut``) while
    the call is out, as a server killed by the query (out of memory) leaves them."""

    def __init__(self) -> None:
        self.calls = 0
        self.cut: Callable[[], None] = lambda: None

    def service(
        self, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler[bytes, bytes] | None:
        async def generate(request: bytes, context: object) -> bytes:
            self.calls += 1
            self.cut()
            await asyncio.sleep(30)
            return b""

        return grpc.unary_unary_rpc_method_handler(generate)


async def test_a_call_whose_replicas_go_away_under_it_is_sent_a_bounded_number_of_times(
    tmp_path: Path,
) -> None:
    # It was sent again until its deadline: 11 times in 3 s to one replica, each time cutting
    # every other call the replica held; 49 times in 20 s to two.
    poisoned = _Poisoned()
    async with stand_in_server(lambda s: s.add_generic_rpc_handlers((poisoned,))) as address:
        proxy = FaultProxy(address)
        await proxy.start()
        poisoned.cut = proxy.reset_all
        try:
            settings = ClientSettings(sax_root=str(tmp_path), proxy_addr=proxy.address)
            async with Client(settings) as client:
                with pytest.raises(UnavailableError) as gone:
                    await client.lm_generate(MODEL, "poison", CallOptions(timeout=20))
        finally:
            await proxy.close()
    assert poisoned.calls == LOST_AT_MOST == 3
    # How grpc words the cut depends on whether it was reading or writing when the reset came.
    lost = (
        "(recvmsg:Connection reset by peer (104))",
        "(sendmsg: Broken pipe (32))",
    )
    assert gone.value.message in {
        f"the model servers of {MODEL} went away while holding this call 3 times, the last "
        f"at {proxy.address} (Stream removed {how}): it is not sent again, as it may be what "
        "brings them down"
        for how in lost
    }


@contextmanager
def _ok_without_a_message() -> Iterator[str]:
    """A raw HTTP/2 server that ends every call with grpc-status 0 and no message: what no
    grpc server sends, but a broken proxy or server may."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve(conn: socket.socket) -> None:
        h2conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
        h2conn.initiate_connection()
        conn.sendall(h2conn.data_to_send())
        with conn:
            while not stop.is_set() and (data := conn.recv(65536)):
                for event in h2conn.receive_data(data):
                    if isinstance(event, h2.events.StreamEnded):
                        headers = [(":status", "200"), ("content-type", "application/grpc")]
                        h2conn.send_headers(event.stream_id, headers)
                        h2conn.send_headers(event.stream_id, [("grpc-status", "0")], True)
                conn.sendall(h2conn.data_to_send())

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield f"127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        listener.close()


async def test_a_reply_that_ends_ok_without_a_message_is_the_replicas_failure(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # grpc.aio handed the parser None: a TypeError logged with a traceback, then the gateway's
    # AttributeError on None, another, and a 500 "internal error in sax-gateway".
    with _ok_without_a_message() as address:
        settings = ClientSettings(sax_root=str(tmp_path), proxy_addr=address)
        async with Client(settings) as client:
            with pytest.raises(InternalError) as empty:
                await client.lm_generate(MODEL, "hi", T)
    assert empty.value.message == (
        f"the model server of {MODEL} at {address} answered with a reply that does not parse: "
        "it ended OK with no reply message"
    )
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
