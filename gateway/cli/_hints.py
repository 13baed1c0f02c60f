"""What `saxgw` suggests after a call fails, by status code.

Placeholders: {gateway} (--gateway), {id} (the command's ID), {cell} (its cell),
{command} (e.g. "lm.generate") and {where_request} (where the call's x-request-id finds it in
the logs, if it has one); `gateway.cli._failures.hint` fills them in.
"""

from __future__ import annotations

import re

import grpc

from gateway.common.stacktoken import REFUSED as STACK_TOKEN_REFUSED

HINTS: dict[grpc.StatusCode, str] = {
    grpc.StatusCode.OK: "none needed",
    grpc.StatusCode.CANCELLED: "the call was cancelled before it finished; run it again",
    grpc.StatusCode.UNKNOWN: (
        "the gateway or cell failed unexpectedly; see the gateway's log{where_request}"
    ),
    grpc.StatusCode.INVALID_ARGUMENT: (
        "fix the fields named above; `saxgw {command} --help` shows the arguments"
    ),
    grpc.StatusCode.DEADLINE_EXCEEDED: (
        "raise --timeout, or check that `saxgw ls {id}` shows active replicas"
        " (none: `saxgw stats {cell}` shows the model paths its servers serve)"
    ),
    grpc.StatusCode.NOT_FOUND: (
        "list published models with `saxgw ls {cell}`; "
        "publish with `saxgw publish {id} MODEL_PATH CHECKPOINT REPLICAS`"
    ),
    grpc.StatusCode.ALREADY_EXISTS: (
        "change it with `saxgw update {id} ...`, or `saxgw unpublish {id}` first"
    ),
    grpc.StatusCode.PERMISSION_DENIED: (
        "check the ACLs of the model and its methods with `saxgw getacl {id}`"
    ),
    grpc.StatusCode.UNAUTHENTICATED: (
        "the gateway wants an API key or JWT: set SAXGW_API_KEY (or pass --api-key) to one "
        "it accepts"
    ),
    grpc.StatusCode.RESOURCE_EXHAUSTED: (
        "the call is over a size, rate or concurrency limit: send less (messages <= 32 MiB) "
        "or retry later"
    ),
    grpc.StatusCode.FAILED_PRECONDITION: (
        "the model may not support this method; `saxgw ls {id}` lists its methods"
    ),
    grpc.StatusCode.ABORTED: "the cell changed while the call ran; run it again",
    grpc.StatusCode.OUT_OF_RANGE: "check numeric arguments and --extra values",
    grpc.StatusCode.UNIMPLEMENTED: (
        "the gateway at {gateway} does not offer this call; is it older than saxgw?"
    ),
    grpc.StatusCode.INTERNAL: "a bug in the gateway or model server; see their logs{where_request}",
    grpc.StatusCode.UNAVAILABLE: (
        "is a gateway listening on {gateway}? start one with `make up` (or `saxgw up`); "
        "if it is, its Sax cell may be down: try `saxgw ls`"
    ),
    grpc.StatusCode.DATA_LOSS: "the response was corrupted on the way; run the call again",
}
# UNIMPLEMENTED that the gateway itself did not raise (grpc's own reply for an unknown method
# is GATEWAY_UNIMPLEMENTED): the Sax admin or model server behind it lacks the call.
GATEWAY_UNIMPLEMENTED = "Method not found!"
UNIMPLEMENTED_BY_CELL = (
    "the Sax cell behind the gateway does not implement this call (see the message above); "
    "`saxgw ls {id}` lists the model's methods"
)
# UNAVAILABLE that the gateway reports about its Sax cell (it answered; the cell's admin did not).
CELL_UNREACHABLE = "is unreachable"
# For a gateway of `saxgw serve` (an operator's own cell) as of `saxgw up`, whose supervisor
# restarts the embedded cell by itself: "`make up` starts one" sent the operator of a real
# cell, who has no Makefile, to start a second cell.
CELL_DOWN = (
    "the gateway is up but the Sax cell's admin server is not answering: start it again (the "
    "embedded cell of `saxgw up` is restarted by the stack itself: see its cell.log), or check "
    "that SAX_ROOT/sax/<cell>/location.proto names a running admin"
)
# UNAVAILABLE or INTERNAL because the cell's storage failed (gateway.common.errors.storage_failure):
# neither the gateway nor the caller is at fault, and the path or URL is in a server's log.
STORAGE_DETAILS = re.compile(r"(SAX_ROOT|storage of cell /sax/\S+) (is unavailable|failed)")
STORAGE_FAILED = (
    "the Sax cell's storage (SAX_ROOT, or the fs root where its admin keeps state) failed: "
    "retry later; if it lasts, the gateway's or admin server's log says which file and why"
)
# NOT_FOUND for the cell rather than the model: publishing into it cannot help.
CELL_NOT_FOUND_DETAILS = re.compile(r"^cell /sax/\S+ not found")
CELL_NOT_FOUND = "no such cell: `saxgw ls` lists the cells under the gateway's SAX_ROOT"
# INVALID_ARGUMENT without a field: often a method the model does not have.
INVALID_UNNAMED = (
    "check the arguments (`saxgw {command} --help`) and the model's methods (`saxgw ls {id}`)"
)
# grpc's own details when the address answered, but not as a gRPC server (an HTTP/1 port such
# as the ops port or Envoy's admin, or an HTTP server that answered with a plain status).
NOT_GRPC_DETAILS = ("Received http2 header with status", "Failed parsing HTTP/2")
NOT_GRPC = (
    "{gateway} answered, but it is not the gateway's gRPC port: point --gateway at Envoy's "
    "public port (`saxgw up --port`, 8888) or a gateway port (--gateway-ports)"
)
# UNAVAILABLE before any call because the two ends disagree about TLS: grpc's details (grpcio
# 1.85 against Envoy's TLS listener, tests/e2e/security/test_tls.py) after NOT_CONNECTED. A
# refused connection ("Connection refused": nothing listens) is none of these and keeps the
# UNAVAILABLE hint.
NOT_CONNECTED = "failed to connect to all addresses"
# Plaintext to a TLS listener: it closes the connection without a word of HTTP/2.
PLAINTEXT_TO_TLS_DETAILS = "Socket closed"
PLAINTEXT_TO_TLS = (
    "{gateway} closed the connection at once: if it serves TLS (a config with a tls: section), "
    "add --tls, or --ca-cert FILE if a private CA signed its certificate"
)
# With --tls, --ca-cert or --client-cert: (marker, hint), the first marker found wins.
TLS_FAILURES = (
    (  # the system's roots (--tls) or the wrong CA file
        "CERTIFICATE_VERIFY_FAILED",
        "saxgw does not trust the certificate of {gateway}: pass the CA that signed it with "
        "--ca-cert FILE (--tls alone trusts the system's CA roots)",
    ),
    (  # TLS to a plaintext port (`saxgw up` without a tls: section)
        "WRONG_VERSION_NUMBER",
        "{gateway} does not serve TLS: leave out --tls, --ca-cert, --client-cert and --client-key",
    ),
    (  # the handshake passed, then the edge ended it: mTLS without a certificate it accepts
        "TSI_DATA_CORRUPTED",
        "{gateway} ended the connection after the TLS handshake: it asks for a client "
        "certificate (mTLS); pass --client-cert and --client-key, signed by a CA it trusts",
    ),
    (  # grpc could not make TLS of saxgw's own files, before anything was sent
        "Failed to create security handshaker",
        "saxgw could not set up TLS from its own files: --ca-cert must be a PEM certificate, "
        "--client-cert and --client-key a PEM certificate and its own key",
    ),
    (
        "handshake failed",
        "the TLS handshake with {gateway} failed (see above): check --ca-cert, --client-cert "
        "and --client-key",
    ),
)


