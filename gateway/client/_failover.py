"""Which failures of a data call another replica may fix, and what a failing call has tried.

A replica that is unreachable, overloaded, shutting down or without the model is skipped
for the next one (and, unreachable or shutting down, marked down for a moment); any other
failure is the call's answer. The router (`_router.py`) records each failed attempt here and
raises what `Retry.failed` says cannot be helped::

    retry = failed(retry, table, address, exc)  # raises unless another replica may help

Once every replica has failed, the router backs off and goes round again, within the call's
deadline; but an overloaded model (a round in which a replica answered RESOURCE_EXHAUSTED)
is retried only for ``overloaded_after`` seconds from its first such answer, then reported
(`Retry.overload_ended`, `Retry.error`): a 429 the caller backs off on, where upstream's
client retries it until its deadline.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterator

import grpc

from gateway.client._admin import NO_SUCH_SERVICE, backoff_delays
from gateway.client._locations import AddressTable
from gateway.client._serializing import Unparsed
from gateway.common.deadline import now
from gateway.common.errors import (
    GRPC_DEADLINE,
    REPLICA_RETRY_CODES,
    DeadlineExceededError,
    InternalError,
    InvalidArgumentError,
    ResourceExhaustedError,
    SaxError,
    UnavailableError,
    UnimplementedError,
    asks_for_credentials,
    code_from_text,
    error_for_code,
    from_grpc_error,
)
from gateway.common.failurelog import FailureLog

# The router's logger, as before these lines moved here: a filter set for it still applies.
_log = logging.getLogger("gateway.client._router")

# A replica's failures that are not Sax's own refusals: an operator must learn which replica
# fails, and how often, without a line per call.
_REPLICA_FAILURES = FailureLog(_log)
_CAUSE_CHARS = 200

# Codes after which a replica is skipped for a moment.
_DOWN_CODES = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED})

#: How many times a call is sent to a replica that then goes away while holding it (its
#: connection cut: a crash, a kill). A query that brings model servers down (one they run
#: out of memory on) was sent to each replica in turn until its deadline: 11 times in 3 s to
#: one replica, 49 in 20 s to two, each time cutting the other calls those replicas held.
#: gRPC's own retry policy (gRFC A6) bounds its attempts alike.
LOST_AT_MOST = 3


class Retry:
    """What a failing call has tried so far (this round: since it last backed off)."""

    __slots__ = (
        "delays",
        "final",
        "last",
        "last_address",
        "lost",
        "overloaded",
        "overloaded_since",
        "tried",
    )

    def __init__(self) -> None:
        self.tried: list[str] = []
        self.last: SaxError | None = None
        self.last_address = ""
        """The replica that failed with ``last``."""
        self.delays: Iterator[float] = backoff_delays()
        self.overloaded: SaxError | None = None
        """This round's last RESOURCE_EXHAUSTED answer, if a replica gave one."""
        self.overloaded_since = math.inf
        """When a replica first answered RESOURCE_EXHAUSTED (``now()``'s clock)."""
        self.final = False
        """Whether ``last`` is a failure no later round mends (`hopeless`)."""
        self.lost = 0
        """Attempts whose replica went away while it held the call (`LOST_AT_MOST`)."""

    def failed(self, table: AddressTable, address: str, exc: grpc.aio.AioRpcError) -> None:
        """Records a failed attempt; raises the error if another replica cannot help."""
        error = call_error(table.model_id, exc)
        self.final = True  # unless a later round may find the replica mended
        if _unserved(exc):
            # grpc's own words for a server without the method: the admin names for the model
            # a server that is no Sax model server (its own address, another program's), or
            # one of a Sax without the method. Another replica may serve it; passed on alone,
            # it read as the gateway's own 501, naming nothing.
            error = UnimplementedError(
                f"the model server of {table.model_id} at {address} does not serve this call "
                f"({error.message}): it is no Sax model server, or one of a Sax without it"
            )
        elif asks_for_credentials(exc.code(), exc.details() or ""):
            # An auth proxy before the model server (a mesh's sidecar) refused this client,
            # which sends no credentials: passed on, its 401 or 403 told the gateway's caller
            # to mend a key that was fine (saxgw's hint: set SAXGW_API_KEY).
            error = UnavailableError(
                f"the model server of {table.model_id} at {address} asks for credentials, "
                f"which this client does not send ({exc.code().name}: {exc.details()})"
            )
        elif error.code not in REPLICA_RETRY_CODES or _too_large(error):
            raise replica_error(table.model_id, address, exc, error) from exc
        else:
            self.final = False
            self.lost += _lost_under(error.message)
            if self.lost >= LOST_AT_MOST:
                raise UnavailableError(
                    f"the model servers of {table.model_id} went away while holding this call "
                    f"{self.lost} times, the last at {address} ({error.message}): it is not "
                    "sent again, as it may be what brings them down"
                ) from exc
        error.__cause__ = exc
        if error.code in _DOWN_CODES:
            table.mark_down(address)
        elif error.code == grpc.StatusCode.RESOURCE_EXHAUSTED:
            self.overloaded = error
            self.overloaded_since = min(self.overloaded_since, now())
        _log.debug("%s on %s: %s", table.model_id, address, error)
        self.tried.append(address)
        self.last, self.last_address = error, address

    def hopeless(self) -> bool:
        """Whether a new round cannot help: this one ended on a replica without the method,
        or one that asks for credentials."""
        return self.final

    def next_round(self) -> None:
        """Every replica may be tried again (after a backoff, or with a new table)."""
        self.tried.clear()
        self.overloaded = None

    def overload_ended(self, delay: float, overloaded_after: float) -> bool:
        """Whether a replica answered overloaded this round and a retry after ``delay``
        seconds would begin ``overloaded_after`` seconds or more after the first such answer."""
        return self.overloaded is not None and now() + delay >= (
            self.overloaded_since + overloaded_after
        )

    def error(self, model_id: str) -> SaxError:
        """What the call fails with once retries end: overloaded if a replica answered so this
        round (RESOURCE_EXHAUSTED, the status a caller backs off on), else the last failure
        (a replica's NOT_FOUND as UNAVAILABLE)."""
        overloaded = self.overloaded
        if overloaded is None:
            assert self.last is not None
            if self.last.code == grpc.StatusCode.NOT_FOUND:
                # The model is published (a model that is not fails before any replica is
                # tried), but its replicas answered that they do not have it loaded, to the
                # end: the cell's fault, not the caller's. NOT_FOUND, a 404, read as "no such
                # model" (README's table); UNAVAILABLE is what retrying may mend.
                return UnavailableError(
                    f"no replica of {model_id} has it loaded: {self.last.message}"
                )
            if self.last.code == grpc.StatusCode.UNAVAILABLE and model_id not in self.last.message:
                # grpc's own words ("failed to connect to all addresses; ... connection attempt
                # timed out before receiving SETTINGS frame") named neither the model nor the
                # replica: a caller read it as the gateway's failure.
                unreachable = UnavailableError(
                    f"no replica of {model_id} can be reached: {self.last_address}: "
                    f"{self.last.message}"
                )
                unreachable.__cause__ = self.last.__cause__
                return unreachable
            return self.last
        message = f"{model_id} is overloaded; retry later ({overloaded.message})"
        error = ResourceExhaustedError(message)
        error.__cause__ = overloaded.__cause__
        return error


