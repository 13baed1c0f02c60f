"""Vision-model commands: vm.classify, vm.generate, vm.embed, vm.detect and vm.image_to_text."""

from __future__ import annotations

import argparse
from pathlib import Path

from saxgateway.v1 import gateway_pb2 as pb

from gateway.cli._common import (
    Commands,
    Session,
    add_command,
    add_extra,
    extra_inputs,
    file_arg,
    floats,
    table,
    text_arg,
)
from gateway.cli.lm import texts_table

_SIGNATURES = ((b"\x89PNG\r\n\x1a\n", ".png"), (b"\xff\xd8\xff", ".jpg"), (b"GIF8", ".gif"))


def register(commands: Commands) -> None:
    """Adds the vm.* commands."""
    classify = add_command(
        commands,
        "vm.classify",
        "ID IMAGE_FILE",
        "use a vision model to classify an image",
        _classify,
    )
    _image_args(classify)

    generate = add_command(
        commands,
        "vm.generate",
        "ID TEXT --out DIR",
        "use a vision model to generate images from text",
        _generate,
    )
    generate.add_argument("id", metavar="ID")
    generate.add_argument("text", metavar="TEXT", help="the prompt; - reads stdin")
    generate.add_argument("--out", required=True, metavar="DIR", help="where to write images")
    add_extra(generate)

    embed = add_command(
        commands,
        "vm.embed",
        "ID IMAGE_FILE",
        "use a vision model to embed an image into a vector",
        _embed,
    )
    _image_args(embed)

    detect = add_command(
        commands,
        "vm.detect",
        "ID IMAGE_FILE [LABEL ...]",
        "use a vision model to detect objects in an image",
        _detect,
    )
    _image_args(detect)
    detect.add_argument("labels", metavar="LABEL", nargs="*", help="labels to look for")

    caption = add_command(
        commands,
        "vm.image_to_text",
        "ID IMAGE_FILE [PROMPT]",
        "use a vision model to describe an image in text",
        _image_to_text,
    )
    _image_args(caption)
    caption.add_argument("prompt", metavar="PROMPT", nargs="?", default="")


def _image_args(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument("id", metavar="ID")
    cmd.add_argument("image", metavar="IMAGE_FILE", help="an encoded image; - reads stdin")
    add_extra(cmd)


def image_suffix(data: bytes) -> str:
    """The file extension an encoded image's signature calls for (.bin if unknown)."""
    return next((ext for sig, ext in _SIGNATURES if data.startswith(sig)), ".bin")


def _classify(session: Session, args: argparse.Namespace) -> None:
    request = pb.ClassifyRequest(
        model=args.id, image_bytes=file_arg(args.image), extra_inputs=extra_inputs(args.extra)
    )
    done: pb.ClassifyResponse = session.stub.Classify(request, timeout=session.timeout)
    session.emit(done, texts_table(done.texts))


def _generate(session: Session, args: argparse.Namespace) -> None:
    request = pb.TextToImageRequest(
        model=args.id, text=text_arg(args.text), extra_inputs=extra_inputs(args.extra)
    )
    done: pb.TextToImageResponse = session.stub.TextToImage(request, timeout=session.timeout)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for index, image in enumerate(done.images):
        path = out / f"image_{index}{image_suffix(image.image)}"
        path.write_bytes(image.image)
        rows.append((str(path), len(image.image), image.score))
    # With --json the images are base64 in the output as well as in the files.
    session.emit(done, table(("FILE", "BYTES", "SCORE"), rows))


def _embed(session: Session, args: argparse.Namespace) -> None:
    request = pb.EmbedImageRequest(
        model=args.id, image_bytes=file_arg(args.image), extra_inputs=extra_inputs(args.extra)
    )
    done: pb.EmbedImageResponse = session.stub.EmbedImage(request, timeout=session.timeout)
    session.emit(done, floats(done.embedding))


def _detect(session: Session, args: argparse.Namespace) -> None:
    request = pb.DetectRequest(
        model=args.id,
        image_bytes=file_arg(args.image),
        text=args.labels,
        extra_inputs=extra_inputs(args.extra),
    )
    done: pb.DetectResponse = session.stub.Detect(request, timeout=session.timeout)
    rows = [(b.text, b.score, b.cx, b.cy, b.w, b.h) for b in done.boxes]
    session.emit(done, table(("LABEL", "SCORE", "CX", "CY", "W", "H"), rows))


def _image_to_text(session: Session, args: argparse.Namespace) -> None:
    request = pb.ImageToTextRequest(
        model=args.id,
        image_bytes=file_arg(args.image),
        text=args.prompt,
        extra_inputs=extra_inputs(args.extra),
    )
    done: pb.ImageToTextResponse = session.stub.ImageToText(request, timeout=session.timeout)
    session.emit(done, texts_table(done.texts))
