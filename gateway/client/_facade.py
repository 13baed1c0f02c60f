"""The machinery behind ``gateway.client.sax``: upstream-shaped option classes and the
background event-loop thread that hosts the shared ``Client`` instances.

This is an edge: the clients it makes take SAX_ROOT (and, for a GCS emulator,
STORAGE_EMULATOR_HOST) from the environment, like upstream's client does.
"""

from __future__ import annotations

import asyncio
import atexit
import math
import os
import threading
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from saxml.protobuf import common_pb2

from gateway.client._client import Client
from gateway.client._types import CallOptions, ClientSettings
from gateway.common.errors import FailedPreconditionError

_T = TypeVar("_T")

# Upstream's defaults (saxml/client/cc/sax.h).
_DEFAULT_NUM_CONN = 37


class Options:
    """Options of ``Model``: ``num_conn``, ``proxy_addr``, ``fail_fast``."""

    def __init__(self) -> None:
        self.num_conn = _DEFAULT_NUM_CONN
        self.proxy_addr = ""
        self.fail_fast = False

    def __copy__(self) -> Options:
        copy = Options()
        copy.num_conn, copy.proxy_addr, copy.fail_fast = (
            self.num_conn,
            self.proxy_addr,
            self.fail_fast,
        )
        return copy

    def __deepcopy__(self, memo: dict[int, Any]) -> Options:
        return self.__copy__()


class AdminOptions:
    """Options of admin functions: ``timeout`` in seconds (0 or negative: none)."""

    def __init__(self) -> None:
        self.timeout = -1.0


class ModelOptions:
    """Per-call options of a data method: extra inputs and a timeout."""

    def __init__(self) -> None:
        self._items: dict[str, float] = {}
        self._tensors: dict[str, list[float]] = {}
        self._strings: dict[str, str] = {}
        self._timeout = -1.0

    def SetExtraInput(self, key: str, value: float) -> None:
        self._items[key] = float(value)

    def SetExtraInputTensor(self, key: str, value: Sequence[float]) -> None:
        self._tensors[key] = [float(v) for v in value]

    def SetExtraInputString(self, key: str, value: str) -> None:
        self._strings[key] = value

    def GetExtraInput(self, key: str) -> float:
        return self._items[key]

    def GetExtraInputTensor(self, key: str) -> list[float]:
        return self._tensors[key]

    def GetExtraInputString(self, key: str) -> str:
        return self._strings[key]

    def SetTimeout(self, seconds: float) -> None:
        """Deadline of each call made with these options; 0 or negative means none."""
        self._timeout = float(seconds)

    def GetTimeout(self) -> float:
        return self._timeout

    def ToDebugString(self) -> str:
        """The extra inputs as protobuf's text format, as upstream's (empty for none)."""
        return str(self.ToProto())

    def ToProto(self) -> common_pb2.ExtraInputs:
        """The extra inputs as the ``ExtraInputs`` message every data request carries."""
        return self.to_call_options().extra_inputs_proto() or common_pb2.ExtraInputs()

    def __copy__(self) -> ModelOptions:
        copy = ModelOptions()
        copy._items, copy._tensors = dict(self._items), dict(self._tensors)
        copy._strings, copy._timeout = dict(self._strings), self._timeout
        return copy

    def __deepcopy__(self, memo: dict[int, Any]) -> ModelOptions:
        return self.__copy__()

    def to_call_options(self) -> CallOptions:
        return CallOptions(
            extra_inputs=dict(self._items),
            extra_strings=dict(self._strings),
            extra_tensors=dict(self._tensors),
            timeout=self._timeout if self._timeout > 0 else None,  # 0: none, as upstream
        )


@dataclass(frozen=True)
class ModelDetail:
    """What ``ListDetail`` returns (upstream's field names)."""

    model: str
    ckpt: str
    max_replicas: int
    active_replicas: int
    overrides: dict[str, str]


class Runtime:
    """The background event loop thread and the clients it hosts, started on first use."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._clients: dict[tuple[int, bool, str], Client] = {}

    def run(self, coro: Coroutine[Any, Any, _T]) -> _T:
        future = asyncio.run_coroutine_threadsafe(coro, self.loop())
        try:
            return future.result()
        except BaseException:
            future.cancel()  # e.g. KeyboardInterrupt while waiting: stop the call too
            raise

    def client(self, options: Options | None = None) -> Client:
        options = options or _DEFAULT_OPTIONS
        key = (options.num_conn, options.fail_fast, options.proxy_addr)
        loop = self.loop()
        with self._lock:
            client = self._clients.get(key)
            if client is None:
                root = os.environ.get("SAX_ROOT", "")
                if not root:
                    raise FailedPreconditionError("SAX_ROOT is not set")
                settings = ClientSettings(
                    sax_root=root,
                    gcs_endpoint=os.environ.get("STORAGE_EMULATOR_HOST") or None,
                    num_conn=options.num_conn,
                    fail_fast=options.fail_fast,
                    proxy_addr=options.proxy_addr or None,
                )
                # Made on the loop's thread: a Client binds to the loop that runs it.
                made = asyncio.run_coroutine_threadsafe(_make_client(settings), loop)
                client = self._clients[key] = made.result()
            return client

    def loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                threading.Thread(target=loop.run_forever, name="sax-client", daemon=True).start()
                self._loop = loop
                atexit.register(self.shutdown)
            return self._loop

    def shutdown(self) -> None:
        """Closes the clients and stops the loop (at interpreter exit)."""
        with self._lock:
            loop, clients, self._loop, self._clients = self._loop, self._clients, None, {}
        if loop is None:
            return

        async def close_all() -> None:
            await asyncio.gather(*(c.close() for c in clients.values()), return_exceptions=True)

        try:
            asyncio.run_coroutine_threadsafe(close_all(), loop).result(timeout=5)
        finally:
            loop.call_soon_threadsafe(loop.stop)


async def _make_client(settings: ClientSettings) -> Client:
    return Client(settings)


_DEFAULT_OPTIONS = Options()
runtime = Runtime()


def admin_timeout(options: AdminOptions | None) -> float:
    """An ``AdminOptions``' timeout for ``Client``: none (``math.inf``) unless positive, as
    upstream's (its default, -1, and 0 too, wait as long as the operation takes; mapped to
    the client's 10 s, a `WaitForReady` of a model that loads for a minute failed)."""
    return options.timeout if options is not None and options.timeout > 0 else math.inf


def call_options(options: ModelOptions | None) -> CallOptions | None:
    """A ``ModelOptions`` as ``CallOptions``."""
    return options.to_call_options() if options is not None else None
