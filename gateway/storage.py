"""SAX_ROOT storage; its home is `gateway.common.storage` (this path stays importable)."""

from gateway.common.storage import *  # noqa: F403
