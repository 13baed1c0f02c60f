"""Log output for every saxgw process: JSON lines for machines, plain text for people.

    configure("json", logging.INFO)   # {"time": "...", "level": "INFO", "logger": ..., ...}

A record logged while the gateway serves a call carries that call's ``request_id`` (the
``x-request-id`` Envoy sets), ``client`` (the identity Envoy authenticated, if any) and, on a
gateway that traces, ``trace_id`` and ``span_id`` (its server span's, as OpenTelemetry's log
correlation names them), read only when a record is actually written. A gateway process of a
stack of several (`saxgw up --workers N`) names itself in each line, ``process`` (`name_process`):
without ``--log-dir`` they all write to saxgw's one stderr.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable
from contextvars import ContextVar
from typing import Literal, NamedTuple, Protocol

from gateway.common.failurelog import REPEAT_S
from gateway.common.stdout import discard_stdout

LogFormat = Literal["json", "text", "auto"]
FORMATS: tuple[LogFormat, ...] = ("json", "text", "auto")


class CallInfo(Protocol):
    """What a log line may tell about the call being served."""

    @property
    def request_id(self) -> str | None: ...

    @property
    def client(self) -> str | None: ...

    @property
    def trace(self) -> tuple[str, str] | None:
        """The call's trace and span IDs in hex, None where the gateway does not trace."""
        ...


#: The call the current task serves, if any; the gateway's interceptor sets it.
current_call: ContextVar[CallInfo | None] = ContextVar("saxgw_current_call", default=None)

# Set while a record reads its call's fields. The request ID comes from the call's metadata,
# and grpc logs an error for a value that is not UTF-8 each time it decodes one: that record
# would read the metadata again, and so on until RecursionError, which failed the call (a 500
# for any request with such a header). A record logged meanwhile goes without the call's fields.
_reading_call: ContextVar[bool] = ContextVar("saxgw_reading_call", default=False)


#: This process's name in its lines (`name_process`), None for a process run alone.
_process: str | None = None


def name_process(name: str | None) -> None:
    """Has every line of this process say ``name`` (``gateway-1``): one of several processes
    that share a stderr."""
    global _process
    _process = name


class _Fields(NamedTuple):
    request_id: str | None = None
    client: str | None = None
    trace: tuple[str, str] | None = None


_OUTSIDE = _Fields()


def _call_fields() -> _Fields:
    """The current call's request ID, client and trace, all None outside a call."""
    call = current_call.get()
    if call is None or _reading_call.get():
        return _OUTSIDE
    token = _reading_call.set(True)
    try:
        request_id, client = call.request_id, call.client
        return _Fields(
            request_id and request_id[:LOGGED_ID_CHARS],
            client and client[:LOGGED_ID_CHARS],
            call.trace,
        )
    finally:
        _reading_call.reset(token)


TEXT = "%(asctime)s %(name)s %(levelname)s %(message)s"

#: The longest request ID (or client) a log line keeps: the caller picks its own x-request-id,
#: which Envoy passes on, as long as the header limit lets it (up to 8 MiB). Envoy's access log
#: keeps the same prefix (envoy/envoy.yaml.tmpl), so the two still match.
LOGGED_ID_CHARS = 128


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, process, message, request_id, client,
    trace_id, span_id, exception."""

    converter = time.gmtime  # type: ignore[assignment]  # typeshed's signature is too narrow

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
        }
        if _process is not None:
            line["process"] = _process
        line["message"] = record.getMessage()
        call = _call_fields()
        if call.request_id:
            line["request_id"] = call.request_id
        if call.client:
            line["client"] = call.client
        if call.trace:
            line["trace_id"], line["span_id"] = call.trace
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


def printable(text: str) -> str:
    """``text`` with each character that is not printable escaped as JSON would: a line break
    (also NEL, U+2028 and U+2029, which JSON leaves as they are) would start a line of a
    caller's making."""
    return "".join(c if c.isprintable() else json.dumps(c)[1:-1] for c in text)


def _field(value: str) -> str:
    """A value as one ``key=value`` field: quoted (JSON) unless it is one plain word, since a
    caller picks its own request ID and a space in it could write fields of its own."""
    if value and all(c.isprintable() and not c.isspace() and c not in '"=' for c in value):
        return value
    return printable(json.dumps(value, ensure_ascii=False))


