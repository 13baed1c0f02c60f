"""The gateway's settings: one frozen object, built at the edge (CLI or test) and passed down."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.client import ADMIN_UNREACHABLE_AFTER_S

MIB = 1 << 20


@dataclass(frozen=True, kw_only=True)
class GatewaySettings:
    """Everything the gateway server needs; nothing below this reads the environment."""

    sax_root: str
    """Local directory or ``gs://bucket/prefix`` holding ``sax/<cell>/location.proto``."""
    gcs_endpoint: str | None = None
    """GCS API endpoint override, e.g. a storage emulator's ``http://127.0.0.1:PORT``."""
    host: str = "127.0.0.1"
    port: int = 0
    """gRPC port; 0 picks a free one."""
    default_timeout: float = 60.0
    """Deadline of a unary call when the caller sets none (seconds)."""
    stream_timeout: float = 600.0
    """Deadline of a stream when the caller sets none (seconds)."""
    grace_period: float = 10.0
    """On shutdown, how long in-flight calls may take to finish (seconds)."""
    max_message_bytes: int = 32 * MIB
    """Largest gRPC message accepted or sent; matches Envoy's body limit."""
    max_payload_bytes: int = 10 * MIB
    """Largest image or audio payload; larger ones are INVALID_ARGUMENT, naming the field."""
    health_interval: float = 5.0
    """How often the health service probes the cell (seconds)."""
    num_conn: int = 3
    """Replicas a model's calls are spread over (the Sax client's ``num_conn``)."""
    admin_unreachable_after: float = ADMIN_UNREACHABLE_AFTER_S
    """Seconds the Sax admin may stay unreachable before calls that need it fail with
    UNAVAILABLE (HTTP 503), whatever their deadline."""
