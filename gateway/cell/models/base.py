"""What a stand-in model is: a loaded object with some of Sax's data methods.

Every data method of every family is declared here and fails as "not supported" unless a
model overrides it; `method_names` lists the ones it does (Sax's names, e.g. "lm.generate"),
which the model server reports in GetStatus and checks before calling.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import ClassVar, TypeVar

from gateway.cell._errors import invalid_argument
from gateway.common.limits import quote
from gateway.common.results import Box

# Sax's data method names, as upstream model servers report them.
LM_SCORE = "lm.score"
LM_GENERATE = "lm.generate"
LM_GENERATE_STREAM = "lm.generate_stream"
LM_EMBED = "lm.embed"
LM_GRADIENT = "lm.gradient"
VM_CLASSIFY = "vm.classify"
VM_GENERATE = "vm.generate"  # text to image
VM_EMBED = "vm.embed"
VM_DETECT = "vm.detect"
VM_IMAGE_TO_TEXT = "vm.image_to_text"
VM_IMAGE_TO_IMAGE = "vm.image_to_image"
VM_TEXT_AND_IMAGE_TO_IMAGE = "vm.text_and_image_to_image"
VM_VIDEO_TO_TEXT = "vm.video_to_text"
VM_VIDEO_TO_TOKEN = "vm.video_to_token"
VM_TOKEN_TO_VIDEO = "vm.token_to_video"
AM_RECOGNIZE = "am.recognize"
MM_GENERATE = "mm.generate"
MM_SCORE = "mm.score"
MM_EMBED = "mm.embed"
CUSTOM = "custom"
# Every LM method: what the language models here (test and random) all serve.
LM_METHODS = frozenset({LM_GENERATE, LM_GENERATE_STREAM, LM_SCORE, LM_EMBED, LM_GRADIENT})


#: A region of an image, as (cx, cy, w, h) relative to its size: a detect call's box of
#: interest.
Region = tuple[float, float, float, float]

# A multimodal item, as (kind, value): kind is the sax.server.multimodal.DataItem field set
# ("text", "image_bytes", "video", ...); value is the text, the bytes, or a nested message's
# serialized bytes.
Item = tuple[str, str | bytes]


#: The extra inputs one data method takes, each with its default: a number, or a tuple of
#: numbers for a tensor of that length (upstream's ServableMethod.default_extra_inputs).
ExtraDefaults = Mapping[str, float | tuple[float, ...]]


@dataclass(frozen=True)
class ExtraInputs:
    """A request's sax.ExtraInputs, as plain mappings."""

    floats: Mapping[str, float] = field(default_factory=dict)
    strings: Mapping[str, str] = field(default_factory=dict)

    def number(self, name: str, default: float) -> float:
        return self.floats.get(name, default)


@dataclass(frozen=True)
class Hypothesis:
    text: str
    score: float


@dataclass(frozen=True)
class StreamStep:
    """Text produced for each sample since the previous step, and each sample's score so far."""

    pieces: tuple[str, ...]
    scores: tuple[float, ...]


class MethodNotSupported(Exception):
    pass


