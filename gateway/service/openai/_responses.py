"""OpenAI's response objects and their bytes: JSON bodies and Server-Sent Events.

Objects follow OpenAI's API reference field for field (``id``, ``object``, ``created``,
``model``, ``choices``, ``usage``); ``model`` echoes the name the caller used, as OpenAI and
vLLM do. A stream is ``data: {chunk}`` events and a final ``data: [DONE]``.

`Reply` is what the servicer's one generation path fills, whole or streamed: `Shape` here for
completions and chat, `_responses_reply.ResponseReply` for the Responses API.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from google.api import httpbody_pb2

from gateway.client import InvalidArgumentError
from gateway.service._errors import GRPC_FRAME_BYTES
from gateway.service.openai import _errors

JSON = "application/json"
EVENT_STREAM = "text/event-stream"
DONE = b"data: [DONE]\n\n"
KEEPALIVE = httpbody_pb2.HttpBody(content_type=EVENT_STREAM, data=b": waiting\n\n")
"""A Server-Sent Events comment, sent while a stream waits for its first event: it commits
the 200 and its headers, and SSE clients (the OpenAI SDKs' decoders too) skip it."""


def new_id(prefix: str, sep: str = "-", size: int = 12) -> str:
    """A fresh response ID such as ``cmpl-3f9a...`` (``size`` random bytes, in hex)."""
    return f"{prefix}{sep}{secrets.token_hex(size)}"


def now() -> int:
    """``created``: Unix seconds."""
    return int(time.time())


def body(obj: Any) -> httpbody_pb2.HttpBody:
    """A JSON response body."""
    return httpbody_pb2.HttpBody(content_type=JSON, data=json.dumps(obj).encode())


def events(*objs: Any, done: bool = False) -> httpbody_pb2.HttpBody:
    """Server-Sent Events, one per object, then ``[DONE]`` if ``done``."""
    data = b"".join(b"data: " + json.dumps(o).encode() + b"\n\n" for o in objs)
    return httpbody_pb2.HttpBody(content_type=EVENT_STREAM, data=data + (DONE if done else b""))


def typed_events(*objs: Mapping[str, Any]) -> httpbody_pb2.HttpBody:
    """Server-Sent Events named by their objects' ``type`` (``event: <type>``), as the
    Responses API sends them."""
    data = b"".join(
        b"event: " + o["type"].encode() + b"\ndata: " + json.dumps(o).encode() + b"\n\n"
        for o in objs
    )
    return httpbody_pb2.HttpBody(content_type=EVENT_STREAM, data=data)


def fitted(message: httpbody_pb2.HttpBody, limit: int, hint: str) -> httpbody_pb2.HttpBody:
    """``message``, or INVALID_ARGUMENT if it is over the gateway's message ``limit``.

    Left to gRPC, an oversized message fails as RESOURCE_EXHAUSTED "Sent message larger than
    max" after the work is done: a 429 that SDKs retry as a rate limit, redoing the work. So
    the whole message (the payload, its content type and tags) and gRPC's frame are counted,
    under gRPC's and Envoy's transcoder limits both. ``hint`` says how to ask for less.
    """
    size = message.ByteSize() + GRPC_FRAME_BYTES
    if size <= limit:
        return message
    raise InvalidArgumentError(
        f"the response would be {len(message.data)} bytes, over this gateway's limit of "
        f"{limit} bytes: {hint}"
    )


class Reply(Protocol):
    """The objects of one generating call's answer, whole or streamed: what the servicer's
    generation (`_servicer`) fills with choices, each a text and its finish reason ("stop" or
    "length"), and the chat path's ``usage`` object."""

    def whole(self, choices: Sequence[tuple[str, str]], usage: dict[str, Any]) -> dict[str, Any]:
        """The complete answer: ``choices`` as (text, finish_reason) in index order."""
        ...

    def opening(self, index: int) -> list[dict[str, Any]]:
        """The events that open choice ``index`` of a stream, before its first text."""
        ...

    def delta(self, index: int, text: str) -> list[dict[str, Any]]:
        """The events of new text of choice ``index``."""
        ...

    def finished(self, index: int, finish: str) -> list[dict[str, Any]]:
        """The events that end choice ``index`` with its finish reason."""
        ...

    def frame(self, objs: Sequence[dict[str, Any]]) -> httpbody_pb2.HttpBody:
        """Events, as one message of the stream."""
        ...

    def tail(self, usage: dict[str, Any]) -> httpbody_pb2.HttpBody:
        """The last message of a stream that ended well."""
        ...

    def failure(self, exc: BaseException) -> httpbody_pb2.HttpBody:
        """The last message of a stream that failed after its first message."""
        ...


class Shape:
    """The `Reply` of a completion or chat call: OpenAI's completion objects and chunks with
    one id, time and model; a stream is ``data:`` events ending in ``data: [DONE]``."""

    def __init__(self, chat: bool, model: str, include_usage: bool = False) -> None:
        self.chat = chat
        self.include_usage = include_usage
        # OpenAI's reference: with stream_options.include_usage, every chunk but the last
        # has "usage": null (the last has the counts).
        self._null_usage: dict[str, Any] = {"usage": None} if include_usage else {}
        self.id = new_id("chatcmpl" if chat else "cmpl")
        self.created = now()
        self.model = model

    def _head(self, obj: str) -> dict[str, Any]:
        return {"id": self.id, "object": obj, "created": self.created, "model": self.model}

    def whole(self, choices: Sequence[tuple[str, str]], usage: dict[str, Any]) -> dict[str, Any]:
        """The complete response: ``choices`` as (text, finish_reason) in index order."""
        if self.chat:
            items = [
                {
                    "index": i,
                    "message": {"role": "assistant", "content": text, "refusal": None},
                    "logprobs": None,
                    "finish_reason": finish,
                }
                for i, (text, finish) in enumerate(choices)
            ]
            head = self._head("chat.completion")
        else:
            items = [
                {"index": i, "text": text, "logprobs": None, "finish_reason": finish}
                for i, (text, finish) in enumerate(choices)
            ]
            head = self._head("text_completion")
        return {**head, "choices": items, "usage": usage, "system_fingerprint": None}

    def chunk(
        self, index: int, text: str | None, finish: str | None = None, role: bool = False
    ) -> dict[str, Any]:
        """One streamed piece of choice ``index``: new text, or its finish reason."""
        if self.chat:
            delta: dict[str, Any] = {"role": "assistant"} if role else {}
            if text is not None:
                delta["content"] = text
            choice = {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}
            head = self._head("chat.completion.chunk")
        else:
            choice = {"index": index, "text": text or "", "logprobs": None, "finish_reason": finish}
            head = self._head("text_completion")
        return {**head, "choices": [choice], **self._null_usage, "system_fingerprint": None}

    def opening(self, index: int) -> list[dict[str, Any]]:
        # A chat choice opens with a chunk of its role alone, as OpenAI's do: clients that
        # take the first chunk as the role's and the rest as content read it so.
        return [self.chunk(index, "", role=True)] if self.chat else []

    def delta(self, index: int, text: str) -> list[dict[str, Any]]:
        return [self.chunk(index, text)]

    def finished(self, index: int, finish: str) -> list[dict[str, Any]]:
        return [self.chunk(index, None, finish)]

    def frame(self, objs: Sequence[dict[str, Any]]) -> httpbody_pb2.HttpBody:
        return events(*objs)

    def tail(self, usage: dict[str, Any]) -> httpbody_pb2.HttpBody:
        # With stream_options.include_usage, a last chunk with no choices has the usage.
        last = [self.usage_chunk(usage)] if self.include_usage else []
        return events(*last, done=True)

    def failure(self, exc: BaseException) -> httpbody_pb2.HttpBody:
        # OpenAI's error envelope as the last event, which the SDKs raise as an APIError.
        return events(_errors.envelope(exc)[1])

    def usage_chunk(self, usage: dict[str, Any]) -> dict[str, Any]:
        """The last chunk with ``stream_options.include_usage``: no choices, the usage."""
        head = self._head("chat.completion.chunk" if self.chat else "text_completion")
        return {**head, "choices": [], "usage": usage, "system_fingerprint": None}


def model_object(model_id: str, created: int, root: str | None = None) -> dict[str, Any]:
    """One entry of ``/v1/models``; an alias names the Sax model it stands for in ``root``."""
    return {
        "id": model_id,
        "object": "model",
        "created": created,
        "owned_by": "sax",
        "root": root or model_id,
        "parent": None,
    }
