"""The Responses API's answer (``POST /v1/responses``): a response object, or its stream events.

The object follows OpenAI's reference (``openai.types.responses.Response``): one assistant
``message`` item with one ``output_text`` part, ``usage`` counted as the chat path counts it
(`_tokens`) under the Responses API's names, and the request's settings echoed. A stream is
``event: <type>`` / ``data: <json>`` events in OpenAI's order::

    response.created, response.in_progress, response.output_item.added,
    response.content_part.added, response.output_text.delta (one per chunk),
    response.output_text.done, response.content_part.done, response.output_item.done,
    response.completed (or response.incomplete)

each with its ``sequence_number``. The opening events go out with the first text, so a call
that fails before it is a plain HTTP error; a failure after it ends the stream with
``response.failed`` (after ``response.created`` and ``response.in_progress``, if it failed
after keep-alive comments but before its first text). Nothing is stored (``store`` is
echoed, but there is no ``GET /v1/responses/{id}``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from google.api import httpbody_pb2

from gateway.service._stream import TextSoFar
from gateway.service.openai import _errors
from gateway.service.openai._responses import new_id, now, typed_events

_USAGE_NAMES = {
    "prompt_tokens": "input_tokens",
    "completion_tokens": "output_tokens",
    "total_tokens": "total_tokens",
    "basis": "basis",
    "prompt_characters": "input_characters",
    "completion_characters": "output_characters",
    "total_characters": "total_characters",
}
"""The chat path's ``usage`` names -> the Responses API's (and the same extension for counts
in characters, without a tokenizer)."""


def usage(chat: Mapping[str, Any]) -> dict[str, Any]:
    """The Responses API's ``usage`` for the chat path's: Sax has no prompt cache and no
    reasoning tokens, so their details are zeros."""
    named = {_USAGE_NAMES[k]: v for k, v in chat.items()}
    return {
        **named,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens_details": {"reasoning_tokens": 0},
    }


class ResponseReply:
    """The `Reply` of one Responses API call (one choice: index 0), with its ids, time, model
    (as the caller named it) and the request's settings to echo."""

    def __init__(self, model: str, echo: Mapping[str, Any]) -> None:
        self.id = new_id("resp", "_", 24)
        self.item_id = new_id("msg", "_", 24)
        self.created_at = now()
        self.model = model
        self._echo = dict(echo)
        self._sequence = 0
        self._text = TextSoFar()
        self._finish: str | None = None

    def _response(self, status: str, output: list[dict[str, Any]], **fields: Any) -> dict[str, Any]:
        incomplete = {"reason": "max_output_tokens"} if status == "incomplete" else None
        return {
            "id": self.id,
            "object": "response",
            "created_at": self.created_at,
            "status": status,
            "background": False,
            # OpenAI's: "only present when the status is completed" (not incomplete).
            "completed_at": now() if status == "completed" else None,
            "error": None,
            "incomplete_details": incomplete,
            "model": self.model,
            "output": output,
            "usage": None,
            **self._echo,
            **fields,
        }

    def _message(self, status: str, text: str | None) -> dict[str, Any]:
        parts = [] if text is None else [_output_text(text)]
        return {
            "id": self.item_id,
            "type": "message",
            "status": status,
            "role": "assistant",
            "content": parts,
        }

    def _event(self, kind: str, **fields: Any) -> dict[str, Any]:
        event = {"type": kind, "sequence_number": self._sequence, **fields}
        self._sequence += 1
        return event

    def _part(self, kind: str, **fields: Any) -> dict[str, Any]:
        where = {"item_id": self.item_id, "output_index": 0, "content_index": 0}
        return self._event(kind, **where, **fields)

    @staticmethod
    def _status(finish: str | None) -> str:
        # "length" only when the tokens were counted (`_servicer._finish`): what we know.
        return "incomplete" if finish == "length" else "completed"

    def whole(self, choices: Sequence[tuple[str, str]], usage_: dict[str, Any]) -> dict[str, Any]:
        [(text, finish)] = choices
        status = self._status(finish)
        return self._response(status, [self._message(status, text)], usage=usage(usage_))

    def _started(self) -> list[dict[str, Any]]:
        in_progress = self._response("in_progress", [])
        return [
            self._event("response.created", response=in_progress),
            self._event("response.in_progress", response=in_progress),
        ]

    def opening(self, index: int) -> list[dict[str, Any]]:
        return [
            *self._started(),
            self._event(
                "response.output_item.added",
                output_index=0,
                item=self._message("in_progress", None),
            ),
            self._part("response.content_part.added", part=_output_text("")),
        ]

    def delta(self, index: int, text: str) -> list[dict[str, Any]]:
        self._text.add(text)
        return [self._part("response.output_text.delta", delta=text, logprobs=[])]

    def finished(self, index: int, finish: str) -> list[dict[str, Any]]:
        self._finish = finish
        text = str(self._text)
        item = self._message(self._status(finish), text)
        return [
            self._part("response.output_text.done", text=text, logprobs=[]),
            self._part("response.content_part.done", part=_output_text(text)),
            self._event("response.output_item.done", output_index=0, item=item),
        ]

    def frame(self, objs: Sequence[dict[str, Any]]) -> httpbody_pb2.HttpBody:
        return typed_events(*objs)

    def tail(self, usage_: dict[str, Any]) -> httpbody_pb2.HttpBody:
        status = self._status(self._finish)
        output = [self._message(status, str(self._text))]
        response = self._response(status, output, usage=usage(usage_))
        return typed_events(self._event(f"response.{status}", response=response))

    def failure(self, exc: BaseException) -> httpbody_pb2.HttpBody:
        # As OpenAI ends a response that failed while it streamed: the error in the response.
        # ResponseError's code names few kinds; the envelope's type keeps which one it was.
        _, envelope, _ = _errors.envelope(exc)
        error = envelope["error"]
        code = "rate_limit_exceeded" if error["code"] == "rate_limit_exceeded" else "server_error"
        failed = {"code": code, "message": error["message"], "type": error["type"]}
        if error["param"] is not None:
            failed["param"] = error["param"]
        if not self._sequence:
            # Failed before its first event (after keep-alive comments): it begins all the
            # same, as the SDKs' stream helpers take no event before response.created.
            return typed_events(*self._started(), self._failed([], failed))
        return typed_events(self._failed([self._message("incomplete", str(self._text))], failed))

    def _failed(self, output: list[dict[str, Any]], error: dict[str, Any]) -> dict[str, Any]:
        response = self._response("failed", output, error=error)
        return self._event("response.failed", response=response)


def _output_text(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
