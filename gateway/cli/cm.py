"""Custom-model commands: cm.custom, a method the model defines, bytes in and bytes out."""

from __future__ import annotations

import argparse
import sys

from saxgateway.v1 import gateway_pb2 as pb

from gateway.cli._common import Commands, Session
from gateway.cli._inputs import file_arg
from gateway.cli._table import EXTRA, ID, arg, command, model_inputs, register_all


@command(
    "cm.custom",
    "ID METHOD [REQUEST_FILE]",
    "call a method a custom model defines; prints its output's bytes as they are",
    ID,
    arg("method", help="the model's name for the method, e.g. echo"),
    arg(
        "request",
        nargs="?",
        metavar="REQUEST_FILE",
        help="the method's input; - reads stdin; none sends an empty input",
    ),
    EXTRA,
)
def custom(session: Session, args: argparse.Namespace) -> None:
    data = b"" if args.request is None else file_arg(args.request, "REQUEST_FILE", "its input")
    request = pb.CustomRequest(method_name=args.method, request=data, **model_inputs(args))
    done = session.call(session.stub.Custom, request)
    if session.json:  # the output in base64, as the HTTP API spells bytes
        session.emit(done, "")
        return
    sys.stdout.buffer.write(done.response)  # opaque: no newline added, so that it pipes whole
    sys.stdout.buffer.flush()


COMMANDS = (custom,)


def register(commands: Commands) -> None:
    """Adds the cm.* commands."""
    register_all(commands, COMMANDS)
