"""Language-model commands: lm.generate, lm.score, lm.embed and lm.gradient."""

from __future__ import annotations

import argparse
from collections.abc import Iterable

from saxgateway.v1 import gateway_pb2 as pb

from gateway.cli._common import Commands, Session
from gateway.cli._inputs import UsageError, text_arg
from gateway.cli._output import ended_on_hangup, fields, floats, print_stream_json, table
from gateway.cli._table import EXTRA, ID, arg, command, model_inputs, register_all

PREFIX = arg("prefix", help="- reads stdin")


def texts_table(texts: Iterable[pb.DecodedText]) -> str:
    """Samples (or labels, captions, transcripts) with their scores, best first."""
    return table(("TEXT", "SCORE"), [(t.text, t.score) for t in texts])


@command(
    "lm.generate",
    "ID QUERY [--stream] [-n N] [--terse] [--extra k=v ...]",
    "use a language model to generate suffixes from a prefix",
    ID,
    arg("query", help="the prompt; - reads stdin"),
    arg("--stream", action="store_true", help="print the text as it is generated"),
    arg("-n", type=int, default=0, metavar="N", help="print at most N samples; 0 or less: all"),
    arg("--terse", action="store_true", help="print only the samples' texts, best first"),
    EXTRA,
)
def generate(session: Session, args: argparse.Namespace) -> None:
    limit = max(args.n, 0)  # saxutil's -n=-1, as it takes it: no limit
    if args.stream and (limit or args.terse):
        raise UsageError("-n and --terse print whole samples: they do not go with --stream")
    query = text_arg(args.query, "QUERY")
    if not args.stream:
        done = session.call(
            session.stub.Generate, pb.GenerateRequest(query=query, **model_inputs(args))
        )
        texts = list(done.texts)
        if args.terse:  # best first, as saxutil's -terse prints them
            texts.sort(key=lambda t: t.score, reverse=True)
        if limit:
            del texts[limit:]
            del done.texts[limit:]  # --json prints the samples the table shows
        if args.terse and not session.json:
            session.out.write("".join(f"{t.text}\n" for t in texts))
            session.out.flush()
            return
        session.emit(done, texts_table(texts))
        return
    stream = session.stub.GenerateStream(
        pb.GenerateStreamRequest(query=query, **model_inputs(args)), timeout=session.timeout
    )
    # Stdout's reader gone (`| head -1`): the stream ends now, not at its next write (a
    # model's next token), the model decoding on for nobody meanwhile.
    with ended_on_hangup(stream, session.out):
        if session.json:
            print_stream_json(stream, session.out)
            return
        final = stream_text(stream, session)
    if len(final) > 1:  # the first sample was streamed; show them all with their scores
        # The stream's final texts are by sample index; a Generate reply's, best first.
        best_first = sorted(final, key=lambda t: -t.score)
        session.out.write("\n" + texts_table(best_first) + "\n")


def stream_text(
    stream: Iterable[pb.GenerateStreamResponse], session: Session
) -> list[pb.DecodedText]:
    """Prints the first sample's text as it arrives, then ends its line; returns the final
    samples. A call that fails (or Ctrl-C) ends the line only if text was printed: stdout
    gets no empty line, and the error (on stderr) starts a line of its own."""
    out = session.out
    line = False  # whether the line is to be ended
    final: list[pb.DecodedText] = []
    try:
        for message in stream:
            for delta in message.deltas:
                if delta.index != 0:
                    continue
                if delta.backtrack:  # the model revised its output: erase what it took back
                    n = delta.backtrack
                    out.write("\b" * n + " " * n + "\b" * n)
                out.write(delta.text)
                out.flush()
                line = line or bool(delta.text or delta.backtrack)
            if message.done and not message.HasField("error"):
                line = True  # an empty answer is still one (empty) line
                final = list(message.texts)
            # An in-band error is followed by the call's status, raised as an RpcError.
        # Read on to the call's status rather than drop the call at its last message: a
        # dropped call is cancelled, and the gateway counted every `--stream` as CANCELLED.
        return final
    finally:
        if line:
            out.write("\n")
            out.flush()


@command(
    "lm.score",
    "ID PREFIX SUFFIX [SUFFIX ...]",
    "use a language model to score a prefix and suffixes",
    ID,
    PREFIX,
    arg("suffix", nargs="+"),
    EXTRA,
)
def score(session: Session, args: argparse.Namespace) -> None:
    request = pb.ScoreRequest(
        prefix=text_arg(args.prefix, "PREFIX"), suffix=args.suffix, **model_inputs(args)
    )
    session.show(
        session.stub.Score,
        request,
        lambda done: table(("SUFFIX", "LOGP"), zip(args.suffix, done.logp, strict=False)),
    )


@command(
    "lm.embed",
    "ID TEXT",
    "use a language model to embed text into a vector",
    ID,
    arg("text", help="- reads stdin"),
    EXTRA,
)
def embed(session: Session, args: argparse.Namespace) -> None:
    request = pb.EmbedRequest(text=text_arg(args.text), **model_inputs(args))
    session.show(session.stub.Embed, request, lambda done: floats(done.embedding))


@command(
    "lm.gradient",
    "ID PREFIX SUFFIX",
    "use a language model to score a suffix and return its gradients",
    ID,
    PREFIX,
    arg("suffix"),
    EXTRA,
)
def gradient(session: Session, args: argparse.Namespace) -> None:
    request = pb.GradientRequest(
        prefix=text_arg(args.prefix, "PREFIX"), suffix=args.suffix, **model_inputs(args)
    )
    done = session.call(session.stub.Gradient, request)
    rows = [("SCORE", floats(done.score))]
    rows += [
        (f"GRADIENT {name}", floats(done.gradients[name].values)) for name in sorted(done.gradients)
    ]
    session.emit(done, fields(rows))


COMMANDS = (generate, score, embed, gradient)


def register(commands: Commands) -> None:
    """Adds the lm.* commands."""
    register_all(commands, COMMANDS)
