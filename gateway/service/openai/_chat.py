"""Chat templates: a conversation rendered to one prompt, per model, as the config file says.

Templates are Jinja, with Hugging Face's conventions (``messages``, ``add_generation_prompt``,
``bos_token``, ``eos_token``, ``raise_exception``), rendered in Jinja's immutable sandbox
since they come from a config file. A built-in template (``chat_template_name``) brings the
stop string its format ends a turn with.

The request's content is the template's input, so every failure of a configured template is
the request's 400, whatever the exception. Jinja's sandbox caps ``range()`` at MAX_RANGE
(100,000) items; the prompt a template writes and ``*``/``**`` results are capped here too, so
that numbers in a request cannot make a template allocate without bound (nested loops that
write nothing still cost CPU time: a template is the operator's code). The prompt's cap is
the one on any text sent to Sax (`MAX_TEXT_CHARS`, SaxGateway's ``query`` limit): the rendered
prompt is what reaches Sax, so it is what the limit is on, whatever the messages' sizes.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any, NoReturn

from jinja2 import TemplateError
from jinja2.exceptions import SecurityError
from jinja2.runtime import Context

from gateway.client import InvalidArgumentError
from gateway.common.failurelog import FailureLog
from gateway.common.limits import MAX_TEXT_CHARS, shown
from gateway.config import ConfigError
from gateway.modelconfig import TEMPLATE_EXTENSIONS, ModelConfig, TemplateSandbox
from gateway.service._fields import invalid
from gateway.service.openai._requests import AS_CONFIGURED, ROLES, Templating

CHATML = (
    "{% for message in messages %}"
    "<|im_start|>{{ message.role }}\n{{ message.content }}<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
BUILTIN: dict[str, tuple[str, tuple[str, ...]]] = {"chatml": (CHATML, ("<|im_end|>",))}
"""Built-in templates by name: the Jinja source and the stop strings that go with it. They
know OpenAI's roles (`ROLES`) and no others: a model's own template may know more (Llama
3.1's ``ipython``), but chatml would write any role as a speaker of its own (``<|im_start|>
wizard``), so another is the request's 400, as OpenAI answers it."""
MAX_POWER_BITS = 1 << 16
"""Largest integer ``**`` may make, in bits (``9 ** 9 ** 9`` has 1.2 billion: 150 MB)."""

log = logging.getLogger(__name__)


def _raise(message: str) -> NoReturn:
    raise InvalidArgumentError(f"the chat template refused the conversation: {message}")


def _strftime_now(pattern: str) -> str:
    """The local time, formatted: Hugging Face's template global."""
    return datetime.now().strftime(pattern)


def _tojson(
    value: Any,
    ensure_ascii: bool = False,
    indent: int | None = None,
    separators: tuple[str, str] | None = None,
    sort_keys: bool = False,
) -> str:
    """Hugging Face's ``tojson``: plain JSON (Jinja's own escapes <, >, & and ' for HTML, and
    has no ensure_ascii, separators or sort_keys), text the model was trained on."""
    return json.dumps(
        value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys
    )


class _Sandbox(TemplateSandbox):
    """Jinja's immutable sandbox whose ``*`` and ``**`` refuse results over ``limit`` items
    (``'x' * n``) or MAX_POWER_BITS: with a request's numbers, the ways to a huge value that
    MAX_RANGE leaves open."""

    def __init__(self, limit: int, **options: Any) -> None:
        super().__init__(**options)
        self.limit = limit

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        too_big = _too_big(operator, left, right, self.limit)
        if too_big:
            raise SecurityError(too_big)
        return super().call_binop(context, operator, left, right)


def _continued(prompt: str, last: str) -> str:
    """``prompt`` cut right after the last message's text (``continue_final_message``), as
    Hugging Face's ``apply_chat_template`` cuts it: the text's own trailing spaces stay if the
    template wrote them."""
    text = last.strip()
    at = prompt.rfind(text)
    if at < 0:
        raise invalid(
            "continue_final_message",
            "the chat template does not write the last message's text as it is, so the prompt "
            "cannot end with it",
        )
    kept = last.lstrip()
    return prompt[: at + (len(kept) if prompt.startswith(kept, at) else len(text))]


def _too_big(operator: str, left: Any, right: Any, limit: int) -> str | None:
    """Why ``left operator right`` would be too large to make, if it would."""
    if operator == "**" and isinstance(left, int) and isinstance(right, int) and right > 0:
        big = abs(left).bit_length() * right > MAX_POWER_BITS
        return f"a power over {MAX_POWER_BITS} bits" if big else None
    for items, times in ((left, right), (right, left)):
        if isinstance(items, str | list | tuple) and isinstance(times, int):
            return f"a repetition over {limit} items" if len(items) * times > limit else None
    return None


