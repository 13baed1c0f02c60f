"""A fault-injecting TCP proxy for tests: sits between two hops and breaks the network
between them (resets, FINs, blackholes, latency, bandwidth limits, truncation, refusal).

    proxy = FaultProxy("127.0.0.1:10001")
    await proxy.start()          # listens on proxy.address
    proxy.blackhole = True       # stop forwarding both ways; keep the sockets open
    proxy.silence_open()         # the same for the connections open now alone, for good
    proxy.reset_all()            # RST every connection open now
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct


class FaultProxy:
    def __init__(self, target: str, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self._target_host, _, target_port = target.rpartition(":")
        self._target_port = int(target_port)
        self._host = host
        self._port = port
        self._server: asyncio.Server | None = None
        self._pairs: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._silenced: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        #: Forward nothing either way while set (both sockets stay open).
        self.blackhole = False
        #: Seconds added before each chunk is forwarded.
        self.latency = 0.0
        #: Bytes a second each direction may carry (0: unlimited).
        self.rate = 0
        #: Forward at most this many more bytes from the target to the client, then stall.
        self.truncate_after: int | None = None

    @property
    def address(self) -> str:
        return f"{self._host}:{self._port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, self._host, self._port)
        self._port = self._server.sockets[0].getsockname()[1]

    async def stop_listening(self) -> None:
        """Refuses new connections (the port stays ours to listen on again)."""
        if self._server is not None:
            self._server.close()
            self._server = None

    async def close(self) -> None:
        await self.stop_listening()
        self.reset_all()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def reset_all(self) -> None:
        """Sends RST on both sides of every open connection."""
        for client, upstream in list(self._pairs):
            _reset(client)
            _reset(upstream)
        self._pairs.clear()

    def silence_open(self) -> None:
        """Forwards nothing more on the connections open now, either way, and keeps their
        sockets open: a NAT or load balancer that forgot them (half-open connections). New
        connections are forwarded."""
        self._silenced.update(self._pairs)

    def fin_all(self) -> None:
        """Closes both sides of every open connection cleanly (FIN)."""
        for client, upstream in list(self._pairs):
            client.close()
            upstream.close()
        self._pairs.clear()

    @property
    def connections(self) -> int:
        return len(self._pairs)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(
                self._target_host, self._target_port
            )
        except OSError:
            _reset(writer)
            return
        pair = (writer, up_writer)
        self._pairs.add(pair)
        tasks = [
            asyncio.create_task(self._pump(reader, up_writer, pair, reply=False)),
            asyncio.create_task(self._pump(up_reader, writer, pair, reply=True)),
        ]
        self._tasks.update(tasks)
        try:
            await asyncio.gather(*tasks, return_exceptions=True)
        finally:
            self._tasks.difference_update(tasks)
            self._pairs.discard(pair)
            self._silenced.discard(pair)
            writer.close()
            up_writer.close()

    async def _pump(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        pair: tuple[asyncio.StreamWriter, asyncio.StreamWriter],
        *,
        reply: bool,
    ) -> None:
        while True:
            chunk = await reader.read(16384 if not self.rate else max(1, self.rate // 10))
            if not chunk:
                with contextlib.suppress(OSError):
                    writer.write_eof()
                return
            while self.blackhole or pair in self._silenced:
                await asyncio.sleep(0.05)
            if self.latency:
                await asyncio.sleep(self.latency)
            if reply and self.truncate_after is not None:
                allowed = max(0, self.truncate_after)
                self.truncate_after -= len(chunk)
                chunk = chunk[:allowed]
                if not chunk:
                    await asyncio.Event().wait()
            if self.rate:
                await asyncio.sleep(len(chunk) / self.rate)
            writer.write(chunk)
            await writer.drain()


def _reset(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()
