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
import queue
from collections.abc import Callable, Mapping, Sequence

from saxml.protobuf import multimodal_pb2

from gateway.client._client import Client

# Upstream's sax module has these names; `X as X` re-exports them, so that code written against
# upstream (`sax.ModelOptions()`) type-checks under mypy --strict too.
from gateway.client._facade import AdminOptions as AdminOptions
from gateway.client._facade import ModelDetail as ModelDetail
from gateway.client._facade import ModelOptions as ModelOptions
from gateway.client._facade import Options as Options
from gateway.client._facade import admin_timeout, call_options, runtime
from gateway.client._types import ServerTypeStat
from gateway.common.errors import InvalidArgumentError, SaxError, Status

ModelServerTypeStat = ServerTypeStat


class _ModelPart:
    """What ``Model(id).LM()``, ``.VM()``, ... share: the model and the client calling it."""

    def __init__(self, model_id: str, client: Client) -> None:
        self._id, self._client = model_id, client


class LanguageModel(_ModelPart):
    """``Model(id).LM()``."""

    def Generate(self, text: str, options: ModelOptions | None = None) -> list[tuple[str, float]]:
        return runtime.run(self._client.lm_generate(self._id, text, call_options(options)))

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
        client, opts = self._client, call_options(options)

        async def pump() -> None:
            try:
                async for response in client.lm_generate_stream(self._id, text, opts):
                    items.put([(i.text, i.prefix_len, i.scores) for i in response])
                items.put(None)
            except BaseException as exc:  # handed to the calling thread, which re-raises it
                items.put(exc)
                raise

        loop = runtime.loop()
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
        return runtime.run(
            self._client.lm_score(
                self._id, prefix, _strings("suffix", suffix), call_options(options)
            )
        )

    def Embed(self, text: str, options: ModelOptions | None = None) -> list[float]:
        return runtime.run(self._client.lm_embed(self._id, text, call_options(options)))

    def Gradient(
        self, prefix: str, suffix: str, options: ModelOptions | None = None
    ) -> tuple[list[float], dict[str, list[float]]]:
        return runtime.run(
            self._client.lm_gradient(self._id, prefix, suffix, call_options(options))
        )


def _strings(name: str, values: Sequence[str]) -> Sequence[str]:
    """``values``, a list of strings; TypeError for one string, as upstream's binding raises
    (taken as a sequence, ``Score("a", "bcd")`` scored three suffixes, one a character)."""
    if isinstance(values, str | bytes):
        raise TypeError(f"{name} must be a list of strings, not a single {type(values).__name__}")
    return values


