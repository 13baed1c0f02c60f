"""A caller's ``traceparent`` that W3C Trace Context's grammar refuses is dropped before
Envoy's tracer reads it, so that the request starts a new trace (Envoy's span, the root, and
the gateway's under it), as the spec asks of a receiver that cannot parse the header.

Envoy 1.40's OpenTelemetry tracer instead started no span at all for a header it could not
parse (``garbage``, wrong lengths, an all-zero ID) and passed it on unchanged, so the
gateway's span began a trace of its own and Envoy's part of the request was in none. It also
took two forms the spec forbids: version ``ff``, and hex in upper case; both continued the
caller's trace. And it refuses a later version's header with fields after the flags, which
the spec says to read as version 00: the check hands Envoy the header's first 55 characters.

Envoy traces a request before any HTTP filter runs, so the check is an early header mutation
(run before routing and tracing), which can neither test a header's value nor remove it
conditionally: a CEL formatter copies the header, if it is valid, to ``_HELD``; the header
is removed, and set again from ``_HELD`` (a formatter that yields nothing sets nothing).
Envoy sets an empty ``tracestate`` on the root span's request, so a caller's tracestate goes
with its traceparent, as the spec asks too.

CEL here refuses a regular expression longer than RE2's program size 100 (``[0-9a-f]{32}``
is one), so the grammar is checked in parts: the fields' shapes with the trace ID's length
left open, then the dash that ends the trace ID at its place (35).

Only a tracing Envoy has the check. Its cost, measured in a bare tracing Envoy answering 200s
itself (one worker, a valid traceparent on every request, on a shared host under load):
10-30 us of Envoy's CPU a request, over about 130-150 us without it; most of it is the CEL
evaluation itself (a check without a regular expression cost about as much).
"""

from __future__ import annotations

#: The caller's traceparent, if valid, between the mutations (removed first, so never a
#: value a client sent).
_HELD = "x-saxgw-traceparent"

_HEADER = "request.headers['traceparent']"
_HEX2 = "[0-9a-f]{2}"

#: Which traceparent to keep: W3C Trace Context's ``traceparent`` (version 00, or a later
#: version, whose header may go on after the flags with a dash), with these as CEL.
_CHECKS = (
    "'traceparent' in request.headers",
    # version-trace-parent-flags in lower-case hex, then the end or (a later version's) a dash.
    f"{_HEADER}.matches('^{_HEX2}-[0-9a-f]*-[0-9a-f]{{16}}-{_HEX2}(-|$)')",
    f"{_HEADER}.matches('^[ -~]{{35}}-')",  # a trace ID of 32 digits
    f"({_HEADER}.size() == 55 || !{_HEADER}.startsWith('00'))",  # 00 has nothing after
    f"!{_HEADER}.startsWith('ff')",  # the one version that is invalid
    f"!{_HEADER}.matches('^{_HEX2}-0+-')",  # an all-zero trace ID
    f"!{_HEADER}.matches('^{_HEX2}-[0-9a-f]*-0+-')",  # an all-zero parent ID
)


def traceparent_check() -> list[dict[str, object]]:
    """The HTTP connection manager's ``early_header_mutation_extensions``: only a valid
    ``traceparent`` (its first 55 characters) reaches Envoy's tracer."""
    valid = f"%CEL({' && '.join(_CHECKS)} ? {_HEADER} : '')%"

    def setting(header: str, value: str) -> dict[str, object]:
        set_it = {"header": {"key": header, "value": value}}
        return {"append": {**set_it, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}}

    mutations = [
        {"remove": _HELD},
        setting(_HELD, valid),
        {"remove": "traceparent"},
        setting("traceparent", f"%REQ({_HELD}):55%"),
        {"remove": _HELD},
    ]
    extension = "envoy.extensions.http.early_header_mutation.header_mutation.v3.HeaderMutation"
    return [
        {
            "name": "envoy.http.early_header_mutation.header_mutation",
            "typed_config": {"@type": f"type.googleapis.com/{extension}", "mutations": mutations},
        }
    ]
