"""The status-error tree; its home is `gateway.common.errors` (this path stays importable)."""

from gateway.common.errors import *  # noqa: F403