class TextFormatter(logging.Formatter):
    """Plain text for a terminal, the process's name and the call's request_id, client and
    trace as ``key=value`` at the end."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        # A message may quote a caller's input (a model name it sent): a line break in it
        # would start a line of the caller's making. Escaped, as JSON would; a traceback,
        # added after this, keeps its lines.
        record.message = printable(record.message)
        return super().formatMessage(record)

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        if _process is not None:
            text += f" process={_process}"
        call = _call_fields()
        if call.request_id:
            text += f" request_id={_field(call.request_id)}"
        if call.client:
            text += f" client={_field(call.client)}"
        if call.trace:
            text += " trace_id={} span_id={}".format(*call.trace)
        return text


def print_line(line: str) -> None:
    """Prints ``line`` to stdout, flushed, or loses it where stdout cannot take it, as
    logging's own lines are lost. Under `saxgw up --log-dir` stdout is the process's log file:
    on a full disk the line waits in the buffer for the next write. Without it, stdout is
    `saxgw up`'s stderr, whose reader may have gone (`2>&1 | tee` with tee killed, `| grep
    -m1`): later lines then go nowhere (`discard_stdout`). Either OSError had stopped each
    gateway and ops process at its "listening" line, and again at each restart: the stack
    answered 503 for good after a gateway's crash."""
    try:
        print(line, flush=True)
    except BrokenPipeError:
        discard_stdout()
    except OSError:
        pass


def print_record(logger: logging.Logger, message: str) -> None:
    """Prints ``message`` to stdout as an INFO record of ``logger``, formatted as the root
    logger's records are (JSON lines, or text): a line meant for stdout that still parses."""
    record = logger.makeRecord(logger.name, logging.INFO, "", 0, message, (), None)
    formatter = next((h.formatter for h in logging.getLogger().handlers if h.formatter), None)
    print_line(formatter.format(record) if formatter else message)


class UndecodableMetadata(logging.Filter):
    """grpc logs an ERROR with a traceback, quoting the value, each time it decodes a metadata
    value that is not UTF-8 (it then reads it as Latin-1), and a gateway reads a call's
    metadata several times: one request with such a header, which any client may send, wrote
    about twenty ERROR lines. Instead, at most one WARNING a minute, without the value."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self._clock = clock
        self._logged_at = -REPEAT_S
        self._count = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if not str(record.msg).startswith(_GRPC_UNDECODABLE):
            return True
        # A line of ours being written reads the call's request ID, which decodes the
        # metadata again: not another value.
        if _reading_call.get():
            return False
        self._count += 1
        now = self._clock()
        if now - self._logged_at >= REPEAT_S:
            count, self._count, self._logged_at = self._count, 0, now
            logging.getLogger(__name__).warning(
                "calls carried header values that are not UTF-8 (seen %d times since the last "
                "such line; grpc reads them as Latin-1; at most one line a minute)",
                count,
            )
        return False


class SendsToCallsGone(logging.Filter):
    """grpc logs an ERROR with a traceback (``ExecuteBatchError raised in core by servicer
    method [...]``) when a streaming reply cannot be sent because its caller is gone: one
    that stopped reading and then left (Envoy resets the stream when an HTTP client
    disconnects; the gateway cancels a model server's stream when its own caller leaves).
    grpc means to ignore a send to a caller that left, but only once it has seen it leave,
    and a send blocked on a caller that stopped reading fails first. That is no fault of the
    server, and the call's end is already told (CANCELLED in the metrics and access log)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(_GRPC_SEND_TO_GONE)


#: grpc's record for a metadata value that is not UTF-8 (its Cython module's logger).
_GRPC_UNDECODABLE = "Invalid encoding on"
#: grpc's record for a reply it could not send, its call being over (`SendsToCallsGone`).
_GRPC_SEND_TO_GONE = "ExecuteBatchError raised in core by servicer method"
_GRPC_LOGGER = "grpc._cython.cygrpc"


def resolved(fmt: LogFormat, *, terminal: bool | None = None) -> Literal["json", "text"]:
    """``fmt`` with ``auto`` decided: text on a terminal (stderr, unless ``terminal`` says
    where the lines go), JSON otherwise (a container, a log file)."""
    if fmt != "auto":
        return fmt
    return "text" if (sys.stderr.isatty() if terminal is None else terminal) else "json"


def configure(fmt: LogFormat, level: int) -> None:
    """Sends the root logger's records to stderr in ``fmt`` (`resolved`)."""
    fmt = resolved(fmt)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter(TEXT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    filter_grpc()


def filter_grpc() -> None:
    """Puts `UndecodableMetadata` and `SendsToCallsGone` on grpc's logger, once: every
    process that serves gRPC, whatever the format of its lines."""
    grpc_logger = logging.getLogger(_GRPC_LOGGER)
    for kind in (UndecodableMetadata, SendsToCallsGone):
        if not any(isinstance(f, kind) for f in grpc_logger.filters):
            grpc_logger.addFilter(kind())
