"""The config file's models: section, chat templates and token counts."""

from __future__ import annotations

import asyncio
import datetime
import io
import logging
import threading
from pathlib import Path

import pytest
import sentencepiece

from gateway.cli.main import main
from gateway.client import InvalidArgumentError
from gateway.common.limits import MAX_TEXT_CHARS
from gateway.config import ConfigError
from gateway.configfile import load_config
from gateway.modelconfig import ModelConfig, aliases_of, parse_models
from gateway.service.openai._chat import ChatTemplates
from gateway.service.openai._tokens import TokenCounter
from tests.e2e._openai import write_config


def test_models_section_parses(tmp_path: Path) -> None:
    write_config(tmp_path)  # with a real SentencePiece model, spm.model: it is loaded
    models = parse_models(
        {
            "/sax/test/lm": {
                "aliases": ["lm", "lm-2"],
                "chat_template_name": "chatml",
                "tokenizer": "spm.model",
                "stop": "END",
            }
        },
        tmp_path,
    )
    assert models == {
        "/sax/test/lm": ModelConfig(
            model_id="/sax/test/lm",
            aliases=("lm", "lm-2"),
            chat_template_name="chatml",
            tokenizer=str(tmp_path / "spm.model"),
            stop=("END",),
        )
    }
    assert aliases_of(models) == {"lm": "/sax/test/lm", "lm-2": "/sax/test/lm"}


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        ({"sax/test/lm": {}}, "not a Sax model ID"),
        (
            {"/sax/test/lm": {"alias": ["x"]}},
            r"models\./sax/test/lm\.alias: unknown key; expected one of aliases, chat_template, "
            "chat_template_name, stop, tokenizer$",
        ),
        ({"/sax/test/lm": {"chat_template_name": "llama9"}}, "chat_template_name"),
        (
            {"/sax/test/lm": {"chat_template_name": "chatml", "chat_template": "{{ x }}"}},
            "chat_template_name and chat_template: give one, not both",
        ),
        ({"/sax/test/lm": {"tokenizer": "missing.model"}}, "tokenizer: no such file: "),
        ({"/sax/test/a": {"aliases": ["x"]}, "/sax/test/b": {"aliases": ["x"]}}, "also an alias"),
        ({"/sax/test/lm": {"aliases": [1]}}, "aliases"),
        ({"/sax/test/lm": {"aliases": ["lm\n"]}}, "aliases"),
        # Before: sorting the unknown keys, a number beside a name, was a TypeError traceback.
        (
            {"/sax/test/lm": {1: "x", "alias": ["x"]}},
            r"^models\./sax/test/lm\.1: unknown key; expected one of aliases, ",
        ),
        # Before: Jinja's parser recursed into a RecursionError traceback.
        (
            {"/sax/test/lm": {"chat_template": "{{ " + "(" * 3000 + "1" + ")" * 3000 + " }}"}},
            r"^models\./sax/test/lm\.chat_template: nested too deeply to compile$",
        ),
        # Python's own limits on the compiled code: a SyntaxError traceback, exit 1.
        (
            {"/sax/test/lm": {"chat_template": "{% for a in b %}" * 21 + "{% endfor %}" * 21}},
            r"^models\./sax/test/lm\.chat_template: nested too deeply to compile$",
        ),
        # A filter or test that does not exist, in a branch: each request reaching it was a 400.
        (
            {"/sax/test/lm": {"chat_template": "{% if x %}{{ y|tojsn }}{% endif %}"}},
            r"^models\./sax/test/lm\.chat_template: no filter named 'tojsn' \(line 1\)$",
        ),
        (
            {"/sax/test/lm": {"chat_template": "{% if x is nosuchtest %}y{% endif %}"}},
            r"^models\./sax/test/lm\.chat_template: no test named 'nosuchtest' \(line 1\)$",
        ),
        # Another template, which the sandbox has no loader for: each request was a 400.
        *(
            (
                {"/sax/test/lm": {"chat_template": f"x\n{tag}"}},
                r"^models\./sax/test/lm\.chat_template: line 2: a template is one source here; "
                r"it cannot include, import or extend another$",
            )
            for tag in (
                "{% include 'other.jinja' %}",
                "{% import 'm.jinja' as m %}",
                "{% from 'm.jinja' import x %}",
                "{% extends 'base.jinja' %}",
            )
        ),
        # An alias that is a model's ID without its slash took that model's calls and name.
        (
            {"/sax/test/lm": {"aliases": ["sax/test/other"]}},
            r"^models\./sax/test/lm\.aliases: 'sax/test/other' is the Sax model ID "
            r"/sax/test/other without its leading slash",
        ),
        *(
            ({"/sax/test/lm": {"aliases": [alias]}}, "empty, '.' or '..' segment")
            for alias in ("a/", "x/./y", "x/../zz", "p//q")
        ),
    ],
)
def test_models_section_errors_name_the_key(raw: dict[str, object], words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        parse_models(raw)


def test_config_file_rejects_unknown_sections(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("modles: {}\n")
    with pytest.raises(ConfigError, match=r"c\.yaml: modles: unknown section; expected one of"):
        load_config(path)
    path.write_text("models:\n  /sax/test/lm: {aliases: [lm]}\n")
    assert load_config(path).models["/sax/test/lm"].aliases == ("lm",)


def test_chatml_and_custom_templates_render() -> None:
    templates = ChatTemplates(
        {
            "/sax/test/a": ModelConfig(model_id="/sax/test/a", chat_template_name="chatml"),
            "/sax/test/b": ModelConfig(
                model_id="/sax/test/b",
                chat_template="{% if messages[0].role != 'user' %}"
                "{{ raise_exception('user first') }}{% endif %}{{ messages[0].content }}",
            ),
        }
    )
    messages = [{"role": "user", "content": "hi"}]
    assert templates.render("/sax/test/a", messages) == (
        "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    )
    assert templates.stops("/sax/test/a") == ("<|im_end|>",)
    assert templates.render("/sax/test/b", messages) == "hi"
    with pytest.raises(InvalidArgumentError, match="user first"):
        templates.render("/sax/test/b", [{"role": "system", "content": "x"}])
    with pytest.raises(InvalidArgumentError, match="has no chat template"):
        templates.render("/sax/test/c", messages)


def _rendered(source: str, content: str, limit: int = 1000) -> str:
    model = ModelConfig(model_id="/sax/test/a", chat_template=source)
    templates = ChatTemplates({"/sax/test/a": model}, limit)
    return templates.render("/sax/test/a", [{"role": "user", "content": content}])


@pytest.mark.parametrize(
    ("source", "content", "message"),
    [
        # Python's own exceptions, not Jinja's: still the request's content that caused them.
        ("{{ 1 / (messages|length - 1) }}", "x", "ZeroDivisionError: division by zero"),
        (
            "{{ range(messages[0].content|int)|length }}",
            "1000000",
            "OverflowError: Range too big. The sandbox blocks ranges larger than MAX_RANGE "
            "(100000).",
        ),
        ("{{ messages[0].nope.deeper }}", "x", "'dict object' has no attribute 'nope'"),
        # What MAX_RANGE leaves open: bounded here.
        ("{{ 'ab' * (messages[0].content|int) }}", "501", "a repetition over 1000 items"),
        ("{{ [0] * (messages[0].content|int) }}", "1001", "a repetition over 1000 items"),
        ("{{ 9 ** (messages[0].content|int) }}", "99999", "a power over 65536 bits"),
    ],
)
def test_every_failure_of_a_template_is_invalid_argument(
    source: str, content: str, message: str, caplog: pytest.LogCaptureFixture
) -> None:
    with pytest.raises(InvalidArgumentError) as failure:
        _rendered(source, content)
    assert failure.value.message == f"the chat template failed: {message}"
    # Not Jinja's errors: logged with the traceback, in case it is a bug of ours.
    python_error = message.split(":")[0] in ("ZeroDivisionError", "OverflowError")
    assert [r.exc_info is not None for r in caplog.records] == ([True] if python_error else [])


def test_a_template_failing_call_after_call_logs_its_traceback_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Any caller could write a WARNING and a traceback per request into the gateway's log
    # (here, a content of 1000000 to a template that ranges over it): one then, with a count
    # at most once a minute; each failure still the caller's 400.
    source = "{{ range(messages[0].content|int)|length }}"
    model = ModelConfig(model_id="/sax/test/a", chat_template=source)
    templates = ChatTemplates({"/sax/test/a": model}, 1000)
    for _ in range(50):
        with pytest.raises(InvalidArgumentError, match="OverflowError: Range too big"):
            templates.render("/sax/test/a", [{"role": "user", "content": "1000000"}])
    logged = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert [(r.getMessage(), r.exc_info is not None) for r in logged] == [
        ("the chat template of /sax/test/a failed with OverflowError", True)
    ]


def test_a_rendered_prompt_over_the_limit_names_the_field() -> None:
    # What the template writes is bounded, however it grew: messages too long, or a template
    # that writes without bound (stopped there, not when it is done).
    for source, content in (
        ("{{ messages[0].content }}", "x" * 1001),
        ("{% for i in range(99999) %}{% for j in range(99999) %}x{% endfor %}{% endfor %}", "x"),
    ):
        with pytest.raises(InvalidArgumentError) as failure:
            _rendered(source, content)
        message = (
            "the prompt rendered by the model's chat template is over the limit of 1000 characters"
        )
        assert failure.value.message == f"messages: {message}"
        assert failure.value.field_violations == (("messages", message),)
    assert _rendered("{{ messages[0].content }}", "x" * 1000) == "x" * 1000


def test_templates_are_bounded_by_the_limit_on_text_for_sax() -> None:
    model = ModelConfig(model_id="/sax/test/a", chat_template="{{ messages[0].content }}")
    templates = ChatTemplates({"/sax/test/a": model})
    over = [{"role": "user", "content": "x" * (MAX_TEXT_CHARS + 1)}]
    with pytest.raises(InvalidArgumentError, match=f"over the limit of {MAX_TEXT_CHARS} ") as e:
        templates.render("/sax/test/a", over, "input")
    assert e.value.field_violations[0][0] == "input"


def test_a_bounded_template_renders_under_the_limits() -> None:
    source = "{{ 'ab' * (messages[0].content|int) }}{{ 2 ** 10 }}{{ [0] * 2 }}"
    assert _rendered(source, "495") == "ab" * 495 + "1024[0, 0]"  # 1000 characters


def test_templates_get_hugging_faces_globals_filters_and_loop_controls() -> None:
    # What models' own chat templates (tokenizer_config.json) use, as transformers renders
    # them: {% break %} (loopcontrols), strftime_now (Granite's and Llama 3.1's date lines),
    # tojson with ensure_ascii=False and indent.
    source = (
        "{% for m in messages %}{% if loop.index > 1 %}{% break %}{% endif %}"
        "{{ m.content }}{% endfor %}|{{ strftime_now('%Y') }}|"
        "{{ {'k': messages[0].content} | tojson(indent=1) }}"
    )
    year = str(datetime.datetime.now().year)
    assert _rendered(source, "é<b>") == f'é<b>|{year}|{{\n "k": "é<b>"\n}}'
    # transformers passes tools and documents as None when there are none; Mistral's
    # template tests `tools is not none` (undefined would write an empty tool list).
    assert _rendered("{{ tools is none }} {{ documents is none }}", "x") == "True True"


def test_a_broken_template_fails_at_start() -> None:
    with pytest.raises(ConfigError, match="chat_template"):
        ChatTemplates({"/sax/test/a": ModelConfig(model_id="/sax/test/a", chat_template="{% if")})


@pytest.fixture
def counter(tmp_path: Path) -> TokenCounter:
    """Counts /sax/test/a's tokens with a word-level model of the words a, b and c."""
    model = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(["a b c", "b c a", "c a b"]),
        model_writer=model,
        model_type="word",
        vocab_size=7,
        hard_vocab_limit=False,
        minloglevel=2,
    )
    (tmp_path / "spm.model").write_bytes(model.getvalue())
    return TokenCounter(
        {"/sax/test/a": ModelConfig(model_id="/sax/test/a", tokenizer=str(tmp_path / "spm.model"))}
    )


def test_usage_is_exact_with_a_tokenizer_and_says_characters_without(
    counter: TokenCounter,
) -> None:
    assert counter.usage("/sax/test/a", ["a b"], ["c a b"]) == {
        "prompt_tokens": 2,
        "completion_tokens": 3,
        "total_tokens": 5,
    }
    assert counter.usage("/sax/test/z", ["a b"], ["c"]) == {
        "prompt_tokens": None,
        "completion_tokens": None,
        "total_tokens": None,
        "basis": "characters",
        "prompt_characters": 3,
        "completion_characters": 1,
        "total_characters": 4,
    }


def test_a_long_prompt_is_counted_while_the_loop_serves_others(counter: TokenCounter) -> None:
    # SentencePiece holds the calling thread for ~0.1 us a character: on the event loop, a
    # prompt of MAX_TEXT_CHARS held the whole gateway process for about half a second.
    prompt = ("a b c " * (MAX_TEXT_CHARS // 6 + 1))[:MAX_TEXT_CHARS]

    async def count() -> tuple[dict[str, object], int]:
        ticks = 0
        counting = True

        async def ticker() -> None:
            nonlocal ticks
            while counting:
                ticks += 1
                await asyncio.sleep(0)

        other = asyncio.create_task(ticker())
        await asyncio.sleep(0)  # the ticker's first turn, before the count starts
        before = ticks
        usage = await counter.usage_off_loop("/sax/test/a", [prompt], ["c a b"])
        counting = False
        await other
        return usage, ticks - before

    usage, ticks = asyncio.run(count())
    assert usage == counter.usage("/sax/test/a", [prompt], ["c a b"])
    assert usage["completion_tokens"] == 3
    assert ticks > 0  # another task ran while the prompt was counted

    # The metrics' count of the same call: reported later, on the loop's thread (the metrics'
    # tallies are not for other threads), not before counted() returns.
    async def counted() -> tuple[list[tuple[int, int, int]], list[tuple[int, int, int]]]:
        reported: list[tuple[int, int, int]] = []

        def then(tokens_in: int, tokens_out: int) -> None:
            reported.append((tokens_in, tokens_out, threading.get_ident()))

        counter.counted("/sax/test/a", [prompt], ["c a b"], then)
        at_once = list(reported)
        while not reported:
            await asyncio.sleep(0.01)
        return at_once, reported

    at_once, reported = asyncio.run(counted())
    assert at_once == []
    assert reported == [(usage["prompt_tokens"], 3, threading.get_ident())]
    short: list[tuple[int, int]] = []
    counter.counted("/sax/test/a", ["a b"], ["c"], lambda i, o: short.append((i, o)))
    assert short == [(2, 1)]  # a short text: at once, no loop needed
    # A short text is counted at once, on the loop: no thread for a usual request.
    assert asyncio.run(counter.usage_off_loop("/sax/test/a", ["a b"])) == {
        "prompt_tokens": 2,
        "completion_tokens": 0,
        "total_tokens": 2,
    }


@pytest.mark.parametrize("command", ["up", "serve", "gateway", "envoy-config"])
def test_saxgw_stops_at_a_bad_config_before_starting_anything(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("models:\n  /sax/test/lm: {chat_template_name: nope}\n")
    argv = [command, "--config", str(path)]
    if command in ("serve", "gateway"):
        argv += ["--sax-root", str(tmp_path / "root")]
    if command == "envoy-config":
        argv += ["--gateway", "127.0.0.1:1", "--out", str(tmp_path / "out")]
    assert main(argv) == 2
    assert capsys.readouterr().err == (
        f"saxgw: bad config: {path}: models./sax/test/lm.chat_template_name: "
        "'nope' is not one of ('chatml',)\n"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.yaml"]  # nothing written


def test_constants_too_large_to_write_are_refused_when_the_template_renders() -> None:
    # Compiling folded them: 2 ** 100000 was a ValueError traceback (exit 1), 7 ** 999999999
    # minutes of CPU in the config check. The renderer refuses them, per request.
    for source in ("{{ 2 ** 100000 }}", "{{ 7 ** 999999999 }}"):
        parse_models({"/sax/test/lm": {"chat_template": source}})
        templates = ChatTemplates(
            {"/sax/test/lm": ModelConfig(model_id="/sax/test/lm", chat_template=source)}
        )
        with pytest.raises(InvalidArgumentError, match="a power over"):
            templates.render("/sax/test/lm", [{"role": "user", "content": "hi"}])


def test_hugging_faces_generation_tag_renders_its_body() -> None:
    # transformers' AssistantTracker: {% generation %} was an unknown tag, refused at start.
    source = (
        "{% for m in messages %}{% generation %}<{{ m.content }}>{% endgeneration %}{% endfor %}"
    )
    templates = ChatTemplates(
        {"/sax/test/lm": ModelConfig(model_id="/sax/test/lm", chat_template=source)}
    )
    assert templates.render("/sax/test/lm", [{"role": "user", "content": "hi"}]) == "<hi>"
