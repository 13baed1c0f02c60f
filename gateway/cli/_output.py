"""How client commands print results: JSON as the HTTP API writes it, tables, streams.

A command renders a reply with these for ``Session.show`` (or ``Session.emit``)::

    session.show(session.stub.Embed, request, lambda done: floats(done.embedding))
"""

from __future__ import annotations

import csv
import io
import json
import select
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TextIO

import grpc
from google.protobuf import json_format
from google.protobuf.message import Message

from gateway.cli._numbers import exact, number, shorten
from gateway.common.logs import printable


def to_json(message: Message, indent: int | None = None, *, out: TextIO | None = None) -> str:
    """``message`` as the HTTP API prints it: proto field names, defaults included, numbers
    in their shortest form, text as UTF-8 (as `json_text` writes it for ``out``)."""
    return json_text(to_dict(message), out, indent=indent)


def json_text(data: object, out: TextIO | None, *, indent: int | None = None) -> str:
    """``data`` as JSON for ``out``: text as itself, so a French or Japanese reply reads as
    written (Envoy's JSON is UTF-8 too); escaped (``\\u00e9``) only when ``out`` cannot
    encode it (PYTHONIOENCODING=ascii), which keeps the JSON valid rather than failing."""
    text = json.dumps(data, indent=indent, ensure_ascii=False)
    try:
        text.encode(getattr(out, "encoding", None) or "utf-8")
    except UnicodeEncodeError:  # also a lone surrogate, from an argument that was not UTF-8
        return json.dumps(data, indent=indent)
    return text


def to_dict(message: Message) -> dict[str, Any]:
    """``message`` as a JSON-ready dict, named as `to_json` names it."""
    data: dict[str, Any] = shorten(
        json_format.MessageToDict(
            message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
        )
    )
    return data


def table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """Rows aligned under upper-case headers, columns two spaces apart."""
    cells = [list(headers)] + [[_cell(v) for v in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(line.rstrip() for line in lines)


def csv_table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """saxutil's ``-csv`` layout: ``# `` and the comma-separated headers, then one line a row
    (a value holding a comma or a quote is quoted, as CSV does)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(headers)
    writer.writerows([_cell(v) for v in row] for row in rows)
    return "# " + out.getvalue().rstrip("\n")


def fields(pairs: Iterable[tuple[str, object]]) -> str:
    """``name  value`` lines with the values aligned."""
    items = [(name, _cell(value)) for name, value in pairs]
    width = max(len(name) for name, _ in items)
    return "\n".join(f"{name.ljust(width)}  {value}".rstrip() for name, value in items)


def floats(values: Iterable[float]) -> str:
    """A vector on one line, each value in its shortest exact form."""
    return " ".join(exact(v) for v in values)


def _cell(value: object) -> str:
    # What a Sax server names (a model ID, an address, a load error) is shown as text: an
    # escape sequence in it reached the terminal, a line break made a row of its own.
    return number(value) if isinstance(value, float) else printable(str(value))


def print_stream_json(messages: Iterable[Message], out: TextIO) -> None:
    """One compact JSON object per line, flushed as each message arrives."""
    for message in messages:
        out.write(to_json(message, out=out) + "\n")
        out.flush()


@contextmanager
def ended_on_hangup(call: grpc.RpcContext, out: TextIO) -> Iterator[None]:
    """Runs the block that reads the streaming ``call``, which is cancelled when ``out``'s
    reader goes away (`saxgw watch | head -1`): the block's RpcError is then a BrokenPipeError,
    as a write's would be. The call is cancelled however the block ends (Ctrl-C, a failure),
    rather than left to grpc."""
    hung_up = _cancel_on_hangup(call, out)
    try:
        yield
    except grpc.RpcError:
        if hung_up.is_set():  # cancelled because stdout's reader left: end as a write would
            raise BrokenPipeError from None
        raise
    finally:
        call.cancel()


def _cancel_on_hangup(call: grpc.RpcContext, out: TextIO) -> threading.Event:
    """Cancels the streaming ``call`` when ``out``'s reader goes away; the returned event is
    set if it did. A closed pipe is otherwise noticed only at the next write, and a watch may
    not write for hours, a stream not until the model's next token."""
    hung_up = threading.Event()
    try:
        fd = out.fileno()
    except (OSError, ValueError):  # not a real file (a test's StringIO): nothing to watch
        return hung_up
    poller = select.poll()
    poller.register(fd, 0)  # POLLERR and POLLHUP are always reported

    def watch_out() -> None:
        while call.is_active():
            if poller.poll(200):
                hung_up.set()
                call.cancel()
                return

    threading.Thread(target=watch_out, name="saxgw-hangup", daemon=True).start()
    return hung_up
