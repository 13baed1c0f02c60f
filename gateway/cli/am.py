"""Audio-model commands: am.recognize."""

from __future__ import annotations

import argparse

from saxgateway.v1 import gateway_pb2 as pb

from gateway.cli._common import Commands, Session, add_command, add_extra, extra_inputs, file_arg
from gateway.cli.lm import texts_table


def register(commands: Commands) -> None:
    """Adds the am.* commands."""
    recognize = add_command(
        commands,
        "am.recognize",
        "ID AUDIO_FILE",
        "use an audio model to transcribe speech",
        _recognize,
    )
    recognize.add_argument("id", metavar="ID")
    recognize.add_argument("audio", metavar="AUDIO_FILE", help="e.g. a WAV file; - reads stdin")
    add_extra(recognize)


def _recognize(session: Session, args: argparse.Namespace) -> None:
    request = pb.RecognizeRequest(
        model=args.id, audio_bytes=file_arg(args.audio), extra_inputs=extra_inputs(args.extra)
    )
    done: pb.RecognizeResponse = session.stub.Recognize(request, timeout=session.timeout)
    session.emit(done, texts_table(done.texts))
