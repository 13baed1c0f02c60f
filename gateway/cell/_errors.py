"""Errors of the embedded cell and their one mapping to gRPC status.

The cell raises the shared typed errors (`gateway.common.errors`, one class per status
code, each with `.code`); the servicer decorators here turn them into the call's status:

    raise not_found("model /sax/test/foo is not published")
    # -> NOT_FOUND "model /sax/test/foo is not published: NotFound"

Upstream Sax returns every error as UNKNOWN with the canonical code's Go name at the end of
the message; clients written for upstream parse that suffix. We return the real code *and*
keep the suffix, so both kinds of client recover the same code.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import TypeVar

import grpc

from gateway.common.errors import SaxError, error_for_code, status_details
from gateway.common.rpc import Context

_Req = TypeVar("_Req")
_Resp = TypeVar("_Resp")
_Self = TypeVar("_Self")


class CellStartError(Exception):
    """A server of the cell must not start (a corrupt file, another live admin): the message
    says what to do, and its process prints it as one line instead of a traceback."""


def cell_error(code: grpc.StatusCode, message: str) -> SaxError:
    return error_for_code(code, message)


def invalid_argument(message: str) -> SaxError:
    return error_for_code(grpc.StatusCode.INVALID_ARGUMENT, message)


def not_found(message: str) -> SaxError:
    return error_for_code(grpc.StatusCode.NOT_FOUND, message)


def unavailable(message: str) -> SaxError:
    return error_for_code(grpc.StatusCode.UNAVAILABLE, message)


async def abort(context: Context, exc: SaxError) -> None:
    """Ends the call with the status that reports ``exc`` (raises, as `context.abort` does)."""
    await context.abort(exc.code, status_details(exc))


def unary_errors(
    method: Callable[[_Self, _Req, Context], Awaitable[_Resp]],
) -> Callable[[_Self, _Req, Context], Awaitable[_Resp]]:
    """Decorates a unary servicer method: a SaxError becomes its gRPC status."""

    @functools.wraps(method)
    async def wrapper(self: _Self, request: _Req, context: Context) -> _Resp:
        try:
            return await method(self, request, context)
        except SaxError as exc:
            await abort(context, exc)
            raise AssertionError("unreachable: abort raises") from exc

    return wrapper


def stream_errors(
    method: Callable[[_Self, _Req, Context], AsyncGenerator[_Resp]],
) -> Callable[[_Self, _Req, Context], AsyncGenerator[_Resp]]:
    """Decorates a server-streaming servicer method: a SaxError becomes its gRPC status."""

    @functools.wraps(method)
    async def wrapper(self: _Self, request: _Req, context: Context) -> AsyncGenerator[_Resp]:
        stream = method(self, request, context)
        try:
            async for item in stream:
                yield item
        except SaxError as exc:
            await abort(context, exc)
        finally:
            # When the client cancels, grpc closes this wrapper; close the inner stream now
            # too, so it stops at once instead of whenever it is garbage-collected.
            await stream.aclose()

    return wrapper
