"""Vision-model commands: vm.classify, vm.generate, vm.embed, vm.detect, vm.image_to_text,
vm.image_to_image, vm.text_and_image_to_image, vm.video_to_text, vm.video_to_token and
vm.token_to_video."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from saxgateway.v1 import gateway_pb2 as pb

from gateway.cli._common import Commands, Session
from gateway.cli._inputs import InputError, UsageError, file_arg, text_arg
from gateway.cli._output import floats, table
from gateway.cli._table import EXTRA, ID, Arg, arg, command, model_inputs, register_all
from gateway.cli.lm import texts_table

# What every vm.* command but vm.generate takes first.
IMAGE = (ID, arg("image", metavar="IMAGE_FILE", help="an encoded image; - reads stdin"), EXTRA)

_SIGNATURES = ((b"\x89PNG\r\n\x1a\n", ".png"), (b"\xff\xd8\xff", ".jpg"), (b"GIF8", ".gif"))


def image_inputs(args: argparse.Namespace) -> dict[str, Any]:
    """The request fields of a command that takes ``IMAGE``: model, extra inputs and image."""
    return {**model_inputs(args), "image_bytes": file_arg(args.image, "IMAGE_FILE", "an image")}


def image_suffix(data: bytes) -> str:
    """The file extension an encoded image's signature calls for (.bin if unknown)."""
    return next((ext for sig, ext in _SIGNATURES if data.startswith(sig)), ".bin")


@command("vm.classify", "ID IMAGE_FILE", "use a vision model to classify an image", *IMAGE)
def classify(session: Session, args: argparse.Namespace) -> None:
    request = pb.ClassifyRequest(**image_inputs(args))
    session.show(session.stub.Classify, request, lambda done: texts_table(done.texts))


# Where the commands that make images put them: saxutil's OUTPUT_DIR (or --out DIR).
OUTPUT = (
    arg(
        "out_dir",
        nargs="?",
        metavar="OUTPUT_DIR",
        help="where to write images (made if missing); - writes the images to stdout",
    ),
    arg("--out", metavar="DIR", help="OUTPUT_DIR, as a flag"),
)


def output_dir(session: Session, args: argparse.Namespace) -> str:
    """The OUTPUT_DIR of an image-making command, checked before its call, not after."""
    target: str | None = args.out or args.out_dir
    if not target or (args.out and args.out_dir):
        raise UsageError("give one OUTPUT_DIR (or --out DIR); - writes the images to stdout")
    if target == "-" and session.json:
        raise UsageError("--json and OUTPUT_DIR - both print to stdout: give a directory")
    if target != "-" and Path(target).exists() and not Path(target).is_dir():
        raise InputError(
            f"OUTPUT_DIR {target} is not a directory", "give a directory, or - for stdout"
        )
    return target


def write_encoded(
    session: Session,
    done: Any,
    target: str,
    blobs: Sequence[bytes],
    stem: str,
    scores: Sequence[float] | None = None,
) -> None:
    """Writes encoded images (a reply's images, a video's frames) to ``target``: files
    STEM_N.png ... and a table of them, with their ``scores`` if they have any; or back to
    back to stdout for ``-``, as saxutil pipes them (``... - | display``)."""
    if target == "-":
        for blob in blobs:
            sys.stdout.buffer.write(blob)
        sys.stdout.buffer.flush()
        return
    out = Path(target)
    try:
        out.mkdir(parents=True, exist_ok=True)
        rows: list[tuple[object, ...]] = []
        for index, blob in enumerate(blobs):
            path = out / f"{stem}_{index}{image_suffix(blob)}"
            path.write_bytes(blob)
            rows.append((str(path), len(blob)))
    except OSError as exc:
        raise InputError(
            f"cannot write {stem}s to {target}: {exc.strerror}", "give a directory you can write"
        ) from None
    headers: tuple[str, ...] = ("FILE", "BYTES")
    if scores is not None:
        headers, rows = (*headers, "SCORE"), [(*r, s) for r, s in zip(rows, scores, strict=True)]
    # With --json the images are base64 in the output as well as in the files.
    session.emit(done, table(headers, rows))


def write_images(session: Session, done: Any, target: str) -> None:
    """Writes a reply's ``images`` as `write_encoded` does (image_N.png ..., with scores)."""
    blobs, scores = [i.image for i in done.images], [i.score for i in done.images]
    write_encoded(session, done, target, blobs, "image", scores)


@command(
    "vm.generate",
    "ID TEXT OUTPUT_DIR",
    "use a vision model to generate images from text",
    ID,
    arg("text", help="the prompt; - reads stdin"),
    *OUTPUT,
    EXTRA,
)
def generate(session: Session, args: argparse.Namespace) -> None:
    target = output_dir(session, args)
    request = pb.TextToImageRequest(text=text_arg(args.text), **model_inputs(args))
    write_images(session, session.call(session.stub.TextToImage, request), target)


@command("vm.embed", "ID IMAGE_FILE", "use a vision model to embed an image into a vector", *IMAGE)
def embed(session: Session, args: argparse.Namespace) -> None:
    request = pb.EmbedImageRequest(**image_inputs(args))
    session.show(session.stub.EmbedImage, request, lambda done: floats(done.embedding))


