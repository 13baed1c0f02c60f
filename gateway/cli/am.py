"""Audio-model commands: am.recognize."""

from __future__ import annotations

import argparse

from saxgateway.v1 import gateway_pb2 as pb

from gateway.cli._common import Commands, Session
from gateway.cli._inputs import file_arg
from gateway.cli._table import EXTRA, ID, arg, command, model_inputs, register_all
from gateway.cli.lm import texts_table


@command(
    "am.recognize",
    "ID AUDIO_FILE",
    "use an audio model to transcribe speech",
    ID,
    arg("audio", metavar="AUDIO_FILE", help="e.g. a WAV file; - reads stdin"),
    EXTRA,
)
def recognize(session: Session, args: argparse.Namespace) -> None:
    request = pb.RecognizeRequest(
        audio_bytes=file_arg(args.audio, "AUDIO_FILE", "audio (e.g. WAV)"), **model_inputs(args)
    )
    session.show(session.stub.Recognize, request, lambda done: texts_table(done.texts))


COMMANDS = (recognize,)


def register(commands: Commands) -> None:
    """Adds the am.* commands."""
    register_all(commands, COMMANDS)