class ChatTemplates:
    """Every configured model's compiled template; ``render`` turns messages into a prompt of
    at most ``limit`` characters."""

    def __init__(self, models: Mapping[str, ModelConfig], limit: int = MAX_TEXT_CHARS) -> None:
        self._limit = limit
        self._failures = FailureLog(log)
        # The environment transformers renders chat templates in (apply_chat_template), so a
        # model's own template works unchanged: loop controls ({% break %}), strftime_now
        # (date lines of Granite's and Llama 3.1's templates), its tojson.
        env = _Sandbox(
            limit, trim_blocks=True, lstrip_blocks=True, extensions=list(TEMPLATE_EXTENSIONS)
        )
        env.globals["raise_exception"] = _raise
        env.globals["strftime_now"] = _strftime_now
        env.filters["tojson"] = _tojson
        self._templates = {}
        self._stops: dict[str, tuple[str, ...]] = {}
        self._builtin: dict[str, str] = {}  # model -> the name of its built-in template
        for model_id, config in models.items():
            source: str | None = config.chat_template
            stops: tuple[str, ...] = ()
            if source is None and config.chat_template_name is not None:
                source, stops = BUILTIN[config.chat_template_name]
                self._builtin[model_id] = config.chat_template_name
            if source is None:
                continue
            try:
                self._templates[model_id] = env.from_string(source)
            except TemplateError as exc:
                raise ConfigError(f"models.{model_id}.chat_template: {exc}") from exc
            self._stops[model_id] = stops

    def has_template(self, model_id: str) -> bool:
        """Whether the model has a template (else ``render`` is INVALID_ARGUMENT)."""
        return model_id in self._templates

    def stops(self, model_id: str) -> tuple[str, ...]:
        """The stop strings of the model's built-in template, if it uses one."""
        return self._stops.get(model_id, ())

    def render(
        self,
        model_id: str,
        messages: Sequence[Mapping[str, str]],
        field: str = "messages",
        templating: Templating = AS_CONFIGURED,
    ) -> str:
        """The prompt for ``messages`` (the request's ``field``), as the request's
        ``templating`` asks (its variables may replace the defaults below, as vLLM lets them,
        but not the messages); INVALID_ARGUMENT if the model has no template, or the prompt is
        over the limit."""
        template = self._templates.get(model_id)
        if template is None:
            raise invalid(
                "model",
                f"{model_id} has no chat template: set `models: {{{model_id}: "
                "{chat_template: <Jinja>}}` or `chat_template_name: chatml` in the --config "
                "file, or send a prompt to /v1/completions",
            )
        builtin = self._builtin.get(model_id)
        if builtin is not None:
            for i, message in enumerate(messages):
                if message["role"] not in ROLES:
                    raise invalid(
                        f"{field}[{i}].role",
                        f"{shown(message['role'])} is not a role the built-in {builtin} "
                        f"template knows: one of {', '.join(ROLES)}",
                    )
        # tools and documents as transformers passes them without any (Sax has no tools).
        context = {
            "add_generation_prompt": True,
            "tools": None,
            "documents": None,
            **templating.variables,
            "messages": list(messages),
        }
        try:
            prompt = self._written(template.generate(context, bos_token="", eos_token=""), field)
        except InvalidArgumentError:  # raise_exception(), or a prompt over the limit
            raise
        except TemplateError as exc:
            raise InvalidArgumentError(f"the chat template failed: {exc}") from exc
        except Exception as exc:  # e.g. ZeroDivisionError: still the request's content
            # A bug of ours would look the same to the caller: the log keeps the traceback,
            # once per model and kind of error, then at most once a minute with a count, since
            # the content that fails it is any caller's to send at any rate. (Its text would
            # let a caller's content make a new cause of each call.)
            self._failures.failed(
                ("rendering", model_id),
                f"the chat template of {model_id} failed with {type(exc).__name__}",
                exc_info=True,
            )
            raise InvalidArgumentError(
                f"the chat template failed: {type(exc).__name__}: {exc}"
            ) from exc
        return _continued(prompt, messages[-1]["content"]) if templating.continue_final else prompt

    def _written(self, pieces: Iterator[str], field: str) -> str:
        """The prompt a template writes, stopped as soon as it is over the limit."""
        prompt: list[str] = []
        size = 0
        for piece in pieces:
            size += len(piece)
            if size > self._limit:
                # Not "the template failed": usually the messages are simply too long.
                raise invalid(
                    field,
                    "the prompt rendered by the model's chat template is over the limit of "
                    f"{self._limit} characters",
                )
            prompt.append(piece)
        return "".join(prompt)
