"""A SaxGateway call's one deadline, fixed where the call enters the gateway.

    deadline = fix(context, request, settings, stream=False)  # the access checks, on entry
    deadline = fixed(context, request, settings)               # the servicer: the same one

A data call waits for the gateway itself before it reaches Sax: for its model's ACLs from the
admin, and in the model's queue (gateway/service/_access.py). Its deadline runs from where it
entered, so that those waits count: fixed by the servicer, after them, a call queued for 3 s
with a 1 s ``timeout`` got another whole second, and the waits had no bound of their own.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any

from gateway.common.deadline import Deadline
from gateway.common.rpc import Context
from gateway.config import GatewaySettings
from gateway.service import _fields as f

# The deadline `fix` set, with the call it is for. A grpc.aio call runs in a task of its own,
# so the variable is the call's; the context is compared all the same, so that no task that
# copied a call's variables (a background ACL read) could take that call's deadline as its own.
_FIXED: ContextVar[tuple[Context, Deadline] | None] = ContextVar("saxgw_deadline", default=None)


def call_deadline(
    context: Context, request: Any, settings: GatewaySettings, *, stream: bool = False
) -> Deadline:
    """The call's deadline from now: the soonest of its gRPC deadline (a moment before it,
    `_fields.REPORT_MARGIN_S`), the request's ``timeout`` (if ``request`` has one) and the
    gateway's default timeout (``stream_timeout`` for a ``stream``), both of which the
    config file's ``limits.max_stream_duration`` caps (gateway/cli/_edge.py).

    A stream may decode for the stream timeout, but retrying overloaded or unreachable
    replicas stops where a unary call's would: a caller that set no deadline got its
    RESOURCE_EXHAUSTED after the whole stream timeout (600 s)."""
    asked = request.timeout if request is not None and request.HasField("timeout") else None
    unary = f.deadline(context, asked, settings.default_timeout)
    if not stream:
        return Deadline.after(unary)
    return Deadline.after(f.deadline(context, asked, settings.stream_timeout), retry_for=unary)


def fix(
    context: Context, request: Any, settings: GatewaySettings, *, stream: bool = False
) -> Deadline:
    """`call_deadline`, fixed for the rest of the call: what `fixed` then returns."""
    deadline = call_deadline(context, request, settings, stream=stream)
    _FIXED.set((context, deadline))
    return deadline


def fixed(
    context: Context, request: Any, settings: GatewaySettings, *, stream: bool = False
) -> Deadline:
    """The deadline `fix` set for this call; for a call that had none fixed (not a data call),
    `call_deadline` from now."""
    kept = _FIXED.get()
    if kept is not None and kept[0] is context:
        return kept[1]
    return call_deadline(context, request, settings, stream=stream)
