"""The one line a server command (``saxgw gateway``, ``saxgw ops``) exits with when it cannot
listen: the address, the process holding the port if one does (named as `saxgw up` names
it, so that a leftover server is found and stopped), and what to do.

    cannot_listen(exc)   # "cannot listen on 127.0.0.1:50051: port 50051 is in use by pid 7
                         #  (python -m gateway.cli gateway ...); stop it, or choose another --port"
"""

from __future__ import annotations

from gateway.common.listen import ListenError
from gateway.launch.ports import holder


def cannot_listen(exc: ListenError) -> str:
    """Why ``exc``'s server could not listen, and what to do, in one line."""
    if exc.in_use:
        who = holder(exc.port) or "another process"
        return (
            f"cannot listen on {exc.address}: port {exc.port} is in use by {who}; stop it, "
            "or choose another --port"
        )
    reason = exc.reason or "grpc could not bind it (its error is above)"
    return (
        f"cannot listen on {exc.address}: {reason}; give --host an address of this machine, "
        "and a --port this user may bind"
    )
