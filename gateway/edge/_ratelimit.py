"""Envoy's per-client token buckets (`quotas.rate`, `clients.<id>.rate`): the
`local_ratelimit` filter, keyed by the client id the auth filters set, or by the caller's
address when there is none."""

from __future__ import annotations

import math
from typing import Any

from gateway.common.limits import IPV6_CLIENT_PREFIX
from gateway.common.rpc import PUSHBACK_KEY
from gateway.edge._schema import EdgeConfig, Rate

_TYPE = "type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit"


# Envoy refuses a token bucket's fill_interval under 50 ms.
_MIN_FILL_S = 0.05


def least_burst(requests_per_second: float) -> int:
    """The smallest bucket that holds ``requests_per_second``: Envoy adds tokens at most every
    50 ms, and tokens that do not fit in the bucket are lost."""
    return max(1, math.ceil(requests_per_second * _MIN_FILL_S))


def _bucket(rate: Rate) -> dict[str, Any]:
    """Envoy's token bucket for ``rate``. A whole rate that fits in the bucket fills once a
    second; any other adds the fewest tokens at a time that keep the interval at Envoy's 50 ms
    or more (2.5 per second: one every 400 ms), which the interval's millisecond rounds off by
    under 1%. A whole number of tokens each second made 2.5 into 2, and a burst below the rate
    (20 per second, burst 5) into 5 per second: a fill larger than the bucket is cut to it."""
    rps = rate.requests_per_second
    if rps.is_integer() and 1 <= rps <= rate.burst:
        per_fill, interval = int(rps), 1.0
    else:
        per_fill = least_burst(rps)
        interval = per_fill / rps
    return {
        "max_tokens": rate.burst,
        "tokens_per_fill": per_fill,
        "fill_interval": f"{interval:.3f}s",
    }


def retry_after(rate: Rate) -> int:
    """Seconds until a drained bucket holds a token again (the Retry-After header)."""
    return max(1, math.ceil(1 / min(rate.requests_per_second, 1.0)))


# Characters a client id may hold that a CEL string literal inside Envoy's ``%CEL(...)%`` takes
# as they are; any other (a JWT subject may hold any printable one) is written as an escape.
_PLAIN = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._@:-")


def _cel_string(text: str) -> str:
    """``text`` as a CEL string literal with no quote, parenthesis or percent sign of its own,
    which would end the literal or Envoy's ``%CEL(...)%`` early."""
    return '"' + "".join(c if c in _PLAIN else f"\\U{ord(c):08x}" for c in text) + '"'


def _retry_after_value(
    rates: dict[str, Rate], default: Rate | None, identity_header: str, unit: int = 1
) -> str:
    """The Retry-After header of a refused call: the seconds its own bucket takes to hold a
    token again (times ``unit``: 1000 for gRPC's pushback, in milliseconds). One number for
    every client was the slowest bucket's, so a client allowed 100 calls a second was told to
    wait 50 s because another was allowed one every 50 s (the OpenAI SDKs wait that long,
    their retries then minutes). Where the buckets differ, a CEL
    expression picks the caller's by its client id (Envoy evaluates it only for a refused
    call); a caller with none, or without a rate of its own, has the default bucket."""
    fallback = (retry_after(default) if default is not None else 1) * unit
    own = {client: retry_after(rate) * unit for client, rate in rates.items()}
    if all(seconds == fallback for seconds in own.values()):
        return str(fallback)
    header = _cel_string(identity_header)
    expression = f"'{fallback}'"
    for client, seconds in sorted(own.items(), reverse=True):
        if seconds != fallback:
            # `in` first: looking up a header the call lacks (no identity) is an error.
            expression = (
                f"{header} in request.headers && request.headers[{header}] == "
                f"{_cel_string(client)} ? '{seconds}' : {expression}"
            )
    return f"%CEL({expression})%"


def _anonymous(identity_header: str) -> dict[str, Any]:
    """A rate-limit action that matches requests without the identity header."""
    return {
        "header_value_match": {
            "descriptor_key": "anonymous",
            "descriptor_value": "address",
            "headers": [{"name": identity_header, "present_match": False}],
        }
    }


def rate_limit(config: EdgeConfig, identity_header: str) -> dict[str, Any] | None:
    """The filter, or None when the config sets no rate; ``identity_header`` carries the
    client id."""
    rates = {c: p.rate for c, p in config.clients.items() if p.rate is not None}
    default = config.quotas.rate
    if not rates and default is None:
        return None
    descriptors = [
        {"entries": [{"key": "client", "value": c}], "token_bucket": _bucket(r)}
        for c, r in sorted(rates.items())
    ]
    rate_limits: list[dict[str, Any]] = [
        {
            "actions": [
                {"request_headers": {"header_name": identity_header, "descriptor_key": "client"}}
            ]
        }
    ]
    if default is not None:
        # An empty value: one bucket per distinct client id.
        descriptors.append({"entries": [{"key": "client"}], "token_bucket": _bucket(default)})
        # A caller without an identity (no credentials configured, or an open path) has no
        # client id, and no descriptor would match it: it is its address, as for the stream
        # limit (the peer's, or behind `trusted_proxy_hops` proxies the one they forwarded).
        # An IPv6 one is its /64 (IPV6_CLIENT_PREFIX).
        descriptors.append(
            {
                "entries": [
                    {"key": "anonymous", "value": "address"},
                    {"key": "masked_remote_address"},
                ],
                "token_bucket": _bucket(default),
            }
        )
        masked = {"v4_prefix_mask_len": 32, "v6_prefix_mask_len": IPV6_CLIENT_PREFIX}
        rate_limits.append(
            {"actions": [_anonymous(identity_header), {"masked_remote_address": masked}]}
        )
    always = {"default_value": {"numerator": 100, "denominator": "HUNDRED"}, "runtime_key": "x"}
    return {
        "name": "envoy.filters.http.local_ratelimit",
        "typed_config": {
            "@type": _TYPE,
            "stat_prefix": "client_rate",
            # The listener-wide bucket is not a quota; per-client descriptors are.
            "token_bucket": {
                "max_tokens": 1_000_000,
                "tokens_per_fill": 1_000_000,
                "fill_interval": "1s",
            },
            "filter_enabled": {**always, "runtime_key": "client_rate_enabled"},
            "filter_enforced": {**always, "runtime_key": "client_rate_enforced"},
            "rate_limited_as_resource_exhausted": True,
            "enable_x_ratelimit_headers": "DRAFT_VERSION_03",
            # Retry-After, and gRPC's own (PUSHBACK_KEY), which a gRPC client whose service
            # config retries RESOURCE_EXHAUSTED waits for.
            "response_headers_to_add": [
                {
                    "header": {
                        "key": key,
                        "value": _retry_after_value(rates, default, identity_header, unit),
                    },
                    "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
                }
                for key, unit in (("retry-after", 1), (PUSHBACK_KEY, 1000))
            ],
            "max_dynamic_descriptors": 10_000,
            "rate_limits": rate_limits,
            "descriptors": descriptors,
        },
    }
