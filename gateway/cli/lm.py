"""Language-model commands: lm.generate, lm.score, lm.embed and lm.gradient."""

from __future__ import annotations

import argparse
from collections.abc import Iterable

from saxgateway.v1 import gateway_pb2 as pb

from gateway.cli._common import (
    Commands,
    Session,
    add_command,
    add_extra,
    extra_inputs,
    fields,
    floats,
    print_stream_json,
    table,
    text_arg,
)


def register(commands: Commands) -> None:
    """Adds the lm.* commands."""
    generate = add_command(
        commands,
        "lm.generate",
        "ID QUERY [--stream] [--extra k=v ...]",
        "use a language model to generate suffixes from a prefix",
        _generate,
    )
    generate.add_argument("id", metavar="ID")
    generate.add_argument("query", metavar="QUERY", help="the prompt; - reads stdin")
    generate.add_argument("--stream", action="store_true", help="print the text as it is generated")
    add_extra(generate)

    score = add_command(
        commands,
        "lm.score",
        "ID PREFIX SUFFIX [SUFFIX ...]",
        "use a language model to score a prefix and suffixes",
        _score,
    )
    score.add_argument("id", metavar="ID")
    score.add_argument("prefix", metavar="PREFIX", help="- reads stdin")
    score.add_argument("suffix", metavar="SUFFIX", nargs="+")
    add_extra(score)

    embed = add_command(
        commands,
        "lm.embed",
        "ID TEXT",
        "use a language model to embed text into a vector",
        _embed,
    )
    embed.add_argument("id", metavar="ID")
    embed.add_argument("text", metavar="TEXT", help="- reads stdin")
    add_extra(embed)

    gradient = add_command(
        commands,
        "lm.gradient",
        "ID PREFIX SUFFIX",
        "use a language model to score a suffix and return its gradients",
        _gradient,
    )
    gradient.add_argument("id", metavar="ID")
    gradient.add_argument("prefix", metavar="PREFIX", help="- reads stdin")
    gradient.add_argument("suffix", metavar="SUFFIX")
    add_extra(gradient)


def texts_table(texts: Iterable[pb.DecodedText]) -> str:
    """Samples (or labels, captions, transcripts) with their scores, best first."""
    return table(("TEXT", "SCORE"), [(t.text, t.score) for t in texts])


def _generate(session: Session, args: argparse.Namespace) -> None:
    model, query, extra = args.id, text_arg(args.query), extra_inputs(args.extra)
    if not args.stream:
        request = pb.GenerateRequest(model=model, query=query, extra_inputs=extra)
        done: pb.GenerateResponse = session.stub.Generate(request, timeout=session.timeout)
        session.emit(done, texts_table(done.texts))
        return
    stream = session.stub.GenerateStream(
        pb.GenerateStreamRequest(model=model, query=query, extra_inputs=extra),
        timeout=session.timeout,
    )
    if session.json:
        print_stream_json(stream, session.out)
        return
    try:
        final = stream_text(stream, session)
    finally:
        session.out.write("\n")
        session.out.flush()
    if len(final) > 1:  # the first sample was streamed; show them all with their scores
        session.out.write("\n" + texts_table(final) + "\n")


def stream_text(
    stream: Iterable[pb.GenerateStreamResponse], session: Session
) -> list[pb.DecodedText]:
    """Prints the first sample's text as it arrives; returns the final samples."""
    out = session.out
    for message in stream:
        for delta in message.deltas:
            if delta.index != 0:
                continue
            if delta.backtrack:  # the model revised its output: erase what it took back
                n = delta.backtrack
                out.write("\b" * n + " " * n + "\b" * n)
            out.write(delta.text)
            out.flush()
        if message.done and not message.HasField("error"):
            return list(message.texts)
        # An in-band error is followed by the call's status, raised as an RpcError.
    return []


def _score(session: Session, args: argparse.Namespace) -> None:
    request = pb.ScoreRequest(
        model=args.id,
        prefix=text_arg(args.prefix),
        suffix=args.suffix,
        extra_inputs=extra_inputs(args.extra),
    )
    done: pb.ScoreResponse = session.stub.Score(request, timeout=session.timeout)
    session.emit(done, table(("SUFFIX", "LOGP"), zip(args.suffix, done.logp, strict=False)))


def _embed(session: Session, args: argparse.Namespace) -> None:
    request = pb.EmbedRequest(
        model=args.id, text=text_arg(args.text), extra_inputs=extra_inputs(args.extra)
    )
    done: pb.EmbedResponse = session.stub.Embed(request, timeout=session.timeout)
    session.emit(done, floats(done.embedding))


def _gradient(session: Session, args: argparse.Namespace) -> None:
    request = pb.GradientRequest(
        model=args.id,
        prefix=text_arg(args.prefix),
        suffix=args.suffix,
        extra_inputs=extra_inputs(args.extra),
    )
    done: pb.GradientResponse = session.stub.Gradient(request, timeout=session.timeout)
    rows = [("SCORE", floats(done.score))]
    rows += [
        (f"GRADIENT {name}", floats(done.gradients[name].values)) for name in sorted(done.gradients)
    ]
    session.emit(done, fields(rows))
