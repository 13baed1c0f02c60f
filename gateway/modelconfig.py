"""Per-model settings of the OpenAI-compatible API: the config file's ``models:`` section.

    models:
      /sax/test/lm2b:
        aliases: [lm2b]               # extra names for `model` in OpenAI requests
        chat_template_name: chatml    # a built-in template; or, instead of it,
        # chat_template: "{% for m in messages %}...{% endfor %}"   # Jinja, as Hugging Face's
        stop: ["<|im_end|>"]          # stop strings always applied to this model's output
        tokenizer: spm/lm2b.model     # SentencePiece model: exact token counts in `usage`

Parsed once at the edge (the CLI) into frozen `ModelConfig` objects; a mistake is a
`ConfigError` naming the key, so a bad file stops the gateway at start, not at a request.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import sentencepiece
from jinja2 import TemplateError, nodes
from jinja2.ext import Extension
from jinja2.parser import Parser
from jinja2.sandbox import ImmutableSandboxedEnvironment

from gateway.common.errors import InvalidArgumentError
from gateway.common.names import parse_model_id
from gateway.config import ConfigError, not_a_model_id, unknown_key

BUILTIN_TEMPLATES = ("chatml",)
"""Names accepted by ``chat_template_name`` (templates in gateway/service/openai/_chat.py)."""
_ALIAS = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}")


class GenerationTag(Extension):
    """Hugging Face's ``{% generation %}...{% endgeneration %}`` (its AssistantTracker), which
    marks the assistant's text for training masks: a prompt is its body, as written."""

    tags = {"generation"}  # noqa: RUF012 (Jinja reads it as a class attribute)

    def parse(self, parser: Parser) -> list[nodes.Node]:
        next(parser.stream)
        return parser.parse_statements(("name:endgeneration",), drop_needle=True)


#: The extensions chat templates are compiled with, here and where they render
#: (gateway/service/openai/_chat.py): those of transformers' apply_chat_template.
TEMPLATE_EXTENSIONS = ("jinja2.ext.loopcontrols", GenerationTag)


class TemplateSandbox(ImmutableSandboxedEnvironment):
    """Jinja's immutable sandbox whose ``*`` and ``**`` are the environment's to check (the
    renderer's refuses huge results): so compiling never folds ``{{ 7 ** 999999999 }}``
    into a constant, which took the check minutes of CPU, or a traceback."""

    intercepted_binops = frozenset({"*", "**"})


# Compiles a chat template as the gateway's environment does (same extensions, built-in
# filters and tests), to find a mistake at load rather than in each gateway process at start.
_SYNTAX = TemplateSandbox(extensions=list(TEMPLATE_EXTENSIONS))
_KEYS = frozenset({"aliases", "chat_template", "chat_template_name", "stop", "tokenizer"})


@dataclass(frozen=True, kw_only=True)
class ModelConfig:
    """What an operator configured for one Sax model."""

    model_id: str
    aliases: tuple[str, ...] = ()
    chat_template: str | None = None
    """Jinja source rendering ``messages`` to a prompt."""
    chat_template_name: str | None = None
    """A built-in template, used when ``chat_template`` is not set."""
    stop: tuple[str, ...] = ()
    tokenizer: str | None = None
    """Path of the model's SentencePiece model, for exact token counts."""


def _strings(value: object, where: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"{where}: must be a string or a list of non-empty strings")
    return tuple(value)


def _optional_str(entry: Mapping[str, object], key: str, where: str) -> str | None:
    value = entry.get(key)
    if value is not None and (not isinstance(value, str) or not value):
        raise ConfigError(f"{where}.{key}: must be a non-empty string")
    return value


def _check_alias(alias: str, where: str) -> None:
    if not _ALIAS.fullmatch(alias) or alias.startswith("/"):
        raise ConfigError(f"{where}.aliases: {alias!r} is not a valid alias")
    if any(part in ("", ".", "..") for part in alias.split("/")):
        # GET /v1/models/x/../y is Envoy's /v1/models/y: such an alias could not be looked up.
        raise ConfigError(f"{where}.aliases: {alias!r} has an empty, '.' or '..' segment")
    try:
        parse_model_id("/" + alias)
    except InvalidArgumentError:
        return
    # A request's model may leave out the ID's leading slash (docs/openai.md): this alias
    # would take that model's calls (and its name) away from it.
    raise ConfigError(
        f"{where}.aliases: {alias!r} is the Sax model ID /{alias} without its leading slash, "
        "which requests may send for that model"
    )