def call_error(model_id: str, exc: grpc.RpcError) -> SaxError:
    """A model server call's failure as its caller gets it. A deadline that grpc enforced
    during the call reads "Deadline Exceeded", naming nothing: it names the call, as one
    that passes between attempts does (`Deadline.timeout`). CANCELLED is never the caller's
    own cancellation (see `REPLICA_RETRY_CODES`) but the server resetting the call: passed
    on as CANCELLED, it told the gateway's caller that it had given up itself (an HTTP 499,
    "client closed request", after a minute of retries); it is the replica that went away,
    and the call gets UNAVAILABLE, as when no replica can be reached."""
    error = from_grpc_error(exc)
    if error.code == grpc.StatusCode.DEADLINE_EXCEEDED and error.message == GRPC_DEADLINE:
        return DeadlineExceededError(f"call to {model_id} exceeded its deadline")
    if (over := _RECEIVED_TOO_LARGE.search(error.message)) is not None:
        # RESOURCE_EXHAUSTED to grpc, a 429 that clients retry, to fail alike.
        if f"{_RECEIVED_HERE}{over[0]}" in error.message:
            # Over `ClientSettings.max_reply_bytes`, a gateway's message limit. Said as the
            # gateway says a reply it cannot send (service/_errors.py's check_reply): the
            # same reply, refused sooner.
            return InvalidArgumentError(
                f"the reply would be {over[1]} bytes, over this gateway's limit of {over[2]} "
                "bytes: ask the model for less (fewer or shorter samples, fewer or smaller "
                "outputs)"
            )
        # The model server's refusal of the request: upstream's take gRPC's default, 4 MiB.
        # It was said as a reply over the gateway's limit (of 4194304 bytes, where the
        # gateway's is 32 MiB), and "ask the model for less".
        return InvalidArgumentError(
            f"the request is {over[1]} bytes, over the limit of {over[2]} bytes of the model "
            f"servers of {model_id}: send less (smaller or fewer inputs)"
        )
    if error.code == grpc.StatusCode.RESOURCE_EXHAUSTED and _METADATA_TOO_LARGE in error.message:
        # Headers or trailers over the channel's limit (`_channels.MAX_METADATA_BYTES`): a
        # status message that long, most likely. RESOURCE_EXHAUSTED to grpc, it was taken for
        # an overloaded model, retried on every replica, and answered 429 "overloaded".
        return InternalError(
            f"a model server of {model_id} answered with headers or trailers over this "
            f"client's limit ({error.message})"
        )
    if error.code == grpc.StatusCode.CANCELLED:
        return UnavailableError(
            f"a model server of {model_id} cancelled the call (it may be shutting down): "
            f"{error.message}"
        )
    return error