def tls_hint(details: str, *, tls: bool) -> str | None:
    """The hint for a connection that failed (``details`` after NOT_CONNECTED) because the two
    ends disagree about TLS; ``tls``: whether saxgw spoke TLS. None for other failures."""
    if not tls:
        return PLAINTEXT_TO_TLS if PLAINTEXT_TO_TLS_DETAILS in details else None
    return next((advice for marker, advice in TLS_FAILURES if marker in details), None)


# DEADLINE_EXCEEDED of `watch`: its --timeout is how long to watch, not a call that was slow.
WATCH_ENDED = "the watch ran for --timeout; without --timeout it runs until Ctrl-C"
# PERMISSION_DENIED from Envoy's role check (docs/security.md), not from a model's ACL.
ROLE_DENIED_DETAILS = "RBAC: access denied"
ROLE_DENIED = (
    "the credentials' roles do not allow this call: publish, update, unpublish and setacl "
    "need the admin role, and so do `ls` of a cell or model, `watch` and `stats` unless the "
    "config's admin_only opens them (SAXGW_API_KEY or --api-key names the key)"
)
# DEADLINE_EXCEEDED of an admin call the admin took but never answered (SIGSTOPped, stuck,
# overloaded): raising --timeout or listing the model (another admin call) does not help.
ADMIN_CHECKS = (
    ": check that its process runs, what its log says (under `saxgw up`: the gateway.cell.admin "
    "lines, or cell.log in --log-dir) and that SAX_ROOT{cell}/location.proto names its address"
)
ADMIN_SILENT = (
    "the gateway reached the admin server of {cell}, but it did not answer in time (stopped, "
    "stuck or overloaded?)" + ADMIN_CHECKS + "; raise --timeout only if it is just slow"
)

