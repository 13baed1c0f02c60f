"""google.rpc statuses as servers send them, for the tests that read them back."""

from __future__ import annotations

from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2

DETAILS_KEY = "grpc-status-details-bin"  # the trailer a gRPC server puts the status in


def bad_request(message: str, *violations: tuple[str, str]) -> status_pb2.Status:
    """An INVALID_ARGUMENT status whose BadRequest detail names ``(field, description)``s."""
    bad = error_details_pb2.BadRequest(
        field_violations=[
            error_details_pb2.BadRequest.FieldViolation(field=field, description=description)
            for field, description in violations
        ]
    )
    detail = any_pb2.Any()
    detail.Pack(bad)
    return status_pb2.Status(code=3, message=message, details=[detail])
