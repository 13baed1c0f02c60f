"""What every client command shares: global flags, its `Session`, and how it is run.

A family module adds a command with `add_command`; its function gets a `Session` (the stub,
the deadline, the output mode) and the parsed arguments, and returns nothing. `dispatch` opens
the channel (`_channel`) and reports failures in one place (`_failures.report`: a message and
a concrete hint); `_output` renders results::

    add_command(commands, "lm.embed", "ID TEXT", "Embed a text with a language model.", _embed)
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import TextIO, TypeAlias, TypeVar

import grpc
from google.protobuf.message import Message
from saxgateway.v1 import gateway_pb2_grpc

from gateway.cli._channel import (
    API_KEY_ENV,
    DEFAULT_GATEWAY,
    open_channel,
    with_api_key,
    with_trace,
)
from gateway.cli._failures import report, report_input
from gateway.cli._inputs import InputError, UsageError, duration, gateway_address
from gateway.cli._output import to_json
from gateway.common.stdout import discard_stdout

# What main.py's add_subparsers returns; argparse names its type privately.
Commands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def add_global_flags(parser: argparse.ArgumentParser, *, defaults: bool) -> None:
    """Adds -v, --gateway, --timeout, --api-key, the TLS flags and --json. They are accepted
    before the command (``saxgw --gateway h:p ls``, as saxutil users type them) and after it;
    only the top level sets ``defaults``, so a flag given before the command is not reset by
    the command's parser."""

    def default(value: object) -> object:
        return value if defaults else argparse.SUPPRESS

    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=default(False),
        help="log debug details to stderr (of a client command: each call, its deadline, "
        "status and x-request-id)",
    )
    parser.add_argument(
        "--gateway",
        type=gateway_address,
        default=default(DEFAULT_GATEWAY),
        metavar="HOST:PORT",
        help="gateway (Envoy or gateway gRPC port) to talk to; a HOST alone is HOST:8888, or "
        f"HOST:443 with TLS (default: {DEFAULT_GATEWAY})",
    )
    parser.add_argument(
        "--timeout",
        type=duration,
        default=default(None),
        metavar="SECONDS",
        help="deadline of each call: seconds, or a duration as saxutil takes it (90s, 1m30s, "
        "500ms) (default: the gateway's)",
    )
    parser.add_argument(
        "--api-key",
        default=default(None),
        metavar="KEY",
        help=f"API key or JWT the gateway's Envoy asks for, sent as Authorization: Bearer "
        f"(default: ${API_KEY_ENV}, which keeps it out of `ps` and shell history; "
        "--api-key '' sends none)",
    )
    tls = "TLS to an edge that serves it (docs/security.md): "
    parser.add_argument(
        "--tls",
        action="store_true",
        default=default(False),
        help=tls + "verify the gateway's certificate with the system's CA roots",
    )
    parser.add_argument(
        "--ca-cert",
        default=default(None),
        metavar="FILE",
        help=tls + "verify the gateway's certificate with this CA (PEM) (implies --tls)",
    )
    parser.add_argument(
        "--client-cert",
        default=default(None),
        metavar="FILE",
        help=tls + "present this certificate (PEM), with --client-key, to an edge that asks "
        "for one (mTLS) (implies --tls)",
    )
    parser.add_argument(
        "--client-key",
        default=default(None),
        metavar="FILE",
        help="the private key (PEM) of --client-cert",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        default=default(False),
        help="print the response as JSON (default: a table)",
    )


def _globals() -> argparse.ArgumentParser:
    flags = argparse.ArgumentParser(add_help=False)
    add_global_flags(flags, defaults=False)
    return flags


_R = TypeVar("_R")
_Req = TypeVar("_Req")
_Reply = TypeVar("_Reply", bound=Message)


@dataclass(frozen=True)
class Session:
    """One command's connection to the gateway and how to print its results."""

    stub: gateway_pb2_grpc.SaxGatewayStub
    timeout: float | None
    json: bool
    out: TextIO

    def call(self, rpc: grpc.UnaryUnaryMultiCallable[_Req, _R], request: _Req) -> _R:
        """Calls the unary ``rpc`` with this command's deadline."""
        return rpc(request, timeout=self.timeout)

    def show(
        self,
        rpc: grpc.UnaryUnaryMultiCallable[_Req, _Reply],
        request: _Req,
        text: Callable[[_Reply], str],
    ) -> None:
        """Calls the unary ``rpc`` and prints its reply (as ``text`` renders it, or JSON)."""
        done = self.call(rpc, request)
        self.emit(done, text(done))

    def emit(self, message: Message, text: str) -> None:
        """Prints ``message`` as JSON with --json, else the readable ``text``."""
        self.out.write(to_json(message, indent=2, out=self.out) if self.json else text)
        self.out.write("\n")
        self.out.flush()


Run = Callable[[Session, argparse.Namespace], None]


class Incomplete(Exception):
    """Some of a command's calls failed, each reported on stderr already; the others' results
    were printed. The command exits 1."""


def add_command(
    commands: Commands, name: str, usage: str, synopsis: str, run: Run
) -> argparse.ArgumentParser:
    """Adds ``saxgw NAME`` with the global client flags; ``usage`` is the literal usage line."""
    cmd: argparse.ArgumentParser = commands.add_parser(
        name,
        help=synopsis,
        description=f"Usage: saxgw {name} {usage}".rstrip(),
        parents=[_globals()],
    )
    cmd.set_defaults(handler=partial(dispatch, run))
    return cmd


def dispatch(run: Run, args: argparse.Namespace) -> int:
    """Runs one client command; returns its exit status."""
    if sys.stderr is None:  # `2>&-`: print(file=None) wrote the error to stdout, as data
        sys.stderr = open(os.devnull, "w")  # noqa: SIM115 (for the process's life)
    if sys.stdout is None:  # `saxgw ls >&-`: Python then has no stdout, and writing crashed
        print(
            "saxgw: stdout is closed: the result could not be printed; nothing was sent"
            "\nhint: to discard the output, send it to /dev/null (>/dev/null)",
            file=sys.stderr,
        )
        return 1
    try:
        with open_channel(args) as channel:
            session = Session(
                stub=gateway_pb2_grpc.SaxGatewayStub(with_trace(with_api_key(channel, args), args)),
                timeout=args.timeout,
                json=args.json,
                out=sys.stdout,
            )
            run(session, args)
    except grpc.RpcError as exc:
        return report(exc, args, sys.stderr)
    except Incomplete:
        return 1
    except UsageError as exc:
        print(f"saxgw {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except InputError as exc:
        return report_input(str(exc), exc.hint, args, sys.stderr)
    except UnicodeEncodeError as exc:
        if exc.encoding == "utf-8":  # an argument from argv that is not UTF-8: protobuf refused it
            return report_input(
                "an argument is not valid UTF-8 text",
                "give text arguments in UTF-8; binary inputs go in files",
                args,
                sys.stderr,
            )
        # stdout cannot hold the output (a reply in CJK to an ASCII-only locale).
        print(
            f"saxgw: cannot print the output in {exc.encoding}: "
            f"it holds U+{ord(exc.object[exc.start]):04X}"
            "\nhint: use a UTF-8 locale (LANG=C.UTF-8) or set PYTHONIOENCODING=utf-8",
            file=sys.stderr,
        )
        return 1
    except BrokenPipeError:  # e.g. `saxgw ... | head`: stop quietly, as cat does
        discard_stdout()
        return 1
    except OSError as exc:
        print(f"saxgw: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # Ctrl-C: as a shell reports a command SIGINT ended
        return 130
    return 0
