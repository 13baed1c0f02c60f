"""Chat templates: a conversation rendered to one prompt, per model, as the config file says.

Templates are Jinja, with Hugging Face's conventions (``messages``, ``add_generation_prompt``,
``bos_token``, ``eos_token``, ``raise_exception``), rendered in Jinja's immutable sandbox
since they come from a config file. A built-in template (``chat_template_name``) brings the
stop string its format ends a turn with.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NoReturn

from jinja2 import TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from gateway.client import InvalidArgumentError
from gateway.config import ConfigError
from gateway.modelconfig import ModelConfig
from gateway.service._fields import invalid

CHATML = (
    "{% for message in messages %}"
    "<|im_start|>{{ message.role }}\n{{ message.content }}<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
BUILTIN: dict[str, tuple[str, tuple[str, ...]]] = {"chatml": (CHATML, ("<|im_end|>",))}
"""Built-in templates by name: the Jinja source and the stop strings that go with it."""


def _raise(message: str) -> NoReturn:
    raise InvalidArgumentError(f"the chat template refused the conversation: {message}")


class ChatTemplates:
    """Every configured model's compiled template; ``render`` turns messages into a prompt."""

    def __init__(self, models: Mapping[str, ModelConfig]) -> None:
        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        env.globals["raise_exception"] = _raise
        self._templates = {}
        self._stops: dict[str, tuple[str, ...]] = {}
        for model_id, config in models.items():
            source: str | None = config.chat_template
            stops: tuple[str, ...] = ()
            if source is None and config.chat_template_name is not None:
                source, stops = BUILTIN[config.chat_template_name]
            if source is None:
                continue
            try:
                self._templates[model_id] = env.from_string(source)
            except TemplateError as exc:
                raise ConfigError(f"models.{model_id}.chat_template: {exc}") from exc
            self._stops[model_id] = stops

    def stops(self, model_id: str) -> tuple[str, ...]:
        """The stop strings of the model's built-in template, if it uses one."""
        return self._stops.get(model_id, ())

    def render(self, model_id: str, messages: Sequence[Mapping[str, str]]) -> str:
        """The prompt for ``messages``; INVALID_ARGUMENT if the model has no template."""
        template = self._templates.get(model_id)
        if template is None:
            raise invalid(
                "model",
                f"{model_id} has no chat template: set `models: {{{model_id}: "
                "{chat_template: <Jinja>}}` or `chat_template_name: chatml` in the --config "
                "file, or send a prompt to /v1/completions",
            )
        try:
            return template.render(
                messages=list(messages), add_generation_prompt=True, bos_token="", eos_token=""
            )
        except TemplateError as exc:
            raise InvalidArgumentError(f"the chat template failed: {exc}") from exc