def _check_template(template: str, where: str) -> None:
    """ConfigError naming ``where`` unless ``template`` compiles as the gateway compiles it,
    every filter and test it names existing (Jinja looks up those inside a branch only when
    the branch runs: each request reaching it was a 400)."""
    try:  # gateway/service/openai/_chat.py renders it in Jinja's sandbox
        parsed = _SYNTAX.parse(template)
        _SYNTAX.compile(parsed)  # to Python, whose own limits refuse deep nesting
    except TemplateError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    except (RecursionError, SyntaxError):  # Python's own limits on nesting, a traceback
        raise ConfigError(f"{where}: nested too deeply to compile") from None
    except (ValueError, OverflowError, MemoryError) as exc:  # a constant too large to write
        raise ConfigError(f"{where}: does not compile: {exc}") from None
    other = next(
        parsed.find_all((nodes.Include, nodes.Import, nodes.FromImport, nodes.Extends)), None
    )
    if other is not None:
        # The sandbox has no loader: every request it rendered was a 400 ("no loader for
        # this environment specified"), the config taken at start.
        raise ConfigError(
            f"{where}: line {other.lineno}: a template is one source here; it cannot include, "
            "import or extend another"
        )
    for node in parsed.find_all((nodes.Filter, nodes.Test)):
        known = _SYNTAX.filters if isinstance(node, nodes.Filter) else _SYNTAX.tests
        if node.name not in known:
            kind = "filter" if isinstance(node, nodes.Filter) else "test"
            raise ConfigError(f"{where}: no {kind} named {node.name!r} (line {node.lineno})")


def _model(model_id: str, entry: object, base: Path) -> ModelConfig:
    where = f"models.{model_id}"
    if entry is None:
        entry = {}
    if not isinstance(entry, dict):
        raise ConfigError(f"{where}: must be a mapping")
    unknown = sorted(set(entry) - _KEYS, key=str)  # a number beside a name sorts too
    if unknown:
        raise unknown_key(where, unknown[0], f"expected one of {', '.join(sorted(_KEYS))}")
    aliases = _strings(entry.get("aliases", []), f"{where}.aliases")
    for alias in aliases:
        _check_alias(alias, where)
    name = _optional_str(entry, "chat_template_name", where)
    if name is not None and name not in BUILTIN_TEMPLATES:
        raise ConfigError(f"{where}.chat_template_name: {name!r} is not one of {BUILTIN_TEMPLATES}")
    template = _optional_str(entry, "chat_template", where)
    if template is not None:
        _check_template(template, f"{where}.chat_template")
    if name is not None and template is not None:
        # Either one: with both, one of them would be ignored without a word.
        raise ConfigError(f"{where}: chat_template_name and chat_template: give one, not both")
    tokenizer = _optional_str(entry, "tokenizer", where)
    if tokenizer is not None:
        path = Path(tokenizer) if Path(tokenizer).is_absolute() else base / tokenizer
        if not path.is_file():
            raise ConfigError(f"{where}.tokenizer: no such file: {path}")
        try:  # as the gateway loads it (gateway/service/openai/_tokens.py), a few ms
            sentencepiece.SentencePieceProcessor().Load(str(path))
        except (OSError, RuntimeError):
            raise ConfigError(f"{where}.tokenizer: {path} is not a SentencePiece model") from None
        tokenizer = str(path)
    return ModelConfig(
        model_id=model_id,
        aliases=aliases,
        chat_template=template,
        chat_template_name=name,
        stop=_strings(entry.get("stop", []), f"{where}.stop"),
        tokenizer=tokenizer,
    )


def parse_models(raw: object, base: Path = Path(".")) -> dict[str, ModelConfig]:
    """Validates a ``models:`` section; relative tokenizer paths are resolved against ``base``
    (the config file's folder). Returns the configs by Sax model ID."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError("models: must be a mapping of Sax model IDs to settings")
    models: dict[str, ModelConfig] = {}
    owner: dict[str, str] = {}
    for key, entry in raw.items():
        try:
            model_id = parse_model_id(str(key), field="models").id
        except InvalidArgumentError as exc:
            raise not_a_model_id("models", key, exc.message) from exc
        config = _model(model_id, entry, base)
        for alias in config.aliases:
            if alias in owner:
                raise ConfigError(
                    f"models.{model_id}.aliases: {alias!r} is also an alias of {owner[alias]}"
                )
            owner[alias] = model_id
        models[model_id] = config
    return models


def aliases_of(models: Mapping[str, ModelConfig]) -> dict[str, str]:
    """Every configured alias and the model ID it names."""
    return {alias: m.model_id for m in models.values() for alias in m.aliases}


def all_stops(config: ModelConfig | None, requested: Sequence[str]) -> tuple[str, ...]:
    """The request's stop strings and the model's configured ones, without repeats."""
    configured = config.stop if config is not None else ()
    return tuple(dict.fromkeys([*requested, *configured]))