class VisionModel(_ModelPart):
    """``Model(id).VM()``."""

    def Classify(
        self, image_bytes: bytes, options: ModelOptions | None = None
    ) -> list[tuple[str, float]]:
        return runtime.run(self._client.vm_classify(self._id, image_bytes, call_options(options)))

    def TextToImage(
        self, text: str, options: ModelOptions | None = None
    ) -> list[tuple[bytes, float]]:
        return runtime.run(self._client.vm_text_to_image(self._id, text, call_options(options)))

    def Embed(self, image: bytes, options: ModelOptions | None = None) -> list[float]:
        return runtime.run(self._client.vm_embed(self._id, image, call_options(options)))

    def Detect(
        self,
        image_bytes: bytes,
        text: Sequence[str] = (),
        boxes: Sequence[tuple[float, float, float, float]] = (),
        options: ModelOptions | None = None,
    ) -> list[tuple[float, float, float, float, bytes, float, tuple[int, int, bytes]]]:
        texts = _strings("text", text)
        found = runtime.run(
            self._client.vm_detect(self._id, image_bytes, texts, call_options(options), boxes=boxes)
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
        texts = runtime.run(
            self._client.vm_image_to_text(self._id, image_bytes, text, call_options(options))
        )
        return [(t.encode(), score) for t, score in texts]

    # Upstream names this argument ``text`` although it is the image's bytes.
    def ImageToImage(
        self, text: bytes, options: ModelOptions | None = None
    ) -> list[tuple[bytes, float]]:
        return runtime.run(self._client.vm_image_to_image(self._id, text, call_options(options)))

    def TextAndImageToImage(
        self, text: str, image_bytes: bytes, options: ModelOptions | None = None
    ) -> list[tuple[bytes, float]]:
        return runtime.run(
            self._client.vm_text_and_image_to_image(
                self._id, text, image_bytes, call_options(options)
            )
        )

    def VideoToText(
        self, image_frames: Sequence[bytes], text: str = "", options: ModelOptions | None = None
    ) -> list[tuple[bytes, float]]:
        texts = runtime.run(
            self._client.vm_video_to_text(self._id, image_frames, text, call_options(options))
        )
        return [(t.encode(), score) for t, score in texts]

    def VideoToToken(
        self, image_frames: Sequence[bytes], options: ModelOptions | None = None
    ) -> list[float]:
        return runtime.run(
            self._client.vm_video_to_token(self._id, image_frames, call_options(options))
        )

    def TokenToVideo(
        self, tokens: Sequence[float], options: ModelOptions | None = None
    ) -> list[bytes]:
        return runtime.run(self._client.vm_token_to_video(self._id, tokens, call_options(options)))


class AudioModel(_ModelPart):
    """``Model(id).AM()``."""

    def Recognize(
        self, audio_bytes: bytes, options: ModelOptions | None = None
    ) -> list[tuple[str, float]]:
        return runtime.run(self._client.am_recognize(self._id, audio_bytes, call_options(options)))


class CustomModel(_ModelPart):
    """``Model(id).CM()``."""

    def Custom(
        self, request: bytes, method_name: str, options: ModelOptions | None = None
    ) -> bytes:
        return runtime.run(
            self._client.custom(self._id, request, method_name, call_options(options))
        )

    def CustomNoException(
        self, request: bytes, method_name: str, options: ModelOptions | None = None
    ) -> Status | bytes:
        """``Custom``, but a failure is returned as its ``Status`` instead of raised."""
        try:
            return self.Custom(request, method_name, options)
        except SaxError as exc:
            return exc.status


class MultimodalModel(_ModelPart):
    """``Model(id).MM()``: requests and replies are ``saxml.protobuf.multimodal_pb2`` messages."""

    def Generate(
        self, request: multimodal_pb2.GenerateRequest, options: ModelOptions | None = None
    ) -> multimodal_pb2.GenerateResponse:
        return runtime.run(self._client.mm_generate(self._id, request, call_options(options)))

    def Score(
        self, request: multimodal_pb2.ScoreRequest, options: ModelOptions | None = None
    ) -> multimodal_pb2.ScoreResponse:
        return runtime.run(self._client.mm_score(self._id, request, call_options(options)))

    def Embed(
        self, request: multimodal_pb2.EmbedRequest, options: ModelOptions | None = None
    ) -> multimodal_pb2.EmbedResponse:
        return runtime.run(self._client.mm_embed(self._id, request, call_options(options)))


class Model:
    """A published model: ``Model("/sax/test/lm", options).LM().Generate(...)``."""

    def __init__(self, id: str, options: Options | None = None) -> None:
        if options is not None and options.num_conn <= 0:
            raise InvalidArgumentError("num_conn must be positive")
        self._id = id
        self._client = runtime.client(options)

    def LM(self) -> LanguageModel:
        return LanguageModel(self._id, self._client)

    def VM(self) -> VisionModel:
        return VisionModel(self._id, self._client)

    def AM(self) -> AudioModel:
        return AudioModel(self._id, self._client)

    def CM(self) -> CustomModel:
        return CustomModel(self._id, self._client)

    def MM(self) -> MultimodalModel:
        return MultimodalModel(self._id, self._client)


def Publish(
    id: str,
    model_path: str,
    checkpoint_path: str,
    num_replicas: int,
    overrides: Mapping[str, str] | None = None,
    options: AdminOptions | None = None,
) -> None:
    client = runtime.client()
    runtime.run(
        client.publish(
            id,
            model_path,
            checkpoint_path,
            num_replicas,
            overrides,
            timeout=admin_timeout(options),
        )
    )


def Unpublish(id: str, options: AdminOptions | None = None) -> None:
    runtime.run(runtime.client().unpublish(id, timeout=admin_timeout(options)))


def Update(
    id: str,
    model_path: str,
    checkpoint_path: str,
    num_replicas: int,
    options: AdminOptions | None = None,
) -> None:
    update = runtime.client().update(
        id,
        model_path=model_path,
        checkpoint=checkpoint_path,
        num_replicas=num_replicas,
        timeout=admin_timeout(options),
    )
    runtime.run(update)


def List(id: str, options: AdminOptions | None = None) -> tuple[str, str, int]:
    """``(model_path, checkpoint, active_replicas)`` of a published model."""
    detail = ListDetail(id, options)
    return detail.model, detail.ckpt, detail.active_replicas


def ListDetail(id: str, options: AdminOptions | None = None) -> ModelDetail:
    detail = runtime.run(runtime.client().list_detail(id, timeout=admin_timeout(options)))
    return ModelDetail(
        model=detail.model_path,
        ckpt=detail.checkpoint,
        max_replicas=detail.max_replicas,
        active_replicas=detail.active_replicas,
        overrides=detail.overrides,
    )


def ListAll(id: str, options: AdminOptions | None = None) -> list[str]:
    """Model IDs published in cell ``id`` (``"/sax/test"``)."""
    details = runtime.run(runtime.client().list_all(id, timeout=admin_timeout(options)))
    return [d.model_id for d in details]


def Stats(id: str, options: AdminOptions | None = None) -> list[ServerTypeStat]:
    stats = runtime.run(runtime.client().stats(id, timeout=admin_timeout(options)))
    return stats.server_types


def WaitForReady(
    id: str,
    num_replicas: int,
    options: AdminOptions | None = None,
) -> None:
    wait = runtime.client().wait_for_ready(id, num_replicas, timeout=admin_timeout(options))
    runtime.run(wait)


_ALL_METHODS = "all"


def GetACL(
    cell_or_model_id: str, method_id: str = "", options: AdminOptions | None = None
) -> str | dict[str, str]:
    """The admin ACL of a cell or model; with ``method_id`` a data method's ACL, or with
    ``"all"`` every data method's ACL."""
    client, timeout = runtime.client(), admin_timeout(options)
    if method_id == _ALL_METHODS:
        return runtime.run(client.list_detail(cell_or_model_id, timeout=timeout)).acls
    method = method_id or None
    return runtime.run(client.get_acl(cell_or_model_id, method=method, timeout=timeout))


def SetACL(
    cell_or_model_id: str, acl: str, method_id: str = "", options: AdminOptions | None = None
) -> None:
    client, timeout = runtime.client(), admin_timeout(options)
    method = method_id or None
    runtime.run(client.set_acl(cell_or_model_id, acl, method=method, timeout=timeout))


def StartDebugPort(port: int) -> None:
    """Upstream starts a debug server; this client has none (a no-op kept for compatibility)."""