def region_arg(text: str) -> pb.Region:
    """One ``--box``: ``CX,CY,W,H``, four numbers relative to the image's size."""
    try:
        cx, cy, w, h = (float(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected CX,CY,W,H (four numbers), got {text!r}"
        ) from None
    return pb.Region(cx=cx, cy=cy, w=w, h=h)


@command(
    "vm.detect",
    "ID IMAGE_FILE [LABEL ...] [--box CX,CY,W,H ...]",
    "use a vision model to detect objects in an image",
    *IMAGE,
    arg("labels", metavar="LABEL", nargs="*", help="labels to look for"),
    arg(
        "--box",
        type=region_arg,
        action="append",
        default=[],
        metavar="CX,CY,W,H",
        help="a region to look in (repeatable), for models that take them, such as segmenters",
    ),
)
def detect(session: Session, args: argparse.Namespace) -> None:
    request = pb.DetectRequest(**image_inputs(args), text=args.labels, boxes_of_interest=args.box)
    done = session.call(session.stub.Detect, request)
    # MASK: its height and width, as saxutil prints it (0,0 for a box without one).
    rows = [
        (b.text, b.score, b.cx, b.cy, b.w, b.h, f"{b.mask.mask_height},{b.mask.mask_width}")
        for b in done.boxes
    ]
    session.emit(done, table(("LABEL", "SCORE", "CX", "CY", "W", "H", "MASK"), rows))


@command(
    "vm.image_to_text",
    "ID IMAGE_FILE [PROMPT]",
    "use a vision model to describe an image in text",
    *IMAGE,
    arg("prompt", nargs="?", default=""),
)
def image_to_text(session: Session, args: argparse.Namespace) -> None:
    request = pb.ImageToTextRequest(**image_inputs(args), text=args.prompt)
    session.show(session.stub.ImageToText, request, lambda done: texts_table(done.texts))


@command(
    "vm.image_to_image",
    "ID IMAGE_FILE OUTPUT_DIR",
    "use a vision model to make images from an image",
    *IMAGE,
    *OUTPUT,
)
def image_to_image(session: Session, args: argparse.Namespace) -> None:
    target = output_dir(session, args)
    request = pb.ImageToImageRequest(**image_inputs(args))
    write_images(session, session.call(session.stub.ImageToImage, request), target)


@command(
    "vm.text_and_image_to_image",
    "ID TEXT IMAGE_FILE OUTPUT_DIR",
    "use a vision model to make images from text and an image",
    ID,
    arg("text", help="the prompt; - reads stdin"),
    *IMAGE[1:],
    *OUTPUT,
)
def text_and_image_to_image(session: Session, args: argparse.Namespace) -> None:
    target = output_dir(session, args)
    request = pb.TextAndImageToImageRequest(text=text_arg(args.text), **image_inputs(args))
    write_images(session, session.call(session.stub.TextAndImageToImage, request), target)


FRAMES: Arg = arg(
    "frames", metavar="FRAME_FILE", nargs="+", help="the video's encoded frames, in order"
)


def frame_inputs(args: argparse.Namespace) -> dict[str, Any]:
    """The request fields of a command that takes ``FRAMES``: model, extra inputs and video."""
    frames = [file_arg(path, "FRAME_FILE", "an encoded image") for path in args.frames]
    return {**model_inputs(args), "image_frames": frames}


@command(
    "vm.video_to_text",
    "ID FRAME_FILE [FRAME_FILE ...] [--prompt TEXT]",
    "use a vision model to describe a video in text",
    ID,
    FRAMES,
    arg("--prompt", default="", metavar="TEXT", help="what the caption continues"),
    EXTRA,
)
def video_to_text(session: Session, args: argparse.Namespace) -> None:
    request = pb.VideoToTextRequest(**frame_inputs(args), text=args.prompt)
    session.show(session.stub.VideoToText, request, lambda done: texts_table(done.texts))


@command(
    "vm.video_to_token",
    "ID FRAME_FILE [FRAME_FILE ...]",
    "use a vision model to turn a video into tokens; prints them on one line",
    ID,
    FRAMES,
    EXTRA,
)
def video_to_token(session: Session, args: argparse.Namespace) -> None:
    request = pb.VideoToTokenRequest(**frame_inputs(args))
    session.show(session.stub.VideoToToken, request, lambda done: floats(done.tokens))


def tokens_arg(path: str) -> list[float]:
    """A TOKENS_FILE argument: numbers apart by spaces, commas or lines, as vm.video_to_token
    prints them; ``-`` reads stdin. Anything else is an InputError naming the first word."""
    hint = "TOKENS_FILE holds numbers (as vm.video_to_token prints them); - reads stdin"
    where = "stdin" if path == "-" else path
    try:
        words = file_arg(path, "TOKENS_FILE", "numbers").decode().replace(",", " ").split()
    except UnicodeDecodeError:
        raise InputError(f"TOKENS_FILE {where} is not text", hint) from None
    if not words:
        raise InputError(f"TOKENS_FILE {where} holds no numbers", hint)
    tokens = []
    for word in words:
        try:
            tokens.append(float(word))
        except ValueError:
            raise InputError(f"TOKENS_FILE {where}: {word[:40]!r} is not a number", hint) from None
    return tokens


@command(
    "vm.token_to_video",
    "ID TOKENS_FILE OUTPUT_DIR",
    "use a vision model to make a video's frames from its tokens",
    ID,
    arg("tokens", metavar="TOKENS_FILE", help="the tokens, as vm.video_to_token prints them"),
    *OUTPUT,
    EXTRA,
)
def token_to_video(session: Session, args: argparse.Namespace) -> None:
    target = output_dir(session, args)
    request = pb.TokenToVideoRequest(tokens=tokens_arg(args.tokens), **model_inputs(args))
    done = session.call(session.stub.TokenToVideo, request)
    write_encoded(session, done, target, done.image_frames, "frame")


COMMANDS = (
    classify,
    generate,
    embed,
    detect,
    image_to_text,
    image_to_image,
    text_and_image_to_image,
    video_to_text,
    video_to_token,
    token_to_video,
)


def register(commands: Commands) -> None:
    """Adds the vm.* commands."""
    register_all(commands, COMMANDS)
