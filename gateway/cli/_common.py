"""What every client command shares: global flags, the gRPC stub, inputs, output and errors.

A family module adds a command with `add_command`; its function gets a `Session` (the stub,
the deadline, the output mode) and the parsed arguments, and returns nothing. Failures are
reported in one place, `report`, which prints a message and a concrete hint::

    add_command(commands, "lm.embed", "ID TEXT", "Embed a text with a language model.", _embed)
"""

from __future__ import annotations

import argparse
import json
import os
import select
import sys
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, TextIO, TypeAlias, TypeVar

import grpc
from google.protobuf import json_format
from google.protobuf.message import Message
from google.rpc import error_details_pb2, status_pb2
from saxgateway.v1 import gateway_pb2_grpc

from gateway.cli._hints import (
    CELL_DOWN,
    CELL_NOT_FOUND,
    CELL_NOT_FOUND_DETAILS,
    CELL_UNREACHABLE,
    GATEWAY_UNIMPLEMENTED,
    HINTS,
    INVALID_UNNAMED,
    NOT_CONNECTED,
    NOT_GRPC,
    NOT_GRPC_DETAILS,
    ROLE_DENIED,
    ROLE_DENIED_DETAILS,
    STORAGE_DETAILS,
    STORAGE_FAILED,
    UNIMPLEMENTED_BY_CELL,
    WATCH_ENDED,
    tls_hint,
)
from gateway.cli._inputs import InputError, UsageError, duration, file_arg
from gateway.cli._numbers import number, shorten
from gateway.config import MIB

DEFAULT_GATEWAY = "localhost:8888"
API_KEY_ENV = "SAXGW_API_KEY"
_DETAILS_KEY = "grpc-status-details-bin"
_CHANNEL_OPTIONS = (
    ("grpc.max_receive_message_length", 32 * MIB),
    ("grpc.max_send_message_length", 32 * MIB),
)