def stream_error(model_id: str, address: str, exc: grpc.RpcError) -> SaxError:
    """A stream's failure once it has begun, as its caller gets it (`call_error`). A replica
    that went away mid-stream (killed, its connection lost) left only grpc's words for the
    cut stream, "Stream removed (Socket closed)", which named neither the model nor the
    replica, nor said that the stream, having begun, cannot move to another replica: they do.
    So does one that a replica told to stop cut at the end of its grace period (a rolling
    restart of the cell), in grpc's words for that, "Cancelling all calls"."""
    error = call_error(model_id, exc)
    went_away = error.message.startswith(_REMOVED) or error.message == _SERVER_STOPPED
    if error.code == grpc.StatusCode.UNAVAILABLE and went_away:
        return UnavailableError(
            f"the model server of {model_id} at {address} went away during the stream "
            f"({error.message}); a stream that has begun cannot move to another replica: "
            "send it again"
        )
    return replica_error(model_id, address, exc, error)


def replica_error(model_id: str, address: str, exc: grpc.RpcError, error: SaxError) -> SaxError:
    """``error`` (`call_error`'s of ``exc``), naming the replica at ``address`` and logged
    (once, then at most once a minute while it goes on) if the replica failed the call in
    words of its own: not Sax's (whose messages end with the code's Go name: the model's own
    refusal of the call, such as an input it does not take), nor ones this client put for it
    (which name the replica already). A replica's INTERNAL "boom" reached the caller as
    "boom" alone, and nothing was logged: no one could tell which replica failed. Its
    address, as an unreachable replica's, is what an operator's curl shows (docs/security.md:
    an outage names the cell's addresses)."""
    details = getattr(exc, "details", lambda: None)() or ""
    if error.message != details or address in details or code_from_text(details) is not None:
        return error  # said by this client, or in Sax's words
    _REPLICA_FAILURES.failed(
        ("model server", address),
        f"the model server of {model_id} at {address} failed a call with {error.code.name}: "
        f"{error.message}",
        # Kept for a minute per replica, up to 16 of them: a prefix tells failures apart.
        cause=f"{error.code.name}: {error.message[:_CAUSE_CHARS]}",
    )
    named = error_for_code(
        error.code,
        f"the model server of {model_id} at {address} failed the call: {error.message}",
        field_violations=getattr(error, "field_violations", ()),
    )
    named.__cause__ = error.__cause__
    return named


