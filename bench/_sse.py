"""A minimal HTTP/1.1 Server-Sent Events client that timestamps every read on arrival.

It is an asyncio protocol rather than an HTTP library so that the time taken for a read is
taken in ``data_received``, before any parsing, and so that 1,000 of them cost little.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Event:
    arrived_ns: int
    data: dict[str, Any]


@dataclass
class SseResult:
    status: int
    sent_ns: int
    first_byte_ns: int
    events: list[Event] = field(default_factory=list)


class SseStream(asyncio.Protocol):
    """POSTs a JSON body and records what arrives; ``closed`` resolves when the server closes
    the connection (the request says ``Connection: close``)."""

    def __init__(self, host: str, path: str, body: dict[str, Any]) -> None:
        payload = json.dumps(body).encode()
        self._request = (
            f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n"
        ).encode() + payload
        self.arrivals: list[tuple[int, bytes]] = []
        self.sent_ns = 0
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.got_data = asyncio.Event()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.sent_ns = time.time_ns()
        transport.write(self._request)

    def data_received(self, data: bytes) -> None:
        self.arrivals.append((time.time_ns(), data))
        if b"data:" in data:
            self.got_data.set()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def result(self) -> SseResult:
        """Parses what arrived: status, then chunked or close-delimited SSE events, each
        stamped with the arrival time of the read that completed it."""
        raw, body, headers = b"", b"", None
        chunked, status = False, 0
        result = SseResult(0, self.sent_ns, self.arrivals[0][0] if self.arrivals else 0)
        for arrived, data in self.arrivals:
            raw += data
            if headers is None:
                head, sep, rest = raw.partition(b"\r\n\r\n")
                if not sep:
                    continue
                headers = head.decode("latin-1").lower()
                status = int(headers.split(" ", 2)[1])
                chunked = "transfer-encoding: chunked" in headers
                raw = rest
            if chunked:
                decoded, raw = _dechunk(raw)
                body += decoded
            else:
                body, raw = body + raw, b""
            while b"\n\n" in body:
                event, body = body.split(b"\n\n", 1)
                for line in event.split(b"\n"):
                    if line.startswith(b"data:"):
                        result.events.append(Event(arrived, json.loads(line[5:])))
        result.status = status
        return result


def _dechunk(raw: bytes) -> tuple[bytes, bytes]:
    """Complete chunks of ``raw`` decoded, and the incomplete rest."""
    out = b""
    while True:
        line, sep, rest = raw.partition(b"\r\n")
        if not sep:
            return out, raw
        size = int(line.split(b";")[0], 16)
        if len(rest) < size + 2:
            return out, raw
        out += rest[:size]
        raw = rest[size + 2 :]


async def open_stream(host: str, port: int, path: str, body: dict[str, Any]) -> SseStream:
    loop = asyncio.get_running_loop()
    _, protocol = await loop.create_connection(
        lambda: SseStream(f"{host}:{port}", path, body), host, port
    )
    return protocol
