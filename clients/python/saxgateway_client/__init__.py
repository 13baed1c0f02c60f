"""A typed client of the SaxGateway gRPC API (``pip install clients/python``).

    from saxgateway_client import Client, BadRequestError

    with Client("localhost:8888", timeout=30) as client:
        for text, score in client.generate("/sax/test/lm2b", "Hello", extra={"temperature": 0.5}):
            print(score, text)

Every call has a deadline and raises a :class:`SaxGatewayError` subclass on failure;
``generate_stream`` is an iterator. ``client.call("ListModels", request)`` reaches any other
unary RPC with the same deadline and errors, ``client.stream("WatchAddresses", request)`` any
streaming one; the generated messages are ``saxgateway.v1``. :class:`AsyncClient` is the
same for asyncio: ``async with``, ``await client.generate(...)``, ``async for`` over streams.
``saxgateway_client.__version__`` is the installed distribution's version.
"""

from functools import cache

from saxgateway_client._aio import AsyncClient
from saxgateway_client._client import Client
from saxgateway_client._errors import (
    AbortedError,
    AlreadyExistsError,
    BadRequestError,
    CancelledError,
    DeadlineExceededError,
    FieldViolation,
    NotFoundError,
    PermissionDeniedError,
    ResourceExhaustedError,
    SaxGatewayError,
    ServerError,
    UnauthenticatedError,
    UnavailableError,
    UnimplementedError,
    error_for,
    from_rpc_error,
    from_status,
)
from saxgateway_client._requests import JSONValue, extra_inputs


@cache
def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("sax-gateway-client")
    except PackageNotFoundError:  # its folder copied into a project, never installed
        return "0.0.0+unknown"


def __getattr__(name: str) -> str:
    # Read when first asked for: the installed metadata takes milliseconds to find, which
    # an import of the client for its calls need not spend.
    if name == "__version__":
        return _version()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "AbortedError",
    "AlreadyExistsError",
    "AsyncClient",
    "BadRequestError",
    "CancelledError",
    "Client",
    "DeadlineExceededError",
    "FieldViolation",
    "JSONValue",
    "NotFoundError",
    "PermissionDeniedError",
    "ResourceExhaustedError",
    "SaxGatewayError",
    "ServerError",
    "UnauthenticatedError",
    "UnavailableError",
    "UnimplementedError",
    "__version__",
    "error_for",
    "extra_inputs",
    "from_rpc_error",
    "from_status",
]