# What main.py's add_subparsers returns; argparse names its type privately.
Commands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def add_global_flags(parser: argparse.ArgumentParser, *, defaults: bool) -> None:
    """Adds --gateway, --timeout, --api-key, the TLS flags and --json. They are accepted
    before the command (``saxgw --gateway h:p ls``, as saxutil users type them) and after it;
    only the top level sets ``defaults``, so a flag given before the command is not reset by
    the command's parser."""

    def default(value: object) -> object:
        return value if defaults else argparse.SUPPRESS

    parser.add_argument(
        "--gateway",
        default=default(DEFAULT_GATEWAY),
        metavar="HOST:PORT",
        help=f"gateway (Envoy or gateway gRPC port) to talk to (default: {DEFAULT_GATEWAY})",
    )
    parser.add_argument(
        "--timeout",
        type=duration,
        default=default(None),
        metavar="SECONDS",
        help="deadline of the call: seconds, or a duration as saxutil takes it (90s, 1m30s, "
        "500ms) (default: the gateway's)",
    )
    parser.add_argument(
        "--api-key",
        default=default(None),
        metavar="KEY",
        help=f"API key or JWT the gateway's Envoy asks for, sent as Authorization: Bearer "
        f"(default: ${API_KEY_ENV}, which keeps it out of `ps` and shell history)",
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


class _CallDetails(grpc.ClientCallDetails):
    """A call's details with one more header (grpc's own class for them is private)."""

    def __init__(self, details: grpc.ClientCallDetails, header: tuple[str, str]) -> None:
        self.method = details.method
        self.timeout = details.timeout
        self.metadata = (*(details.metadata or ()), header)
        self.credentials = details.credentials
        self.wait_for_ready = details.wait_for_ready
        self.compression = details.compression


class _Bearer(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor):
    """Sends an API key or JWT with every call, as Envoy's authentication reads it
    (docs/security.md)."""

    def __init__(self, key: str) -> None:
        self._header = ("authorization", f"Bearer {key}")

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(_CallDetails(details, self._header), request)

    def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(_CallDetails(details, self._header), request)


def _with_key(channel: grpc.Channel, key: str | None) -> grpc.Channel:
    """``channel``, sending ``key`` with every call if there is one."""
    return grpc.intercept_channel(channel, _Bearer(key)) if key else channel


def _pem(path: str | None, flag: str) -> bytes | None:
    if path is None:
        return None
    return file_arg(path, flag, "a PEM certificate or key")


def _channel(args: argparse.Namespace) -> grpc.Channel:
    """The channel to ``args.gateway``: TLS when any TLS flag is given (mTLS with a client
    certificate), else plaintext, as `saxgw up` serves loopback."""
    cert, key = args.client_cert, args.client_key
    if (cert is None) != (key is None):
        raise InputError(
            "--client-cert and --client-key go together",
            "give the certificate and its private key, both PEM files",
        )
    if not (args.tls or args.ca_cert or cert):
        return grpc.insecure_channel(args.gateway, options=_CHANNEL_OPTIONS)
    credentials = grpc.ssl_channel_credentials(
        root_certificates=_pem(args.ca_cert, "--ca-cert"),
        private_key=_pem(key, "--client-key"),
        certificate_chain=_pem(cert, "--client-cert"),
    )
    return grpc.secure_channel(args.gateway, credentials, options=_CHANNEL_OPTIONS)


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
    if sys.stdout is None:  # `saxgw ls >&-`: Python then has no stdout, and writing crashed
        print(
            "saxgw: stdout is closed: the result could not be printed; nothing was sent"
            "\nhint: to discard the output, send it to /dev/null (>/dev/null)",
            file=sys.stderr,
        )
        return 1
    try:
        with _channel(args) as channel:
            key = args.api_key or os.environ.get(API_KEY_ENV)
            session = Session(
                stub=gateway_pb2_grpc.SaxGatewayStub(_with_key(channel, key)),
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
        return _report_input(str(exc), exc.hint, args, sys.stderr)
    except UnicodeEncodeError as exc:
        if exc.encoding == "utf-8":  # an argument from argv that is not UTF-8: protobuf refused it
            return _report_input(
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
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except OSError as exc:
        print(f"saxgw: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # Ctrl-C: as a shell reports a command SIGINT ended
        return 130
    return 0


def _report_input(message: str, hint_text: str, args: argparse.Namespace, err: TextIO) -> int:
    if args.json:
        # Shaped as a failed call's error: INVALID_ARGUMENT, as the gateway would answer it.
        error = {"code": grpc.StatusCode.INVALID_ARGUMENT.value[0], "message": message}
        print(json_text({**error, "details": [], "hint": hint_text}, err), file=err)
    else:
        print(f"saxgw: {message}\nhint: {hint_text}", file=err)
    return 1


# Output.


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


def fields(pairs: Iterable[tuple[str, object]]) -> str:
    """``name  value`` lines with the values aligned."""
    items = [(name, _cell(value)) for name, value in pairs]
    width = max(len(name) for name, _ in items)
    return "\n".join(f"{name.ljust(width)}  {value}".rstrip() for name, value in items)


def floats(values: Iterable[float]) -> str:
    """A vector on one line, each value in its shortest form."""
    return " ".join(number(v) for v in values)


def _cell(value: object) -> str:
    return number(value) if isinstance(value, float) else str(value)


# Errors.


def report(exc: grpc.RpcError, args: argparse.Namespace, err: TextIO) -> int:
    """Prints a failed call's status, the fields at fault and a hint; returns the exit status."""
    code: grpc.StatusCode = exc.code()
    message = exc.details() or ""
    envoy = _envoy_body(message)
    if envoy is not None:
        message = envoy["message"]
    violations = field_violations(exc)
    advice = hint(code, args, fields_named=bool(violations), details=message)
    if getattr(args, "json", False):  # as the HTTP API's error body, with the hint beside it
        status = _status(exc) or status_pb2.Status(code=code.value[0], message=message)
        try:
            body = envoy or to_dict(status)
        except TypeError:  # a detail of a type this build does not know: leave details out
            body = {"code": status.code, "message": status.message, "details": []}
        print(json_text({**body, "hint": advice}, err), file=err)
        return 1
    lines = [f"saxgw: {code.name}: {message or 'no details'}"]
    # A violation the message already says (the gateway's usual "field: why") is not repeated.
    lines += [
        f"  {field}: {why}"
        for field, why in violations
        if why != message and f"{field}: {why}" not in message
    ]
    lines.append("hint: " + advice)
    print("\n".join(lines), file=err)
    return 1


def _envoy_body(details: str) -> dict[str, Any] | None:
    """The JSON body of a reply Envoy made itself (no credentials, a role or rate refused, a
    body too large), which reaches a gRPC client as the status message: the HTTP API's
    error body, whose ``message`` is the one to show."""
    if not details.startswith("{"):
        return None
    try:
        body = json.loads(details)
    except json.JSONDecodeError:
        return None
    if isinstance(body, dict) and isinstance(body.get("message"), str) and "code" in body:
        return body
    return None


def _status(exc: grpc.RpcError) -> status_pb2.Status | None:
    """The google.rpc.Status a failed call's trailers carry, if any."""
    # grpc's trailers are (key, value) named tuples; types-grpcio types them as a class that
    # does not unpack, which they do.
    trailers: Sequence[tuple[str, str | bytes]] = exc.trailing_metadata() or ()  # type: ignore[assignment]
    for key, value in trailers:
        if key == _DETAILS_KEY and isinstance(value, bytes):
            return status_pb2.Status.FromString(value)
    return None


def field_violations(exc: grpc.RpcError) -> list[tuple[str, str]]:
    """The google.rpc.BadRequest field violations in a status' details, if any."""
    status = _status(exc)
    violations = []
    for detail in status.details if status else ():
        bad = error_details_pb2.BadRequest()
        if detail.Unpack(bad):
            violations += [(v.field, v.description) for v in bad.field_violations]
    return violations


def hint(
    code: grpc.StatusCode,
    args: argparse.Namespace,
    *,
    fields_named: bool = True,
    details: str = GATEWAY_UNIMPLEMENTED,
) -> str:
    """What to try next after a call failed with ``code`` (and ``details``)."""
    text = HINTS[code]
    if code == grpc.StatusCode.INVALID_ARGUMENT and not fields_named:
        text = INVALID_UNNAMED
    if code == grpc.StatusCode.UNIMPLEMENTED and details != GATEWAY_UNIMPLEMENTED:
        text = UNIMPLEMENTED_BY_CELL
    if code == grpc.StatusCode.NOT_FOUND and CELL_NOT_FOUND_DETAILS.match(details):
        text = CELL_NOT_FOUND
    if code == grpc.StatusCode.UNAVAILABLE and CELL_UNREACHABLE in details:
        text = CELL_DOWN
    storage = code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.INTERNAL)
    if storage and STORAGE_DETAILS.search(details):
        text = STORAGE_FAILED
    if code == grpc.StatusCode.PERMISSION_DENIED and details == ROLE_DENIED_DETAILS:
        text = ROLE_DENIED
    if code == grpc.StatusCode.DEADLINE_EXCEEDED and getattr(args, "command", "") == "watch":
        text = WATCH_ENDED
    if any(marker in details for marker in NOT_GRPC_DETAILS):
        text = NOT_GRPC
    if code == grpc.StatusCode.UNAVAILABLE and NOT_CONNECTED in details:
        tls = any(getattr(args, flag, None) for flag in ("tls", "ca_cert", "client_cert"))
        text = tls_hint(details, tls=tls) or text
    target = getattr(args, "id", None) or "ID"
    parts = target.strip("/").split("/")
    cell = "/" + "/".join(parts[:2]) if len(parts) >= 2 else "/sax/<cell>"
    return text.format(
        gateway=getattr(args, "gateway", DEFAULT_GATEWAY),
        id=target,
        cell=cell,
        command=getattr(args, "command", "COMMAND"),
    )


def print_stream_json(messages: Iterable[Message], out: TextIO) -> None:
    """One compact JSON object per line, flushed as each message arrives."""
    for message in messages:
        out.write(to_json(message, out=out) + "\n")
        out.flush()


def cancel_on_hangup(call: grpc.RpcContext, out: TextIO) -> threading.Event:
    """Cancels the streaming ``call`` when ``out``'s reader goes away (`saxgw watch | head -1`);
    the returned event is set if it did. A closed pipe is otherwise noticed only at the next
    write, and a watch may not write for hours."""
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
