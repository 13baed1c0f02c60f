"""Sax names; their home is `gateway.common.names` (this path stays importable)."""

from gateway.common.names import *  # noqa: F403
