"""The gateway's settings: one frozen object, built at the edge (CLI or test) and passed down.

    GatewaySettings(client=ClientSettings(sax_root="/tmp/root"), default_timeout=30)

The Sax client's own settings are a part of it, not copied into it; every default is defined
here (or in ``ClientSettings``) once, and the CLI's flags take theirs from these fields.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.client import ClientSettings

MIB = 1 << 20
DEFAULT_GATEWAY_PORT = 50051
"""The port ``saxgw gateway`` listens on when given none (``up`` starts the first one there)."""


@dataclass(frozen=True, kw_only=True)
class GatewaySettings:
    """Everything the gateway server needs; nothing below this reads the environment."""

    client: ClientSettings
    """How the gateway's Sax client finds and talks to cells (SAX_ROOT, GCS endpoint, ...)."""
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
    max_streams_per_client: int = 100
    """Long-lived streams (GenerateStream, WatchAddresses) one client may hold open."""

    @property
    def sax_root(self) -> str:
        """The client's SAX_ROOT (read-only shorthand)."""
        return self.client.sax_root
