"""The servicer context every gRPC method here takes, in the cell and the gateway alike.

Typed by types-grpcio; generic in the request and response types only for a stream's
``read``/``write``, which no servicer here uses, so both are ``Any`` as in the servicer
stubs mypy-protobuf generates (their context type is ``ServicerContext[Any, Any]`` too,
so our methods accept exactly what the generated base classes promise).
"""

from __future__ import annotations

from typing import Any, TypeAlias

import grpc

Context: TypeAlias = grpc.aio.ServicerContext[Any, Any]
