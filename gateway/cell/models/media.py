"""Small vision, audio and custom stand-ins, so every data family works end to end.

`sax_gateway.testing.TestVision` (every vm.* method): results are a pure function of the
input bytes. Classify ranks a fixed label set by a hash of the image; text-to-image (and
image-to-image, text-and-image-to-image) returns an 8x8 PNG whose colours come from the input;
detect returns one box per query text (or one "object" box), or each box of interest
with a 4x4 mask (as a segmenter answers); a video is a list of encoded
frames, captioned by its first frame; video-to-token gives 4 tokens per frame and
token-to-video one frame per 4 tokens.

`sax_gateway.testing.TestAudio` (am.recognize): a WAV file is transcribed as "<n> seconds of
audio" followed by words chosen from its bytes; other bytes are treated as 16 kHz 16-bit PCM.

`sax_gateway.testing.TestCustom` (custom): echoes the request bytes.
"""

from __future__ import annotations

import io
import wave

from gateway.cell.models._hashing import digest, unit_floats
from gateway.cell.models._png import png_rgb
from gateway.cell.models.base import (
    AM_RECOGNIZE,
    VM_CLASSIFY,
    VM_DETECT,
    VM_EMBED,
    VM_GENERATE,
    VM_IMAGE_TO_IMAGE,
    VM_IMAGE_TO_TEXT,
    VM_TEXT_AND_IMAGE_TO_IMAGE,
    VM_TOKEN_TO_VIDEO,
    VM_VIDEO_TO_TEXT,
    VM_VIDEO_TO_TOKEN,
    ExtraInputs,
    Hypothesis,
    Region,
    ServableModel,
)
from gateway.common.results import Box

VISION_PATH = "sax_gateway.testing.TestVision"
AUDIO_PATH = "sax_gateway.testing.TestAudio"
CUSTOM_PATH = "sax_gateway.testing.TestCustom"

LABELS = ("cat", "dog", "bird", "car", "tree", "house", "boat", "flower", "person", "cloud")
_WORDS = ("hello", "world", "sax", "model", "audio", "test", "river", "light", "stone", "green")
_IMAGE_SIDE = 8
TOKENS_PER_FRAME = 4
MASK_SIDE = 4


def _png(*parts: bytes | str | int) -> bytes:
    """An 8x8 PNG whose colours are a hash of ``parts``."""
    size = _IMAGE_SIDE * _IMAGE_SIDE * 3
    pixels = b""
    while len(pixels) < size:
        pixels += digest("image", *parts, len(pixels))
    return png_rgb(_IMAGE_SIDE, _IMAGE_SIDE, pixels[:size])


class TestVision(ServableModel):
    method_names = frozenset(
        {
            VM_CLASSIFY,
            VM_GENERATE,
            VM_EMBED,
            VM_DETECT,
            VM_IMAGE_TO_TEXT,
            VM_IMAGE_TO_IMAGE,
            VM_TEXT_AND_IMAGE_TO_IMAGE,
            VM_VIDEO_TO_TEXT,
            VM_VIDEO_TO_TOKEN,
            VM_TOKEN_TO_VIDEO,
        }
    )

    async def classify(self, image: bytes, extra: ExtraInputs) -> list[Hypothesis]:
        raw = unit_floats(len(LABELS), "classify", image)
        ranked = sorted(zip(raw, LABELS, strict=True), reverse=True)[:3]
        return [Hypothesis(label, round((value + 1) / 2, 6)) for value, label in ranked]

    async def text_to_image(self, text: str, extra: ExtraInputs) -> list[tuple[bytes, float]]:
        return [(_png(text), -0.5)]

    async def embed_image(self, image: bytes, extra: ExtraInputs) -> list[float]:
        return unit_floats(8, "embed", image)

    async def detect(
        self, image: bytes, texts: list[str], regions: list[Region], extra: ExtraInputs
    ) -> list[Box]:
        if regions:  # a segmenter's answer: each region, with a mask
            return [_masked(image, region) for region in regions]
        boxes = []
        for text in texts or ["object"]:
            cx, cy, w, h, score = ((v + 1) / 2 for v in unit_floats(5, "detect", image, text))
            boxes.append(Box(cx=cx, cy=cy, w=w / 2, h=h / 2, text=text, score=score))
        return boxes

    async def image_to_text(self, image: bytes, text: str, extra: ExtraInputs) -> list[Hypothesis]:
        (top, *_) = await self.classify(image, extra)
        caption = f"a picture of a {top.text}"
        return [Hypothesis(f"{text} {caption}".strip(), top.score)]

    async def image_to_image(self, image: bytes, extra: ExtraInputs) -> list[tuple[bytes, float]]:
        return [(_png(image), -0.5)]

    async def text_and_image_to_image(
        self, text: str, image: bytes, extra: ExtraInputs
    ) -> list[tuple[bytes, float]]:
        return [(_png(text, image), -0.5)]

    async def video_to_text(
        self, frames: list[bytes], text: str, extra: ExtraInputs
    ) -> list[Hypothesis]:
        if not frames:
            return [Hypothesis(f"{text} an empty video".strip(), 0.0)]
        (first, *_) = await self.image_to_text(frames[0], text, extra)
        return [Hypothesis(f"{first.text}, {len(frames)} frame(s)", first.score)]

    async def video_to_token(self, frames: list[bytes], extra: ExtraInputs) -> list[float]:
        return [v for frame in frames for v in unit_floats(TOKENS_PER_FRAME, "token", frame)]

    async def token_to_video(self, tokens: list[float], extra: ExtraInputs) -> list[bytes]:
        chunks = range(0, len(tokens), TOKENS_PER_FRAME)
        return [_png(repr(tokens[i : i + TOKENS_PER_FRAME])) for i in chunks]


def _masked(image: bytes, region: Region) -> Box:
    """``region`` of ``image`` as a detected object with a MASK_SIDE x MASK_SIDE mask."""
    (value,) = unit_floats(1, "segment", image, repr(region))
    mask = digest("mask", image, repr(region))[: MASK_SIDE * MASK_SIDE]
    cx, cy, w, h = region
    return Box(
        cx=cx, cy=cy, w=w, h=h, text="object", score=(value + 1) / 2,
        mask_height=MASK_SIDE, mask_width=MASK_SIDE, mask_values=mask,
    )  # fmt: skip


class TestAudio(ServableModel):
    method_names = frozenset({AM_RECOGNIZE})

    async def recognize(self, audio: bytes, extra: ExtraInputs) -> list[Hypothesis]:
        seconds = _duration(audio)
        count = max(1, round(seconds * 2))
        picks = unit_floats(count, "recognize", audio)
        words = [_WORDS[int((v + 1) / 2 * len(_WORDS)) % len(_WORDS)] for v in picks]
        return [Hypothesis(f"{seconds:.2f} seconds of audio: {' '.join(words)}", -0.25 * count)]


def _duration(audio: bytes) -> float:
    if audio[:4] == b"RIFF":
        try:
            with wave.open(io.BytesIO(audio)) as wav:
                frames: int = wav.getnframes()
                rate: int = wav.getframerate()
            return frames / float(rate or 1)
        except (wave.Error, EOFError):
            pass
    return len(audio) / (16000 * 2)


#: TestCustom's one method: a custom model names its own methods, and a Custom call names one.
ECHO = "echo"


class TestCustom(ServableModel):
    method_names = frozenset({ECHO})

    async def custom(self, method: str, request: bytes, extra: ExtraInputs) -> bytes:
        return request
