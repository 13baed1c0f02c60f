"""The Host names a loopback listener answers: a guard against DNS rebinding.

A page at ``http://evil.example:8888`` whose DNS name its owner then points at 127.0.0.1 is,
to the visitor's browser, same-origin with everything served there: it may read replies and
send any request, with an ``Origin`` that names its own host, so the Origin check lets it
through. What gives it away is the ``Host`` it sends, ``evil.example:8888``. A listener on
loopback serves only the machine it runs on, whose own clients use loopback names; it
answers those and the names an operator adds (``--allowed-host``, ``allowed_hosts``), and
refuses every other Host with 421 (docs/security.md).

Envoy picks a route's virtual host by Host: the gateway's routes sit in a virtual host of
those names, and every other Host lands in a catch-all whose one route is the refusal. A
lookup by name per request (exact names in a hash table, then the ``*.`` suffixes); no regex,
no Lua.

A listener on any other address (containers, Kubernetes) answers every Host: probes and
Services reach it by addresses and names Envoy cannot know in advance, and anyone who can
reach it needs no browser to send requests (``saxgw serve`` wants credentials there).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from gateway.common.loopback import domains
from gateway.edge._origins import ipv6_host

#: Status of the refusal: 421 Misdirected Request (RFC 9110 §15.5.20) says this server does
#: not answer for the named host, which is the case, rather than 403's "you may not": the
#: caller's rights are not in question, and a client that may retry elsewhere learns so.
#: gRPC clients get PERMISSION_DENIED (gateway/launch/_replies.py), as for other refusals.
MISDIRECTED = 421
REFUSAL = (
    "this gateway listens on loopback and answers only loopback host names such as "
    "localhost and 127.0.0.1 (a guard against DNS rebinding); to reach it by another name, "
    "add that name with --allowed-host or allowed_hosts in --config"
)

_LABEL = r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?"
_NAME = re.compile(rf"(\*\.)?{_LABEL}(\.{_LABEL})*")


def allowed_host(text: str) -> str:
    """``text`` as a name a loopback listener also answers, lower case: a host name, a
    ``*.`` wildcard of one, an IP address (IPv6 in brackets), or ``*`` for any; never a port
    (Host is matched without one). A name's final dot is left out: it is answered with and
    without it (`domains`). ValueError says what is expected."""
    host = text.strip().lower()
    if host.endswith(".") and _NAME.fullmatch(host[:-1]):
        return host[:-1]
    if host == "*" or _NAME.fullmatch(host):
        return host
    if host.startswith("[") and host.endswith("]"):
        try:
            return ipv6_host(host)  # as a browser sends it in Host
        except ValueError:
            pass
    raise ValueError(
        "expected a host name (gateway.example.com), a wildcard (*.example.com), an IP "
        "address (10.0.0.5, [fd00::5]) or *, without a port"
    )


#: RFC 9112 3.2: a request with more than one Host line, or a Host that is no host, is a 400.
#: Envoy's HTTP/1 codec joins repeated lines with a comma (`localhost,evil.example`), a
#: character no host name or address holds; a proxy in front may have read the first alone.
SEVERAL_HOSTS = (
    "the request has more than one Host header, or a Host with a comma: send one Host naming"
    " one host (RFC 9112 3.2)"
)
_OFF = {"@type": "type.googleapis.com/envoy.config.route.v3.FilterConfig", "disabled": True}
_BUFFER_OFF = {
    "@type": "type.googleapis.com/envoy.extensions.filters.http.buffer.v3.BufferPerRoute",
    "disabled": True,
}


def several_hosts_route() -> dict[str, Any]:
    """The first route of every virtual host: `SEVERAL_HOSTS`, refused at the headers (no
    transcoder, no body read; the JSON body comes from local_reply_config)."""
    comma = {"name": ":authority", "string_match": {"contains": ","}}
    return {
        "match": {"prefix": "/", "headers": [comma]},
        "direct_response": {"status": 400, "body": {"inline_string": SEVERAL_HOSTS}},
        "typed_per_filter_config": {
            "envoy.filters.http.grpc_json_transcoder": _OFF,
            "envoy.filters.http.buffer": _BUFFER_OFF,
        },
    }


def _refusal() -> dict[str, Any]:
    """The virtual host of every other Host: the refusal, before the transcoder would read
    the body or answer for an unknown path (the JSON body comes from local_reply_config)."""
    refuse = {"status": MISDIRECTED, "body": {"inline_string": REFUSAL}}
    return {
        "name": "other_hosts",
        "domains": ["*"],
        # CONNECT has no path: without a route of its own it matched none, and the buffer
        # filter held it until the stream idle timeout (envoy.yaml.tmpl's gateway routes).
        "routes": [
            several_hosts_route(),
            {"match": {"connect_matcher": {}}, "direct_response": refuse},
            {"match": {"prefix": "/"}, "direct_response": refuse},
        ],
        # Refused at the headers: no body is read for a reply that does not depend on it.
        "typed_per_filter_config": {
            "envoy.filters.http.grpc_json_transcoder": _OFF,
            "envoy.filters.http.buffer": _BUFFER_OFF,
        },
        # The request's ID in the reply before the filters run, as the gateway's virtual host
        # has it: `grpc_failures` reads it there for the RequestInfo of a gRPC or grpc-web
        # refusal, which had none (Envoy sets the header only once every filter has run).
        "response_headers_to_add": [
            {
                "header": {"key": "x-request-id", "value": "%REQ(X-REQUEST-ID)%"},
                "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
            }
        ],
    }


def host_values(listen_address: str, allowed: Sequence[str]) -> dict[str, str]:
    """Template values: the gateway's virtual-host ``DOMAINS``, its first route
    ``SEVERAL_HOSTS_ROUTE`` (a YAML list item), and ``OTHER_HOSTS``, the refusing virtual host
    (a YAML list item, or nothing when every Host is answered)."""
    names = domains(listen_address, allowed)
    first = {"SEVERAL_HOSTS_ROUTE": "- " + json.dumps(several_hosts_route())}
    if names is None:
        return {"DOMAINS": json.dumps(["*"]), "OTHER_HOSTS": "", **first}
    return {"DOMAINS": json.dumps(names), "OTHER_HOSTS": "- " + json.dumps(_refusal()), **first}