#: How grpc words a message over a receive limit: a reply over the channel's, or (from the
#: server) the request over the server's.
_RECEIVED_TOO_LARGE = re.compile(r"Received message larger than max \((\d+) vs\. (\d+)\)")
#: What this client's grpc puts before it when the reply was over its own limit (grpcio 1.85;
#: the server's puts "SERVER: ", and an older one nothing).
_RECEIVED_HERE = "CLIENT: "

#: How grpc words headers or trailers received over the channel's metadata limits.
_METADATA_TOO_LARGE = "received metadata size exceeds"

#: How grpc words a stream that the connection under it cut.
_REMOVED = "Stream removed ("
#: ... when the connection itself died (a killed server, a reset): not a GOAWAY's or a
#: REFUSED_STREAM's streams, which the server never began (RFC 9113 8.7), nor a silent
#: connection's "ping timeout" (a hung server, which the hang watch finds).
_CONNECTION_LOST = ("Socket closed", "Connection reset", "Broken pipe")
#: ... and the calls a grpc server that stops cuts at the end of its grace period (upstream's
#: model servers are Python grpc servers).
_SERVER_STOPPED = "Cancelling all calls"


def _lost_under(message: str) -> bool:
    """Whether a call's connection died while the replica held it (`LOST_AT_MOST`)."""
    return message.startswith(_REMOVED) and any(word in message for word in _CONNECTION_LOST)


def failed(
    retry: Retry | None, table: AddressTable, address: str, exc: grpc.aio.AioRpcError
) -> Retry:
    """Records a failed attempt (the bookkeeping exists from the first failure on)."""
    retry = retry or Retry()
    retry.failed(table, address, exc)
    return retry


CLIENT_CLOSED = grpc.aio.AioRpcError(
    grpc.StatusCode.UNAVAILABLE,
    grpc.aio.Metadata(),
    grpc.aio.Metadata(),
    details="the Sax client was closed during the call: its owner is stopping",
)
"""A call cut, or refused, by `Router.close`."""


def closed_under(address: str) -> grpc.aio.AioRpcError:
    """A call cut by the closing of its channel, as a failed attempt. The pool closes a
    replica's channel (after a grace period) once the replica has left the model's address
    set, as a hung server does when the admin gives up on it; the call then goes to a replica
    that is still in the set, as it would had the server refused it."""
    return grpc.aio.AioRpcError(
        grpc.StatusCode.UNAVAILABLE,
        grpc.aio.Metadata(),
        grpc.aio.Metadata(),
        details=f"the connection to {address} was closed under the call",
    )


def unparsed(model_id: str, address: str, reply: Unparsed) -> grpc.aio.AioRpcError:
    """A reply that did not parse (`_serializing`), as the failed attempt it is: the model
    server's fault, INTERNAL as grpc reports a reply it cannot read, and not retried (its
    other replicas run the same server)."""
    return grpc.aio.AioRpcError(
        grpc.StatusCode.INTERNAL,
        grpc.aio.Metadata(),
        grpc.aio.Metadata(),
        details=f"the model server of {model_id} at {address} answered with a reply that does "
        f"not parse: {reply.why}",
    )


def _unserved(exc: grpc.aio.AioRpcError) -> bool:
    return exc.code() == grpc.StatusCode.UNIMPLEMENTED and exc.details() in NO_SUCH_SERVICE


def _too_large(error: SaxError) -> bool:
    # gRPC reports an oversized message as RESOURCE_EXHAUSTED too, but unlike an overloaded
    # server, no other replica and no retry will take it.
    return error.code == grpc.StatusCode.RESOURCE_EXHAUSTED and "larger than max" in error.message
