"""A synchronous facade shaped like upstream Sax's Python ``sax`` module.

Code written against upstream runs after changing only its import line::

    from gateway.client import sax

    sax.Publish("/sax/test/lm", "saxml.server.pax.lm.params.lm_cloud.LmCloudSpmd2BTest", "None", 1)
    options = sax.ModelOptions()
    options.SetExtraInput("temperature", 0.5)
    print(sax.Model("/sax/test/lm").LM().Generate("Hello", options))

This module is an edge: like upstream, it reads SAX_ROOT from the environment (and, for a GCS
emulator, STORAGE_EMULATOR_HOST). One background thread runs an event loop hosting shared
``Client`` instances; each call submits a coroutine to it and waits. Failures raise
``SaxError`` subclasses (upstream raises status exceptions carrying the same codes).
"""

from __future__ import annotations

import asyncio
import atexit
import os
import queue
import threading
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from gateway.client._client import Client
from gateway.client._types import CallOptions, ClientSettings, ServerTypeStat
from gateway.client.errors import FailedPreconditionError, InvalidArgumentError

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
    """Options of admin functions: ``timeout`` in seconds (negative: the client default)."""

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
        """Deadline of each call made with these options; negative means none."""
        self._timeout = float(seconds)

    def GetTimeout(self) -> float:
        return self._timeout

    def ToDebugString(self) -> str:
        return repr(self._call_options())

    def __copy__(self) -> ModelOptions:
        copy = ModelOptions()
        copy._items, copy._tensors = dict(self._items), dict(self._tensors)
        copy._strings, copy._timeout = dict(self._strings), self._timeout
        return copy

    def __deepcopy__(self, memo: dict[int, Any]) -> ModelOptions:
        return self.__copy__()

    def _call_options(self) -> CallOptions:
        return CallOptions(
            extra_inputs=dict(self._items),
            extra_strings=dict(self._strings),
            extra_tensors=dict(self._tensors),
            timeout=self._timeout if self._timeout >= 0 else None,
        )


@dataclass(frozen=True)
class ModelDetail:
    """What ``ListDetail`` returns (upstream's field names)."""

    model: str
    ckpt: str
    max_replicas: int
    active_replicas: int
    overrides: dict[str, str]


ModelServerTypeStat = ServerTypeStat


