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

    check = path_check("/saxgateway.v1.SaxGateway/Generate")   # None: no HTTP rule to check
    check(request, context)                                     # raises InvalidArgumentError

A SaxGateway call's query string is checked the same way against its body. The transcoder
takes both (`POST /generate?model=/sax/test/a` with a body), and merges them without a word:
the body's value of a field replaces the query string's, a repeated field gets the body's
values and then the query string's, and of a key given twice in the query string the last
counts. `POST /unpublish?model=/sax/test/a` with `{"model": "/sax/test/b"}` unpublished b;
`POST /score?suffix=x` with `{"suffix": ["y"]}` scored two suffixes. So a field the query
string sets must not be set otherwise by the body, nor given twice with two values.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, unquote_plus

from google.api import annotations_pb2, http_pb2
from google.protobuf import json_format, message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor, ServiceDescriptor
from google.protobuf.message import Message
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
# "sax" from `/v1/sax:stats` ({name=sax/**} with no segment) and from `/v1/sax/:stats` (which
# the check refuses: an empty segment).
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
    for piece, after in zip(pieces, [*pieces[1:], ""], strict=True):
        if piece.startswith("{"):
            field, _, inner = piece[1:-1].partition("=")
            if "." in field:
                raise ValueError(f"{template}: a nested field is not checked: {field}")
            fields.append(field)
            # Before a verb, the transcoder takes empty segments (`/v1/sax/test/a/:publish`)
            # as none: taken into the group, for the check to refuse.
            slashes = "/*" if after.startswith(":") else ""
            parts.append(f"({_segments(inner or '*')}{slashes})")
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
    """The HTTP path (without its query string or trailing slashes) Envoy transcoded into this
    call, if it was. The transcoder binds `/v1/sax/test/a/` as it binds `/v1/sax/test/a`: kept,
    the slash made the path match no binding, and the call went unchecked."""
    path = metadata_value(context, ORIGINAL_PATH)
    return None if path is None else path.partition("?")[0].rstrip("/")


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
                if raw.endswith("/"):
                    # `/v1/sax/test/:setAcl`, a model's path with its name left out: the
                    # transcoder binds the cell, whose ACL it set. A body's "/sax/test/" is
                    # refused as naming no model; so is the path.
                    raise invalid(
                        field,
                        f"the URL path names {quote('/' + as_bound(raw))}, whose last segment "
                        "is empty: a /v1/ resource path names a cell as /v1/sax/CELL and a "
                        "model as /v1/sax/CELL/MODEL",
                    )
                named = read(as_bound(raw))
                sent = getattr(request, field)
                if named != read(sent):
                    # The value as sent, not as read: an empty model read as "/" and was
                    # quoted so, a value the caller never sent.
                    raise invalid(
                        field,
                        f"the URL path names {quote(named)}, the query string or body "
                        f"{quote(sent)}: a /v1/ resource path alone names what a call acts on",
                    )
            return

    return check


def _query(context: Caller) -> list[tuple[str, str]]:
    """The query string parameters of the HTTP request Envoy transcoded into this call, as
    the transcoder reads them (percent-decoded, "+" as a space: query_param_unescape_plus)."""
    path = metadata_value(context, ORIGINAL_PATH)
    if path is None or "?" not in path:
        return []
    pairs = []
    for part in path.partition("?")[2].split("&"):
        if part:
            key, _, value = part.partition("=")
            pairs.append((unquote_plus(key), unquote_plus(value)))
    return pairs


def _fields(message: Descriptor) -> dict[str, FieldDescriptor]:
    """The top-level fields of ``message`` a query parameter may name (proto or JSON name);
    maps are left out (the transcoder takes no map key from a query string)."""
    fields = {}
    for field in message.fields:
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            continue
        fields[field.name] = fields[field.json_name] = field
    return fields


def _shown(request: Any, name: str) -> str:
    """The request's value of field ``name`` as its JSON spells it, quoted."""
    value = getattr(request, name)
    if isinstance(value, Message):  # a Duration: "10s"
        value = json.loads(json_format.MessageToJson(value))
    elif isinstance(value, bool):
        value = json.dumps(value)
    elif isinstance(value, bytes):
        value = base64.b64encode(value).decode()
    return quote(value if isinstance(value, str) else str(value))


# A bool as a query string spells it, as JSON does.
_BOOLS = {"true": True, "false": False, "1": True, "0": False}

# The fields that name a model or a cell, which the servicer reads with a leading slash.
_IDS = frozenset({"model", "sax_cell", "name"})


def _query_check(message: Descriptor) -> Check:
    fields, new = _fields(message), message_factory.GetMessageClass(message)

    def check(request: Any, context: Caller) -> None:
        given: dict[str, list[str]] = {}
        for key, text in _query(context):
            field = fields.get(key)
            if field is not None:  # an unknown or nested key: the transcoder's to judge
                given.setdefault(field.name, []).append(text)
        for name, values in given.items():
            if message.fields_by_name[name].is_repeated:
                if len(getattr(request, name)) != len(values):  # the body gave some too
                    raise invalid(
                        name,
                        "given in both the query string and the body: give it in one of them",
                    )
                continue
            if len(set(values)) > 1:
                shown = ", ".join(quote(v) for v in dict.fromkeys(values))
                raise invalid(name, f"the query string gives it twice ({shown}): give it once")
            as_json: object = values[0]
            if message.fields_by_name[name].type == FieldDescriptor.TYPE_BOOL:
                as_json = _BOOLS.get(values[0], values[0])
            try:
                parsed = json_format.ParseDict({name: as_json}, new())
            except json_format.ParseError:
                continue  # the transcoder took it; nothing here to compare it with
            ours, theirs = getattr(parsed, name), getattr(request, name)
            if name in _IDS:
                ours, theirs = with_slash(ours), with_slash(theirs)
            if ours != theirs:
                raise invalid(
                    name,
                    f"the query string gives {quote(values[0])}, the body "
                    f"{_shown(request, name)}: give it in one of them",
                )

    return check


def _both(first: Check | None, second: Check) -> Check:
    if first is None:
        return second

    def check(request: Any, context: Caller) -> None:
        first(request, context)  # the path first: its message names what the URL names
        second(request, context)

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
# The query strings of SaxGateway's routes (the OpenAI routes ignore unknown parameters, and
# their bodies are OpenAI's JSON, not the request message): every method with an HTTP rule.
_SAX = gateway_pb2.DESCRIPTOR.services_by_name["SaxGateway"]
for _method in _SAX.methods:
    _rule: http_pb2.HttpRule = _method.GetOptions().Extensions[annotations_pb2.http]  # type: ignore[index]
    if any(True for _ in patterns(_rule)):
        _full = f"/{_SAX.full_name}/{_method.name}"
        _CHECKS[_full] = _both(_CHECKS.get(_full), _query_check(_method.input_type))


def path_check(method: str) -> Check | None:
    """The check of ``method`` (its full gRPC path), or None when it has no HTTP rule to
    check."""
    return _CHECKS.get(method)
