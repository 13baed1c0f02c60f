"""The CLI's channel to a gateway: its address, TLS or plaintext, and the API key it sends.

A command's connection is opened here from the global flags::

    with open_channel(args) as channel:
        stub = gateway_pb2_grpc.SaxGatewayStub(with_api_key(channel, args))
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import time
from typing import Any

import grpc

from gateway.cli._inputs import InputError, UsageError, file_arg
from gateway.common.limits import MIB

DEFAULT_PORT = 8888  # `saxgw up`'s public port
DEFAULT_GATEWAY = f"localhost:{DEFAULT_PORT}"
API_KEY_ENV = "SAXGW_API_KEY"
_log = logging.getLogger(__name__)
_CHANNEL_OPTIONS = (
    ("grpc.max_receive_message_length", 32 * MIB),
    ("grpc.max_send_message_length", 32 * MIB),
)


class _CallDetails(grpc.ClientCallDetails):
    """A call's details with one more header (grpc's own class for them is private)."""

    def __init__(self, details: grpc.ClientCallDetails, header: tuple[str, str]) -> None:
        self.method = details.method
        self.timeout = details.timeout
        self.metadata = (*(details.metadata or ()), header)
        self.credentials = details.credentials
        self.wait_for_ready = details.wait_for_ready
        self.compression = details.compression


class _Bearer(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor):
    """Sends an API key or JWT with every call, as Envoy's authentication reads it
    (docs/security.md)."""

    def __init__(self, key: str) -> None:
        self._header = ("authorization", f"Bearer {key}")

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(_CallDetails(details, self._header), request)

    def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(_CallDetails(details, self._header), request)


def with_api_key(channel: grpc.Channel, args: argparse.Namespace) -> grpc.Channel:
    """``channel``, sending --api-key (else $SAXGW_API_KEY) with every call if there is one.
    An empty --api-key sends none, whatever the environment holds: the way to try a call
    anonymously from a shell that exports a key."""
    flag: str | None = args.api_key
    key = os.environ.get(API_KEY_ENV) if flag is None else flag
    if key:
        _check_key(key, API_KEY_ENV if flag is None else "--api-key")
    return grpc.intercept_channel(channel, _Bearer(key)) if key else channel


class _Trace(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor):
    """With -v: a debug line as each call starts (the gateway, the method, the deadline) and
    one as it ends (its status, how long it took and the x-request-id that finds it in
    Envoy's access log and the gateway's log)."""

    def __init__(self, target: str) -> None:
        self._target = target

    def _start(self, details: grpc.ClientCallDetails) -> float:
        deadline = "" if details.timeout is None else f", deadline {details.timeout:g} s"
        _log.debug("calling %s at %s%s", details.method, self._target, deadline)
        return time.monotonic()

    @staticmethod
    def _end(method: str, call: Any, started: float) -> None:
        headers = [*(call.initial_metadata() or ()), *(call.trailing_metadata() or ())]
        request_id = next((v for k, v in headers if k == "x-request-id"), "none")
        elapsed_ms = round((time.monotonic() - started) * 1000)
        _log.debug(
            "%s: %s after %d ms, x-request-id %s", method, call.code().name, elapsed_ms, request_id
        )

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        started = self._start(details)
        outcome = continuation(details, request)  # done: a blocking call, or its RpcError
        self._end(details.method, outcome, started)
        return outcome

    def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        started = self._start(details)
        call = continuation(details, request)
        call.add_callback(lambda: self._end(details.method, call, started))
        return call


def with_trace(channel: grpc.Channel, args: argparse.Namespace) -> grpc.Channel:
    """``channel``, logging each call at debug level when -v asks for it."""
    if not args.verbose:
        return channel
    return grpc.intercept_channel(channel, _Trace(gateway_target(args)))


def _check_key(key: str, source: str) -> None:
    """Refuses a key no header can carry before any call: grpc would fail the call with
    INTERNAL "Invalid metadata", which reads as a server's bug. The usual cause is a key read
    from a file with its line break. The message names the character, never the key."""
    bad = next((i for i, c in enumerate(key) if not "!" <= c <= "~"), None)
    if bad is not None:
        raise InputError(
            f"the API key of {source} holds U+{ord(key[bad]):04X} at character {bad + 1}, "
            "which a header cannot carry",
            "give the key alone, without spaces or line breaks "
            "(`export SAXGW_API_KEY=$(cat FILE)` drops a file's final newline)",
        )


def _pem(path: str | None, flag: str) -> bytes | None:
    if path is None:
        return None
    return file_arg(path, flag, "a PEM certificate or key")


def uses_tls(args: argparse.Namespace) -> bool:
    return any(getattr(args, flag, None) for flag in ("tls", "ca_cert", "client_cert"))


def gateway_target(args: argparse.Namespace) -> str:
    """``--gateway`` as the channel dials it: a host given without a port gets the public
    port's, 8888 (`saxgw up`'s), or 443 with TLS (a gateway behind an HTTPS load balancer).
    grpc's own default, 443 even in plaintext, sent `--gateway localhost` nowhere useful."""
    target = str(getattr(args, "gateway", DEFAULT_GATEWAY))
    if _is_ipv6(target):  # ::1, not a scheme and a path
        target = f"[{target}]"
    host_only = ":" not in target or (target.startswith("[") and target.endswith("]"))
    if not host_only:
        return target  # HOST:PORT, or a target grpc reads (unix:PATH, dns:///HOST:PORT)
    return f"{target}:{443 if uses_tls(args) else DEFAULT_PORT}"


def _is_ipv6(text: str) -> bool:
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


def open_channel(args: argparse.Namespace) -> grpc.Channel:
    """The channel to ``args.gateway``: TLS when any TLS flag is given (mTLS with a client
    certificate), else plaintext, as `saxgw up` serves loopback."""
    cert, key = args.client_cert, args.client_key
    if (cert is None) != (key is None):  # flags that do not fit together: a usage error
        raise UsageError(
            "--client-cert and --client-key go together: give the certificate and its private "
            "key, both PEM files"
        )
    target = gateway_target(args)
    if not uses_tls(args):
        return grpc.insecure_channel(target, options=_CHANNEL_OPTIONS)
    credentials = grpc.ssl_channel_credentials(
        root_certificates=_pem(args.ca_cert, "--ca-cert"),
        private_key=_pem(key, "--client-key"),
        certificate_chain=_pem(cert, "--client-cert"),
    )
    return grpc.secure_channel(target, credentials, options=_CHANNEL_OPTIONS)
