"""The stack's token: a secret `saxgw up|serve` makes at start when its config authenticates
callers, that Envoy sets on every request it sends the stack's gateway processes, and that
they require of every call but grpc.health.v1's (gateway/service/_stacktoken.py).

The gateway trusts the identity header Envoy sends (`x-saxgw-client`) and leaves keys,
tokens and roles to Envoy; its ports listen on loopback, which every user of the machine
reaches. Without the token a local process that called a gateway port directly had every
role and any client id it named. The token reaches Envoy in its config file (private, in the
stack's private directory) and the gateways in their environment, which, unlike a command
line, other users cannot read (/proc/PID/environ).

A gateway run alone (`saxgw gateway`, a container next to Envoy's) without the variable
requires nothing, as before: there the network namespace keeps its port to the pod.
"""

from __future__ import annotations

import secrets

#: The request header that carries the token from Envoy to a gateway process.
STACK_TOKEN_HEADER = "x-saxgw-stack-token"
#: The environment variable that hands it to a gateway process.
STACK_TOKEN_VARIABLE = "SAXGW_STACK_TOKEN"
#: The message of a call refused without it (UNAUTHENTICATED); `saxgw`'s hint reads it.
REFUSED = (
    "this gateway port takes calls from its stack's Envoy only: call Envoy's port "
    "(saxgw up|serve's --port) with a credential"
)


def new_token() -> str:
    """A fresh token: 256 random bits, in characters a header value may hold."""
    return secrets.token_urlsafe(32)