_S = grpc.StatusCode
# Hints by what the message says, for codes whose usual hint would send the user the wrong
# way: (codes, a marker in the details, the hint); the first that matches wins.
BY_DETAILS: tuple[tuple[frozenset[grpc.StatusCode], str, str], ...] = (
    (frozenset({_S.UNAVAILABLE}), CELL_UNREACHABLE, CELL_DOWN),  # the gateway answered
    (  # grpc's words for a stream reset under the call: a gateway or Envoy went away
        frozenset({_S.INTERNAL, _S.UNAVAILABLE}),
        "RST_STREAM",
        "the connection to the gateway was reset during the call (a gateway process or Envoy "
        "restarted?): run it again",
    ),
    (  # a gateway port of a stack with credentials (gateway/service/_stacktoken.py)
        frozenset({_S.UNAUTHENTICATED}),
        STACK_TOKEN_REFUSED,
        "point --gateway at Envoy's public port (`saxgw up --port`, 8888), with a key or JWT "
        "of the stack's config in SAXGW_API_KEY (or --api-key)",
    ),
    (  # Envoy's rate limit (quotas.rate, docs/security.md)
        frozenset({_S.RESOURCE_EXHAUSTED}),
        "rate_limited",
        "the credentials are over their rate (quotas.rate in the gateway's config): retry "
        "in a second, or slower",
    ),
    (  # the model's servers refused it as overloaded (gateway/client/_failover.py)
        frozenset({_S.RESOURCE_EXHAUSTED}),
        " is overloaded; retry later",
        "the model's servers are overloaded: retry in a second, or give it more replicas "
        "(`saxgw update {id} --replicas N`)",
    ),
    (  # the gateway's concurrency limits (quotas.max_concurrent, quotas.models)
        frozenset({_S.RESOURCE_EXHAUSTED}),
        "at its limit of calls",
        "too many calls are in flight (for these credentials, or for the model): retry in a second",
    ),
    (  # the config's model list for the client, not a model's ACL
        frozenset({_S.PERMISSION_DENIED}),
        " may not use ",
        "the gateway's config limits which models these credentials may use (clients.<id>."
        "models); ask its operator, or use a model the list allows",
    ),
    (
        frozenset({_S.INVALID_ARGUMENT, _S.FAILED_PRECONDITION}),
        "model path can't be changed",
        "a model's path is fixed once published: `saxgw unpublish {id}`, then `saxgw publish "
        "{id} ...` with the new one",
    ),
    (  # a model published with 0 replicas (gateway/client/_requested.py)
        frozenset({_S.FAILED_PRECONDITION}),
        "published with 0 replicas",
        "the model has no replica requested: `saxgw update {id} --replicas N` asks for some",
    ),
    (
        frozenset({_S.FAILED_PRECONDITION, _S.UNAVAILABLE}),
        "failed to load",
        "the model failed to load on its servers (see the message above; `saxgw ls {id}` shows "
        "its load error): fix its path, checkpoint or overrides with `saxgw update {id} ...`",
    ),
    (  # a wait that ran out, the counts in the message (gateway/service/_servicer.py)
        frozenset({_S.DEADLINE_EXCEEDED}),
        "replica(s) ready when the wait's deadline passed",
        "`saxgw ls {id}` shows its replicas and any load error (none active: `saxgw stats "
        "{cell}` shows the model paths its servers serve); `saxgw update {id} --replicas N` "
        "asks for more",
    ),
    (  # the same from an older gateway, whose message was the admin's own
        frozenset({_S.DEADLINE_EXCEEDED}),
        "admin WaitForReady for ",
        "the model had fewer ready replicas than asked when --timeout ran out: `saxgw ls {id}` "
        "shows its active replicas (none: `saxgw stats {cell}` shows the model paths its "
        "servers serve); if that times out too, the admin server of {cell} is not answering"
        + ADMIN_CHECKS,
    ),
    (  # any other admin call (gateway.client._admin), or the ACL read before a data call: an
        # answer takes the admin milliseconds, so one that never came is the admin's fault
        frozenset({_S.DEADLINE_EXCEEDED}),
        "did not finish within its deadline",
        ADMIN_SILENT,
    ),
    (
        frozenset({_S.DEADLINE_EXCEEDED}),
        "reading the model's ACLs from the admin",
        ADMIN_SILENT,
    ),
    (  # the embedded cell's stand-ins check their overrides (docs/cell.md): not a method
        frozenset({_S.INVALID_ARGUMENT}),
        "override",
        "fix or leave out the override named above (docs/cell.md lists the overrides the "
        "embedded cell's models take)",
    ),
    (
        frozenset({_S.NOT_FOUND}),
        "was unpublished while waiting",
        "the model was unpublished while saxgw waited for it: publish it again first",
    ),
)


def by_details(code: grpc.StatusCode, details: str) -> str | None:
    """The hint `BY_DETAILS` has for ``code`` with ``details``, if any."""
    return next((h for codes, m, h in BY_DETAILS if code in codes and m in details), None)