class ServableModel:
    """Base of every stand-in model."""

    method_names: ClassVar[frozenset[str]] = frozenset()
    #: The extra inputs each method takes, by Sax method name; a method not named takes none
    #: (a request that sets one is refused, as upstream's model servers refuse it).
    extra_inputs: ClassVar[Mapping[str, ExtraDefaults]] = {}

    async def generate(self, text: str, extra: ExtraInputs) -> list[Hypothesis]:
        raise MethodNotSupported(LM_GENERATE)

    def generate_stream(self, text: str, extra: ExtraInputs) -> AsyncIterator[StreamStep]:
        raise MethodNotSupported(LM_GENERATE_STREAM)

    async def score(self, prefix: str, suffixes: list[str], extra: ExtraInputs) -> list[float]:
        raise MethodNotSupported(LM_SCORE)

    async def embed_text(self, text: str, extra: ExtraInputs) -> list[float]:
        raise MethodNotSupported(LM_EMBED)

    async def gradient(
        self, prefix: str, suffix: str, extra: ExtraInputs
    ) -> tuple[list[float], dict[str, list[float]]]:
        raise MethodNotSupported(LM_GRADIENT)

    async def classify(self, image: bytes, extra: ExtraInputs) -> list[Hypothesis]:
        raise MethodNotSupported(VM_CLASSIFY)

    async def text_to_image(self, text: str, extra: ExtraInputs) -> list[tuple[bytes, float]]:
        raise MethodNotSupported(VM_GENERATE)

    async def embed_image(self, image: bytes, extra: ExtraInputs) -> list[float]:
        raise MethodNotSupported(VM_EMBED)

    async def detect(
        self, image: bytes, texts: list[str], regions: list[Region], extra: ExtraInputs
    ) -> list[Box]:
        raise MethodNotSupported(VM_DETECT)

    async def image_to_text(self, image: bytes, text: str, extra: ExtraInputs) -> list[Hypothesis]:
        raise MethodNotSupported(VM_IMAGE_TO_TEXT)

    async def image_to_image(self, image: bytes, extra: ExtraInputs) -> list[tuple[bytes, float]]:
        raise MethodNotSupported(VM_IMAGE_TO_IMAGE)

    async def text_and_image_to_image(
        self, text: str, image: bytes, extra: ExtraInputs
    ) -> list[tuple[bytes, float]]:
        raise MethodNotSupported(VM_TEXT_AND_IMAGE_TO_IMAGE)

    async def video_to_text(
        self, frames: list[bytes], text: str, extra: ExtraInputs
    ) -> list[Hypothesis]:
        raise MethodNotSupported(VM_VIDEO_TO_TEXT)

    async def video_to_token(self, frames: list[bytes], extra: ExtraInputs) -> list[float]:
        raise MethodNotSupported(VM_VIDEO_TO_TOKEN)

    async def token_to_video(self, tokens: list[float], extra: ExtraInputs) -> list[bytes]:
        raise MethodNotSupported(VM_TOKEN_TO_VIDEO)

    async def recognize(self, audio: bytes, extra: ExtraInputs) -> list[Hypothesis]:
        raise MethodNotSupported(AM_RECOGNIZE)

    async def mm_generate(
        self, items: list[Item], extra: ExtraInputs
    ) -> list[tuple[list[Item], float]]:
        raise MethodNotSupported(MM_GENERATE)

    async def mm_score(
        self, prefix: list[Item], suffix: list[Item], extra: ExtraInputs
    ) -> list[float]:
        raise MethodNotSupported(MM_SCORE)

    async def mm_embed(self, items: list[Item], extra: ExtraInputs) -> list[float]:
        raise MethodNotSupported(MM_EMBED)

    async def custom(self, method: str, request: bytes, extra: ExtraInputs) -> bytes:
        raise MethodNotSupported(CUSTOM)


def check_known_overrides(
    overrides: Mapping[str, str], model_path: str, known: Iterable[str]
) -> None:
    """INVALID_ARGUMENT naming every key of ``overrides`` that is not ``known`` (and the known
    ones): a misspelt override (``dealy_ms``) would otherwise be published, shown by ``ls``,
    and do nothing."""
    takes = sorted(known)
    unknown = sorted(set(overrides) - set(takes))
    if unknown:
        names = ", ".join(quote(key) for key in unknown)
        raise invalid_argument(
            f"unknown override{'s' if len(unknown) > 1 else ''} {names} for {model_path}, "
            f"which takes {', '.join(takes) if takes else 'none'}"
        )


def int_override(
    overrides: Mapping[str, str], name: str, default: int, *, minimum: int = 0, maximum: int
) -> int:
    """An integer publish override within ``minimum..maximum``, or INVALID_ARGUMENT naming
    the override and its allowed range."""
    return _override(overrides, name, default, int, "an integer", minimum, maximum)


def float_override(
    overrides: Mapping[str, str], name: str, default: float, *, maximum: float
) -> float:
    """A number publish override within ``0..maximum``, or INVALID_ARGUMENT naming it."""
    return _override(overrides, name, default, float, "a number", 0.0, maximum)


_Number = TypeVar("_Number", int, float)


def _override(
    overrides: Mapping[str, str],
    name: str,
    default: _Number,
    parse: Callable[[str], _Number],
    kind: str,
    minimum: _Number,
    maximum: _Number,
) -> _Number:
    raw = overrides.get(name)
    if raw is None:
        return default
    try:
        value = parse(raw)
    except ValueError:
        value = minimum - 1
    if not minimum <= value <= maximum:  # also rejects nan
        low, high = (f"{v:g}" if isinstance(v, float) else str(v) for v in (minimum, maximum))
        raise invalid_argument(f"override {name}={quote(raw)} must be {kind} from {low} to {high}")
    return value
