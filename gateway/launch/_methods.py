"""The API's HTTP routes as Envoy matches them: each path form and the methods it takes.

The transcoder knows a route only as (method, path): ``GET /generate`` is as unknown to it as
``GET /nope``, and both get a 404 "Could not resolve ... to a method", which sends a caller
looking for a typo in the path. `_replies` turns the first kind into a 405 naming the methods
the path takes. The routes come from the HTTP rules of the descriptor set Envoy serves, so a
new RPC needs nothing here.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from google.api import annotations_pb2, http_pb2
from google.protobuf import descriptor_pb2

# Routes of these services answer errors in OpenAI's envelope.
OPENAI_SERVICES = frozenset({"saxgateway.v1.OpenAIGateway"})
_VERBS = ("get", "put", "post", "delete", "patch")
_QUERY = r"(\?.*)?"  # Envoy matches a regex against the whole :path, query string included


@dataclass(frozen=True)
class Route:
    regex: str
    """RE2, matching the request paths of one path form."""
    verbs: frozenset[str]
    """The HTTP methods the API takes there."""
    openai: bool


def _bindings(rule: http_pb2.HttpRule) -> Iterable[tuple[str, str]]:
    for r in (rule, *rule.additional_bindings):
        kind = r.WhichOneof("pattern")
        if kind in _VERBS:
            yield kind.upper(), getattr(r, kind)


def routes(descriptor: Path) -> list[Route]:
    """Every path form of the HTTP rules in ``descriptor`` (a FileDescriptorSet), with the
    methods the API takes on it."""
    verbs: dict[str, set[str]] = defaultdict(set)
    openai: dict[str, bool] = {}
    files = descriptor_pb2.FileDescriptorSet.FromString(descriptor.read_bytes())
    for f in files.file:
        for service in f.service:
            for method in service.method:
                # A method without an HTTP rule reads as an empty one: no bindings.
                rule: http_pb2.HttpRule = method.options.Extensions[annotations_pb2.http]  # type: ignore[index]
                for verb, template in _bindings(rule):
                    regex = path_regex(template)
                    verbs[regex].add(verb)
                    openai[regex] = f"{f.package}.{service.name}" in OPENAI_SERVICES
    return [Route(regex, frozenset(v), openai[regex]) for regex, v in sorted(verbs.items())]


def path_regex(template: str) -> str:
    """An RE2 regex for the request paths ``template`` (an HTTP rule's path) matches.

    ``*`` is one segment and ``**`` any number; neither takes a ``:``, which starts the
    rule's verb (``/v1/{model=sax/*/*}:generate``) and which Sax names never contain.
    """
    return _segments(template) + _QUERY


def _segments(template: str) -> str:
    out = []
    for piece in re.split(r"(\{[^}]*\}|\*\*|\*)", template):
        if piece.startswith("{"):  # a field binding: {model} is {model=*}
            out.append(_segments(piece[1:-1].partition("=")[2] or "*"))
        elif piece == "**":
            out.append("[^:?]+")
        elif piece == "*":
            out.append("[^/:?]+")
        else:
            out.append(re.escape(piece))
    return "".join(out)