class _Runtime:
    """The background event loop thread and the clients it hosts, started on first use."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._clients: dict[tuple[int, bool, str], Client] = {}

    def run(self, coro: Coroutine[Any, Any, _T]) -> _T:
        future = asyncio.run_coroutine_threadsafe(coro, self._ensure_loop())
        try:
            return future.result()
        except BaseException:
            future.cancel()  # e.g. KeyboardInterrupt while waiting: stop the call too
            raise

    def client(self, options: Options | None = None) -> Client:
        options = options or _DEFAULT_OPTIONS
        key = (options.num_conn, options.fail_fast, options.proxy_addr)
        loop = self._ensure_loop()
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

    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
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
_runtime = _Runtime()


def _admin_timeout(options: AdminOptions | None) -> float | None:
    return options.timeout if options is not None and options.timeout >= 0 else None


def _call_options(options: ModelOptions | None) -> CallOptions | None:
    return options._call_options() if options is not None else None


class LanguageModel:
    """``Model(id).LM()``."""

    def __init__(self, model_id: str, client: Client) -> None:
        self._id, self._client = model_id, client

    def Generate(self, text: str, options: ModelOptions | None = None) -> list[tuple[str, float]]:
        return _runtime.run(self._client.lm_generate(self._id, text, _call_options(options)))

    def GenerateStream(
        self,
        text: str,
        callback: Callable[[bool, list[tuple[str, int, list[float]]]], None],
        options: ModelOptions | None = None,
    ) -> None:
        """Calls ``callback(False, [(text, prefix_len, scores), ...])`` per response, then
        ``callback(True, [])``; the callback runs on the calling thread."""
        items: queue.Queue[list[tuple[str, int, list[float]]] | BaseException | None]
        items = queue.Queue()
        client, call_options = self._client, _call_options(options)

        async def pump() -> None:
            try:
                async for response in client.lm_generate_stream(self._id, text, call_options):
                    items.put([(i.text, i.prefix_len, i.scores) for i in response])
                items.put(None)
            except BaseException as exc:  # handed to the calling thread, which re-raises it
                items.put(exc)
                raise

        loop = _runtime._ensure_loop()
        future = asyncio.run_coroutine_threadsafe(pump(), loop)
        try:
            while (item := items.get()) is not None:
                if isinstance(item, BaseException):
                    raise item
                callback(False, item)
            callback(True, [])
        finally:
            future.cancel()  # the callback raised, or the caller gave up: end the RPC

    def Score(
        self, prefix: str, suffix: Sequence[str], options: ModelOptions | None = None
    ) -> list[float]:
        return _runtime.run(self._client.lm_score(self._id, prefix, suffix, _call_options(options)))

    def Embed(self, text: str, options: ModelOptions | None = None) -> list[float]:
        return _runtime.run(self._client.lm_embed(self._id, text, _call_options(options)))

    def Gradient(
        self, prefix: str, suffix: str, options: ModelOptions | None = None
    ) -> tuple[list[float], dict[str, list[float]]]:
        return _runtime.run(
            self._client.lm_gradient(self._id, prefix, suffix, _call_options(options))
        )


class VisionModel:
    """``Model(id).VM()``."""

    def __init__(self, model_id: str, client: Client) -> None:
        self._id, self._client = model_id, client

    def Classify(
        self, image_bytes: bytes, options: ModelOptions | None = None
    ) -> list[tuple[str, float]]:
        return _runtime.run(self._client.vm_classify(self._id, image_bytes, _call_options(options)))

    def TextToImage(
        self, text: str, options: ModelOptions | None = None
    ) -> list[tuple[bytes, float]]:
        return _runtime.run(self._client.vm_text_to_image(self._id, text, _call_options(options)))

    def Embed(self, image: bytes, options: ModelOptions | None = None) -> list[float]:
        return _runtime.run(self._client.vm_embed(self._id, image, _call_options(options)))

    def Detect(
        self,
        image_bytes: bytes,
        text: Sequence[str] = (),
        boxes: Sequence[tuple[float, float, float, float]] = (),
        options: ModelOptions | None = None,
    ) -> list[tuple[float, float, float, float, bytes, float, tuple[int, int, bytes]]]:
        found = _runtime.run(
            self._client.vm_detect(self._id, image_bytes, text, _call_options(options), boxes=boxes)
        )
        return [
            (
                b.cx,
                b.cy,
                b.w,
                b.h,
                b.text.encode(),
                b.score,
                (b.mask_height, b.mask_width, b.mask_values),
            )
            for b in found
        ]

    def ImageToText(
        self, image_bytes: bytes, text: str = "", options: ModelOptions | None = None
    ) -> list[tuple[bytes, float]]:
        texts = _runtime.run(
            self._client.vm_image_to_text(self._id, image_bytes, text, _call_options(options))
        )
        return [(t.encode(), score) for t, score in texts]


class AudioModel:
    """``Model(id).AM()``."""

    def __init__(self, model_id: str, client: Client) -> None:
        self._id, self._client = model_id, client

    def Recognize(
        self, audio_bytes: bytes, options: ModelOptions | None = None
    ) -> list[tuple[str, float]]:
        return _runtime.run(
            self._client.am_recognize(self._id, audio_bytes, _call_options(options))
        )


class CustomModel:
    """``Model(id).CM()``."""

    def __init__(self, model_id: str, client: Client) -> None:
        self._id, self._client = model_id, client

    def Custom(
        self, request: bytes, method_name: str, options: ModelOptions | None = None
    ) -> bytes:
        return _runtime.run(
            self._client.custom(self._id, request, method_name, _call_options(options))
        )


class Model:
    """A published model: ``Model("/sax/test/lm", options).LM().Generate(...)``."""

    def __init__(self, id: str, options: Options | None = None) -> None:
        if options is not None and options.num_conn <= 0:
            raise InvalidArgumentError("num_conn must be positive")
        self._id = id
        self._client = _runtime.client(options)

    def LM(self) -> LanguageModel:
        return LanguageModel(self._id, self._client)

    def VM(self) -> VisionModel:
        return VisionModel(self._id, self._client)

    def AM(self) -> AudioModel:
        return AudioModel(self._id, self._client)

    def CM(self) -> CustomModel:
        return CustomModel(self._id, self._client)


def Publish(
    id: str,
    model_path: str,
    checkpoint_path: str,
    num_replicas: int,
    overrides: Mapping[str, str] | None = None,
    options: AdminOptions | None = None,
) -> None:
    client = _runtime.client()
    _runtime.run(
        client.publish(
            id,
            model_path,
            checkpoint_path,
            num_replicas,
            overrides,
            timeout=_admin_timeout(options),
        )
    )


def Unpublish(id: str, options: AdminOptions | None = None) -> None:
    _runtime.run(_runtime.client().unpublish(id, timeout=_admin_timeout(options)))


def Update(
    id: str,
    model_path: str,
    checkpoint_path: str,
    num_replicas: int,
    options: AdminOptions | None = None,
) -> None:
    update = _runtime.client().update(
        id,
        model_path=model_path,
        checkpoint=checkpoint_path,
        num_replicas=num_replicas,
        timeout=_admin_timeout(options),
    )
    _runtime.run(update)


def List(id: str, options: AdminOptions | None = None) -> tuple[str, str, int]:
    """``(model_path, checkpoint, active_replicas)`` of a published model."""
    detail = ListDetail(id, options)
    return detail.model, detail.ckpt, detail.active_replicas


def ListDetail(id: str, options: AdminOptions | None = None) -> ModelDetail:
    detail = _runtime.run(_runtime.client().list_detail(id, timeout=_admin_timeout(options)))
    return ModelDetail(
        model=detail.model_path,
        ckpt=detail.checkpoint,
        max_replicas=detail.max_replicas,
        active_replicas=detail.active_replicas,
        overrides=detail.overrides,
    )


def ListAll(id: str, options: AdminOptions | None = None) -> list[str]:
    """Model IDs published in cell ``id`` (``"/sax/test"``)."""
    details = _runtime.run(_runtime.client().list_all(id, timeout=_admin_timeout(options)))
    return [d.model_id for d in details]


def Stats(id: str, options: AdminOptions | None = None) -> list[ServerTypeStat]:
    stats = _runtime.run(_runtime.client().stats(id, timeout=_admin_timeout(options)))
    return stats.server_types


def WaitForReady(
    id: str,
    num_replicas: int,
    options: AdminOptions | None = None,
) -> None:
    wait = _runtime.client().wait_for_ready(id, num_replicas, timeout=_admin_timeout(options))
    _runtime.run(wait)


_ALL_METHODS = "all"


def GetACL(
    cell_or_model_id: str, method_id: str = "", options: AdminOptions | None = None
) -> str | dict[str, str]:
    """The admin ACL of a cell or model; with ``method_id`` a data method's ACL, or with
    ``"all"`` every data method's ACL."""
    client, timeout = _runtime.client(), _admin_timeout(options)
    if method_id == _ALL_METHODS:
        return _runtime.run(client.list_detail(cell_or_model_id, timeout=timeout)).acls
    method = method_id or None
    return _runtime.run(client.get_acl(cell_or_model_id, method=method, timeout=timeout))


def SetACL(
    cell_or_model_id: str, acl: str, method_id: str = "", options: AdminOptions | None = None
) -> None:
    client, timeout = _runtime.client(), _admin_timeout(options)
    method = method_id or None
    _runtime.run(client.set_acl(cell_or_model_id, acl, method=method, timeout=timeout))


def StartDebugPort(port: int) -> None:
    """Upstream starts a debug server; this client has none (a no-op kept for compatibility)."""
