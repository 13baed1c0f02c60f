"""The HTTP bindings of a method's ``google.api.http`` rule, read in one place: by the edge,
which routes them (gateway/launch/_methods.py), and by the gateway, which checks that a call
names what its path binds (gateway/service/_bindings.py)."""

from __future__ import annotations

from collections.abc import Iterator

from google.api import http_pb2

_VERBS = ("get", "put", "post", "delete", "patch")


def patterns(rule: http_pb2.HttpRule) -> Iterator[tuple[str, str]]:
    """Each (HTTP method, path template) of ``rule`` and its additional bindings; a
    ``custom`` pattern (HEAD, gateway/launch/_methods.py) by its own kind."""
    for binding in (rule, *rule.additional_bindings):
        kind = binding.WhichOneof("pattern")
        if kind in _VERBS:
            yield kind.upper(), getattr(binding, kind)
        elif kind == "custom":
            yield binding.custom.kind.upper(), binding.custom.path
