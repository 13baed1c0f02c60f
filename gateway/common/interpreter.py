"""How this package starts Python processes of its own: the gateways, the ops server, the
embedded cell and its servers, direct mode's control plane and the die-with-parent wrapper."""

from __future__ import annotations

import sys


def module_argv(module: str) -> list[str]:
    """``python -P -m module`` with this interpreter: as ``-m`` runs it, but without the
    current directory first on ``sys.path`` (``-P``, Python 3.11). `saxgw up` started in a
    directory holding a ``timeit.py`` lost every gateway at import (prometheus_client imports
    timeit), and each child would have run whatever such a file held."""
    return [sys.executable, "-P", "-m", module]
