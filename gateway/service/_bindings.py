"""A call on a resource path acts on what its path names.

On ``POST /v1/sax/test/lm:generate`` (and every HTTP binding that takes a field from the path:
``/v1/{model=sax/*/*}:verb``, ``/v1/{sax_cell=sax/*}:listModels``, ``/v1/{name=sax/**}:getAcl``,
``/v1/models/{model=**}``) Envoy's transcoder sets the field from the path, but the request may
set it again: a query parameter (the transcoder decodes its name, so ``?%6dodel=`` is
``?model=``, and takes the JSON name, ``?saxCell=``), or the body (Envoy's
``reject_binding_body_field_collisions`` is off: it compares text, so it refused the path's own
model spelt with its slash, and only a key's first occurrence, where protobuf's JSON parser keeps
the last). The call then acted on another model than the one its URL, and the access log, name.

So wherever a call enters, the value its HTTP path binds (percent-decoded, as the transcoder
binds it) must be the request's, read as the servicer reads it (a model or cell ID with its
leading slash), or the call is INVALID_ARGUMENT naming both. The HTTP path is the
``x-envoy-original-path`` the transcoder sets (Envoy removes one a client sends); a call that
was not transcoded has none and is not checked. One check for every form, rather than one
Envoy route per form found.

    check = path_check("/saxgateway.v1.SaxGateway/Generate")   # None: no path binds a field
    check(request, context)                                     # raises InvalidArgumentError
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from google.api import annotations_pb2, http_pb2
from google.protobuf.descriptor import ServiceDescriptor
from saxgateway.v1 import gateway_pb2, openai_pb2

from gateway.common.httprules import patterns
from gateway.common.limits import quote
from gateway.common.rpc import metadata_value
from gateway.service._fields import invalid, with_slash
from gateway.service._streams import Caller

#: The HTTP path (with its query string) of a request Envoy's transcoder turned into a call.
ORIGINAL_PATH = "x-envoy-original-path"

#: Checks a call's request against the HTTP path it came by; raises InvalidArgumentError.
Check = Callable[[Any, Caller], None]


@dataclass(frozen=True)
class _Binding:
    prefix: str
    """What every path of the binding starts with: most paths are told apart by it alone."""
    pattern: re.Pattern[str]
    """Matches the HTTP paths of one binding, without their query string."""
    fields: tuple[str, ...]
    """The request fields the pattern's groups bind, in order."""


# Generous, so that no path the transcoder routes to a binding escapes the check: it binds
# "sax" from `/v1/sax:stats` ({name=sax/**} with no segment) and from `/v1/sax/:stats`.
_WILDCARDS = {"/**": "(?:/.*)?", "**": ".*", "*": "[^/]*"}


def _segments(template: str) -> str:
    return "".join(
        _WILDCARDS.get(piece) or re.escape(piece)
        for piece in re.split(r"(/\*\*|\*\*|\*)", template)
        if piece
    )


def _binding(template: str) -> _Binding | None:
    """The binding of an HTTP rule's path ``template`` (``/v1/{model=sax/*/*}:generate``), or
    None when it takes no field from the path."""
    pieces = re.split(r"(\{[^}]*\})", template)
    parts, fields = [], []
    for piece in pieces:
        if piece.startswith("{"):
            field, _, inner = piece[1:-1].partition("=")
            if "." in field:
                raise ValueError(f"{template}: a nested field is not checked: {field}")
            fields.append(field)
            parts.append(f"({_segments(inner or '*')})")
        else:
            parts.append(_segments(piece))
    if not fields:
        return None
    prefix = re.split(r"\*", pieces[0], maxsplit=1)[0]
    return _Binding(prefix, re.compile("".join(parts)), tuple(fields))


def bindings(service: ServiceDescriptor) -> dict[str, tuple[_Binding, ...]]:
    """The path bindings of each method of ``service`` (full gRPC path) that has any."""
    found = {}
    for method in service.methods:
        # A method without an HTTP rule reads as an empty one: no bindings.
        rule: http_pb2.HttpRule = method.GetOptions().Extensions[annotations_pb2.http]  # type: ignore[index]
        bound = {b.pattern.pattern: b for _, t in patterns(rule) if (b := _binding(t))}
        if bound:
            found[f"/{service.full_name}/{method.name}"] = tuple(bound.values())
    return found


def as_bound(raw: str) -> str:
    """A path's text as the transcoder binds it to a field: percent-decoded once, ``%2F`` too
    (its url_unescape_spec, ALL_CHARACTERS: envoy/envoy.yaml.tmpl)."""
    return unquote(raw) if "%" in raw else raw


def _http_path(context: Caller) -> str | None:
    """The HTTP path (without its query string) Envoy transcoded into this call, if it was."""
    path = metadata_value(context, ORIGINAL_PATH)
    return None if path is None else path.partition("?")[0]


def _check(found: tuple[_Binding, ...], read: Callable[[str], str]) -> Check:
    def check(request: Any, context: Caller) -> None:
        path = _http_path(context)
        if path is None:
            return  # not transcoded: no HTTP path to name anything
        for binding in found:
            if not path.startswith(binding.prefix):
                continue
            match = binding.pattern.fullmatch(path)
            if match is None:
                continue
            for field, raw in zip(binding.fields, match.groups()):  # noqa: B905 (as long)
                named = read(as_bound(raw.rstrip("/")))
                given = read(getattr(request, field))
                if named != given:
                    raise invalid(
                        field,
                        f"the URL path names {quote(named)}, the query string or body "
                        f"{quote(given)}: a /v1/ resource path alone names what a call acts on",
                    )
            return

    return check


# How each service reads the field a path binds: a model or cell ID with its leading slash
# (gateway/service/_fields.py); an OpenAI model as it comes (an alias may have no slash).
_READINGS: tuple[tuple[ServiceDescriptor, Callable[[str], str]], ...] = (
    (gateway_pb2.DESCRIPTOR.services_by_name["SaxGateway"], with_slash),
    (openai_pb2.DESCRIPTOR.services_by_name["OpenAIGateway"], str),
)
_CHECKS: dict[str, Check] = {
    method: _check(found, read)
    for service, read in _READINGS
    for method, found in bindings(service).items()
}


def path_check(method: str) -> Check | None:
    """The check of ``method`` (its full gRPC path), or None when no path of it binds a field."""
    return _CHECKS.get(method)
