"""What the client commands read: flag values, text and files, extra inputs and overrides,
and the two ways reading them fails (`UsageError`, exit 2; `InputError`, exit 1, with a hint).

    text_arg("-", "QUERY")                           # stdin, as UTF-8
    file_arg(path, "IMAGE_FILE", "an image")         # bytes; a missing or empty file: InputError
    extra_inputs(extra_arg("temperature:0.5,n:2"))   # saxutil's form, or k=v
"""

from __future__ import annotations

import argparse
import math
import re
import sys
import urllib.parse
from collections.abc import Iterable

from google.protobuf import struct_pb2

from gateway.common.flags import at_most_max_seconds, port, seconds, split_port


class UsageError(Exception):
    """Arguments that parse but do not fit together (found by the command, before any call).
    The command exits 2, as for arguments argparse refuses."""


class InputError(Exception):
    """An input the command could not read or send (a missing, empty or unreadable file, text
    that is not UTF-8); ``hint`` says what the argument should be. The command exits 1."""

    def __init__(self, message: str, hint: str) -> None:
        super().__init__(message)
        self.hint = hint


_DURATION_PART = r"(\d+(?:\.\d*)?|\.\d+)(h|ms|us|µs|ns|m|s)"
_UNIT_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}


def duration(text: str) -> float:
    """``--timeout``: seconds (``2.5``), or a Go duration as saxutil's ``-sax_timeout`` takes
    it (``90s``, ``1m30s``, ``500ms``); positive and at most `MAX_SECONDS` either way."""
    if re.fullmatch(f"(?:{_DURATION_PART})+", text):
        parts = re.findall(_DURATION_PART, text)
        total = sum(float(n) * _UNIT_SECONDS[unit] for n, unit in parts)
        if total > 0:
            return at_most_max_seconds(total, text)
        raise argparse.ArgumentTypeError(f"expected a positive duration, got {text!r}")
    return seconds(text)


#: grpc's target schemes whose addresses hold a TCP port (``dns:///HOST:PORT``,
#: ``ipv4:ADDR:PORT,ADDR:PORT``), and those that hold none to check here (``unix:PATH``).
_PORT_SCHEMES = ("dns", "ipv4", "ipv6")
_OTHER_SCHEMES = ("unix", "unix-abstract", "vsock", "xds", "google-c2p")


def gateway_address(text: str) -> str:
    """``--gateway``: HOST[:PORT] or any target grpc takes (``unix:PATH``). An empty one was
    sent to grpc, whose "UNKNOWN: Failed to create channel" read as the gateway's failure;
    a port out of range was taken modulo 65536 (103624 dialled 38088, -1 dialled 65535)."""
    if not text.strip() or text != text.strip():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    _refuse_url(text)
    scheme, _, rest = text.partition(":")
    if scheme in _OTHER_SCHEMES:
        return text
    addresses = [text]
    if scheme in _PORT_SCHEMES:
        if rest.startswith("//"):  # dns://AUTHORITY/HOST:PORT: the DNS server is not dialled
            rest = rest[2:].partition("/")[2]
        addresses = rest.split(",")
    for address in addresses:
        host, number = split_port(address)
        if not host:  # `:8888`: grpc resolved no host, which read as a gateway not listening
            raise argparse.ArgumentTypeError(
                f"expected HOST:PORT, got {text!r}: no host (localhost{address} is this machine)"
            )
        if number is not None:
            port(number)
    return text


def _refuse_url(text: str) -> None:
    """An http(s) URL (the README's curl address) is refused, naming the HOST:PORT to give, as
    the packaged clients refuse one: grpc resolved it as a host name and failed the command
    UNAVAILABLE, with a hint to start a gateway that was running."""
    url = urllib.parse.urlsplit(text)
    if url.scheme not in ("http", "https") or not url.hostname:
        return
    host, number = split_port(url.netloc)
    if number is None:
        number = "443" if url.scheme == "https" else "80"
    port(number)  # out of range: said as for HOST:PORT
    tls = " with --tls" if url.scheme == "https" else ""
    raise argparse.ArgumentTypeError(
        f"{text!r} is a URL; give the gateway's gRPC address, HOST:PORT: "
        f"--gateway {host}:{number}{tls}"
    )


def text_arg(value: str, name: str = "TEXT") -> str:
    """A QUERY or TEXT argument; ``-`` reads it from stdin (as UTF-8). A leading byte order
    mark, which Windows editors write, is no part of the text: sent, it reached the model as
    an invisible U+FEFF before the prompt (the OpenAI face drops one from a body too)."""
    if value != "-":
        return value
    data = _stdin(name, "pipe the text into - or give it")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(
            f"{name} from stdin is not valid UTF-8 text (byte {exc.start})",
            "pipe UTF-8 text into `-`; images and audio go to vm.* and am.* as files",
        ) from None


def _stdin(name: str, hint: str) -> bytes:
    """Stdin's bytes, for argument ``name`` given as ``-``; an InputError (with ``hint``) if
    it is closed (`<&-`: Python then has no stdin, and reading it was a traceback)."""
    if sys.stdin is None:
        raise InputError(f"{name} is -, but stdin is closed", hint)
    return sys.stdin.buffer.read()


def file_arg(path: str, name: str, kind: str) -> bytes:
    """An IMAGE_FILE or AUDIO_FILE argument (``kind`` says what it holds: "an encoded image");
    ``-`` reads stdin's bytes. A file that cannot be read, or is empty, is an InputError."""
    hint_text = f"{name} is the path of a file holding {kind}; - reads it from stdin"
    where = "stdin" if path == "-" else path
    try:
        if path == "-":
            data = _stdin(name, hint_text)
        else:
            with open(path, "rb") as file:
                data = file.read()
    except OSError as exc:
        raise InputError(f"cannot read {name} {where}: {exc.strerror}", hint_text) from None
    if not data:
        raise InputError(f"{name} {where} is empty", hint_text)
    return data


def pair(text: str) -> tuple[str, str]:
    """One ``k=v`` argument (an override or an extra input)."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected k=v, got {text!r}")
    return key, value


def extra_arg(text: str) -> list[tuple[str, str]]:
    """One ``--extra`` argument: ``k=v``, or saxutil's ``k:v[,k:v...]`` (whichever separator
    comes first decides, so ``stop=a:b`` and ``stop:a=b`` both keep their value whole)."""
    equals, colon = text.find("="), text.find(":")
    if equals >= 0 and (colon < 0 or equals < colon):
        return [pair(text)]
    items = []
    for item in text.split(","):
        key, sep, value = item.partition(":")
        if not sep or not key:
            raise argparse.ArgumentTypeError(f"expected k=v or saxutil's k:v,k:v, got {text!r}")
        items.append((key, value))
    return items


def extra_inputs(pairs: Iterable[tuple[str, str]]) -> dict[str, struct_pb2.Value]:
    """``--extra`` values as the request's extra_inputs, read as saxutil reads them: a quoted
    value (``"1"`` or ``'1'``) is a string without its quotes, a finite number is a number,
    anything else a string."""
    values: dict[str, struct_pb2.Value] = {}
    for key, raw in pairs:
        if len(raw) >= 2 and raw[0] in "\"'" and raw[-1] == raw[0]:
            values[key] = struct_pb2.Value(string_value=raw[1:-1])
            continue
        try:
            number_value = float(raw)
        except ValueError:
            number_value = math.nan
        if math.isfinite(number_value):
            values[key] = struct_pb2.Value(number_value=number_value)
        else:
            values[key] = struct_pb2.Value(string_value=raw)
    return values
