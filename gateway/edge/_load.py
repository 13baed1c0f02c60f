"""Validates the edge's sections of the ``--config`` file; every error names the key at fault.

    edge = parse_edge({"auth": {...}}, base)   # raises ConfigError("auth.api_keys[1].roles: ...")

`gateway.configfile` reads the file and hands this module its sections (`SECTIONS`).
Values are never echoed in errors, so a mistyped API key does not end up in a log.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any, TypeVar

import yaml

from gateway.common.errors import InvalidArgumentError
from gateway.common.limits import GRPC_MAX_MESSAGE_BYTES, MAX_SECONDS, UINT32_MAX
from gateway.common.names import parse_model_id
from gateway.config import (
    MIN_API_KEY_LENGTH,
    ConfigError,
    not_a_model_id,
    parse_yaml,
    unknown_key,
    yaml_error_place,
)
from gateway.edge._hosts import allowed_host
from gateway.edge._jwks import jwks_problem
from gateway.edge._origins import allowed_origin
from gateway.edge._pem import certificates_problem, key_problem
from gateway.edge._ratelimit import least_burst
from gateway.edge._schema import (
    EXPOSABLE,
    JWT_SHAPE,
    ROLES,
    ApiKey,
    CertificateClient,
    ClientPolicy,
    Direct,
    EdgeConfig,
    JwtIssuer,
    Limits,
    ModelLimit,
    Quotas,
    Rate,
    Tls,
)

T = TypeVar("T")
_CLIENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@:-]{0,127}")
_MAX_IDENTITY = 1024
_LEAST_SECONDS = 0.001
# What a list key left with no value could have meant (`_Node.given`).
_EMPTY_OR_ABSENT = "write [] for none, or leave the key out for "
_ADMIN_ONLY_NULL = "[] opens them all to data, without the key they are admin's"
# Largest values Envoy takes (its config's uint32 fields, UINT32_MAX; durations well below the
# ~9.2e9 s, int64 nanoseconds, where Envoy 1.40 finds them out of range, with room for
# STREAM_BACKSTOP added to max_stream_duration): a larger one passed here and stopped Envoy at
# start with a dump of its config. And gRPC's message size options are C ints
# (GRPC_MAX_MESSAGE_BYTES): a larger max_request_bytes stopped the gateway.
_MIN_HEAP_BYTES = 64 << 20
# Envoy's own bound on max_request_headers_kb.
_MAX_HEADERS_KB = 8192


class _Node:
    """A value in the file and the dotted path that leads to it."""

    def __init__(self, value: Any, path: str) -> None:
        self.value = value
        self.path = path

    def fail(self, why: str) -> ConfigError:
        return ConfigError(f"{self.path or 'the file'}: {why}")

    def mapping(self, allowed: tuple[str, ...] | None = None) -> dict[str, _Node]:
        """Its entries by name; an unknown name is an error that repeats it, unless it could
        be an API key (one pasted a line off, under any section, was repeated in full)."""
        if self.value is None:
            return {}
        if not isinstance(self.value, Mapping):
            raise self.fail("expected a mapping")
        out: dict[str, _Node] = {}
        for key, value in self.value.items():
            path = f"{self.path}.{key}" if self.path else str(key)
            if not isinstance(key, str):
                raise ConfigError(f"{path}: keys must be strings")
            if allowed is not None and key not in allowed:
                raise unknown_key(self.path, key, f"expected one of {', '.join(allowed)}")
            out[key] = _Node(value, path)
        return out

    def items(self) -> list[_Node]:
        if self.value is None:
            return []
        if not isinstance(self.value, list):
            raise self.fail("expected a list")
        return [_Node(v, f"{self.path}[{i}]") for i, v in enumerate(self.value)]

    def text(self) -> str:
        if not isinstance(self.value, str) or not self.value:
            raise self.fail("expected a non-empty string")
        return self.value

    def integer(self, minimum: int = 0, maximum: int = UINT32_MAX) -> int:
        if isinstance(self.value, bool) or not isinstance(self.value, int):
            raise self.fail("expected an integer")
        if self.value < minimum:
            raise self.fail(f"must be at least {minimum}")
        if self.value > maximum:
            raise self.fail(f"must be at most {maximum}")
        return self.value

    def number(self, minimum: float = 0.0, maximum: float = MAX_SECONDS) -> float:
        if isinstance(self.value, bool) or not isinstance(self.value, int | float):
            raise self.fail("expected a number")
        if not math.isfinite(self.value):  # YAML's .nan and .inf
            raise self.fail("expected a finite number")
        if self.value < minimum:
            raise self.fail(f"must be at least {minimum:g}")
        if self.value > maximum:
            raise self.fail(f"must be at most {maximum:.0f}")
        return float(self.value)

    def seconds(self) -> float:
        """A duration of ``limits``: 0 turns it off. Envoy's durations stop at nanoseconds,
        so 1e-10 read as 0, off; and under a millisecond no request could meet it."""
        value = self.number()
        if 0 < value < _LEAST_SECONDS:
            raise self.fail(f"must be 0 (none) or at least {_LEAST_SECONDS:g} s")
        return value

    def file(self, base: Path) -> Path:
        path = base / self.text()
        if path.is_dir():
            raise self.fail(f"{path} is a directory; this names a file")
        if not path.is_file():
            raise self.fail(f"no such file: {path}")
        # Absolute, but through its symlinks, not to where they point now: a Kubernetes
        # Secret's tls.crt is ``..data/tls.crt`` with ``..data`` a link to a timestamped
        # directory that an update replaces (and deletes), so Envoy, pinned to the old one,
        # never saw a renewal, and an Envoy started again found no certificate at all. Not
        # normalized either: ``link/../x`` is where the system finds it, not ``x``.
        return path.absolute()

    def heap_bytes(self) -> int:
        """``limits.max_heap_bytes``: 0 (unwatched), or room for Envoy itself (about 12 MB in
        use at rest) and its calls: 1 MB started a stack whose Envoy refused every request
        (`envoy overloaded`), and saxgw said it was waiting for the Sax cell."""
        value = self.integer(0, 2**63 - 1)
        if 0 < value < _MIN_HEAP_BYTES:
            raise self.fail(
                f"must be 0 (unwatched) or at least {_MIN_HEAP_BYTES} (64 MiB): Envoy holds "
                "about 12 MB at rest, and past 98% of this limit refuses every request"
            )
        return value

    def boolean(self) -> bool:
        if not isinstance(self.value, bool):
            raise self.fail("expected true or false")
        return self.value

    def host(self) -> str:
        text = self.text()  # its own error names the path: not caught below to name it again
        try:
            return allowed_host(text)
        except ValueError as exc:
            raise self.fail(str(exc)) from None

    def origin(self) -> str:
        text = self.text()
        try:
            return allowed_origin(text)
        except ValueError as exc:
            raise self.fail(str(exc)) from None

    def given(self, why: str) -> _Node:
        """This node, for a list whose absence means something other than ``[]``: a key left
        with no value (its entries commented out) reads as null and could mean either, so it
        is refused, with ``why`` saying what each would mean."""
        if self.value is None:
            raise self.fail(f"no value; {why}")
        return self

    def choices(self, allowed: tuple[str, ...]) -> frozenset[str]:
        values = {n.text() for n in self.items()}
        if bad := sorted(values - set(allowed)):
            raise self.fail(f"unknown {bad[0]!r}; expected any of {', '.join(allowed)}")
        return frozenset(values)

    def client(self) -> str:
        name = self.text()
        if not _CLIENT.fullmatch(name):  # match's $ took a final newline
            raise self.fail("client ids are 1-128 letters, digits and ._@:- characters")
        return name

    def identity(self) -> str:
        """A caller's identity where the file may name any (group members, ``clients`` keys):
        a client id named here, or a JWT's subject (``client_claim``), which may hold any
        character (Auth0's ``auth0|5f7c...``) and is matched exactly."""
        name = self.text()
        if not 0 < len(name) <= _MAX_IDENTITY or not name.isprintable():
            raise self.fail(
                f"expected a client id or JWT subject: 1-{_MAX_IDENTITY} printable characters"
            )
        return name


def _optional(node: _Node | None, read: Callable[[_Node], T]) -> T | None:
    return None if node is None or node.value is None else read(node)


def _api_key(node: _Node) -> ApiKey:
    m = node.mapping(("key", "client", "roles"))
    for required in ("key", "client", "roles"):
        if required not in m:
            raise node.fail(f"missing {required!r}")
    key = m["key"].text()
    # Visible ASCII only: the SDKs (httpx) and gRPC refuse to send any other character in a
    # header, and Envoy refuses control characters, so such a key admitted no client.
    if len(key) < MIN_API_KEY_LENGTH or not all("!" <= c <= "~" for c in key):
        raise m["key"].fail(
            f"keys are at least {MIN_API_KEY_LENGTH} characters, visible ASCII (no spaces, "
            "control or non-ASCII characters, which clients cannot send in a header)"
        )
    if re.fullmatch(JWT_SHAPE, key):
        raise m["key"].fail("a key shaped like a JWT (eyJ...x.y) would be checked as a JWT")
    return ApiKey(key=key, client=m["client"].client(), roles=m["roles"].choices(ROLES))


def _api_keys_file(node: _Node, base: Path) -> list[_Node]:
    """The keys of ``auth.api_keys_file``: a YAML list shaped as ``auth.api_keys``, in a file of
    its own so that keys can come from a Kubernetes Secret and the rest from a ConfigMap."""
    path = node.file(base)
    try:
        data = parse_yaml(path.read_text())
    except OSError as exc:
        raise node.fail(f"{path}: cannot read: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise node.fail(f"{path}: not UTF-8 text") from exc
    except yaml.YAMLError as exc:
        # Where, as for the config file itself: a list of many keys said only that it was
        # "not a readable YAML file". The line, never its text: it holds a key.
        raise node.fail(f"{path}: not valid YAML{yaml_error_place(exc)}") from exc
    except ConfigError as exc:
        raise node.fail(f"{path}: {exc}") from exc
    return _Node(data, node.path).items()


def _jwt(node: _Node, base: Path) -> JwtIssuer:
    m = node.mapping(
        (
            "issuer",
            "jwks_file",
            "audiences",
            "client_claim",
            "roles",
            "roles_claim",
            "require_expiration",
        )
    )
    for required in ("issuer", "jwks_file"):
        if required not in m:
            raise node.fail(f"missing {required!r}")
    jwks = m["jwks_file"].file(base)
    try:
        key_set = jwks.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise m["jwks_file"].fail(f"{jwks} is not a readable text file") from exc
    if problem := jwks_problem(key_set):
        raise m["jwks_file"].fail(f"{jwks} {problem}")
    return JwtIssuer(
        issuer=m["issuer"].text(),
        jwks_file=jwks,
        jwks=key_set,
        audiences=tuple(n.text() for n in m["audiences"].items()) if "audiences" in m else (),
        client_claim=m["client_claim"].text() if "client_claim" in m else "sub",
        roles=m["roles"].given(_EMPTY_OR_ABSENT + "the data role").choices(ROLES)
        if "roles" in m
        else frozenset({"data"}),
        roles_claim=_optional(m.get("roles_claim"), _Node.text),
        require_expiration=m["require_expiration"].boolean() if "require_expiration" in m else True,
    )


def _rate(node: _Node) -> Rate:
    m = node.mapping(("requests_per_second", "burst"))
    if "requests_per_second" not in m:
        raise node.fail("missing 'requests_per_second'")
    rps = m["requests_per_second"].number(maximum=UINT32_MAX)  # tokens per fill
    if rps <= 0:
        raise m["requests_per_second"].fail("must be above 0")
    if rps < 1 / MAX_SECONDS:
        # Envoy adds a token every 1/rps s, and refuses an interval past its durations'.
        raise m["requests_per_second"].fail(
            f"must be {1 / MAX_SECONDS:.9f} or more (a call every {MAX_SECONDS:.0f} s), the "
            "slowest rate Envoy takes"
        )
    burst = m["burst"].integer(1) if "burst" in m else max(1, round(rps))
    if burst < (least := least_burst(rps)):
        raise m.get("burst", node).fail(
            f"must be at least {least} for {rps:g} per second: Envoy adds tokens at most every "
            "50 ms, and a smaller bucket cannot hold them"
        )
    return Rate(requests_per_second=rps, burst=burst)


def _model_limit(node: _Node, default: ModelLimit) -> ModelLimit:
    m = node.mapping(("max_in_flight", "max_queued"))
    return ModelLimit(
        max_in_flight=m["max_in_flight"].integer(1)
        if "max_in_flight" in m
        else default.max_in_flight,
        max_queued=m["max_queued"].integer(0) if "max_queued" in m else default.max_queued,
    )


#: How a pattern that may match a Sax model ID begins: the ID's own `/`, or a wildcard.
_PATTERN_STARTS = ("/", "*", "?", "[")


def _model_pattern(node: _Node) -> str:
    """A ``clients.<id>.models`` pattern, matched against the model ID a call resolves to
    (``/sax/<cell>/<name>``): one spelled as a request may name the model (``sax/test/lm``,
    or an alias) matched nothing, and the client was refused the very model it was given."""
    pattern = node.text()
    if not pattern.startswith(_PATTERN_STARTS):
        raise node.fail(
            f"{pattern!r} matches no model: patterns are matched against model IDs, which "
            "begin /sax/ (not a model's alias, nor its ID without the /)"
        )
    return pattern


def _client(node: _Node) -> ClientPolicy:
    m = node.mapping(("models", "rate", "max_concurrent"))
    return ClientPolicy(
        models=tuple(
            _model_pattern(n) for n in m["models"].given(_EMPTY_OR_ABSENT + "any model").items()
        )
        if "models" in m
        else None,
        rate=_optional(m.get("rate"), _rate),
        max_concurrent=_optional(m.get("max_concurrent"), lambda n: n.integer(1)),
    )


def _model_id(key: str, node: _Node) -> str:
    """``key``, the Sax model ID that names ``node`` (``quotas.models.<id>``): a key that is
    none, such as a bare ``lm2b``, would match no call, and its limit would silently not
    apply."""
    try:
        return parse_model_id(key, field=node.path).id
    except InvalidArgumentError as exc:
        where = node.path.removesuffix(f".{key}")
        raise not_a_model_id(where, key, exc.message) from None


def _quotas(node: _Node) -> Quotas:
    m = node.mapping(("rate", "max_concurrent", "model", "models"))
    model = _model_limit(m["model"], ModelLimit()) if "model" in m else ModelLimit()
    models = {
        _model_id(k, v): _model_limit(v, model)
        for k, v in m.get("models", _Node(None, "")).mapping().items()
    }
    return Quotas(
        rate=_optional(m.get("rate"), _rate),
        max_concurrent=_optional(m.get("max_concurrent"), lambda n: n.integer(1)),
        model=model,
        models=MappingProxyType(models),
    )


def _one_set_of_roles(credentials: list[tuple[_Node, ApiKey | CertificateClient]]) -> None:
    """Refuses two credentials (API keys, certificates) that give one client id different
    roles: Envoy's RBAC admits a role by the client id a credential names (edge/_envoy.py),
    so each had the roles of all, and a key meant for data alone could publish."""
    first: dict[str, tuple[_Node, frozenset[str]]] = {}
    for node, credential in credentials:
        seen, seen_roles = first.setdefault(credential.client, (node, credential.roles))
        if credential.roles != seen_roles:
            raise ConfigError(
                f"{node.path}.roles: client {credential.client} has the roles "
                f"{', '.join(sorted(seen_roles)) or 'none'} at {seen.path}: Envoy checks roles "
                "by client id, so every credential of a client id has the same roles; give "
                "this one a client id of its own"
            )


def _certificate_client(node: _Node) -> CertificateClient:
    m = node.mapping(("subject", "client", "roles"))
    for required in ("subject", "client", "roles"):
        if required not in m:
            raise node.fail(f"missing {required!r}")
    return CertificateClient(
        subject=m["subject"].text(), client=m["client"].client(), roles=m["roles"].choices(ROLES)
    )


def _tls(node: _Node, base: Path) -> Tls:
    m = node.mapping(("cert_file", "key_file", "client_ca_file", "certificate_clients"))
    for required in ("cert_file", "key_file"):
        if required not in m:
            raise node.fail(f"missing {required!r}")
    clients = tuple(
        _certificate_client(n) for n in m.get("certificate_clients", _Node(None, "")).items()
    )
    if clients and "client_ca_file" not in m:
        raise m["certificate_clients"].fail("needs client_ca_file: only mTLS checks certificates")
    cert = m["cert_file"].file(base)
    if problem := certificates_problem(cert):
        raise m["cert_file"].fail(f"{cert} {problem}")
    key = m["key_file"].file(base)
    if problem := key_problem(cert, key):
        raise m["key_file"].fail(f"{key} {problem}")
    ca = _optional(m.get("client_ca_file"), lambda n: n.file(base))
    if ca is not None and (problem := certificates_problem(ca)):
        raise m["client_ca_file"].fail(f"{ca} {problem}")
    return Tls(cert_file=cert, key_file=key, client_ca_file=ca, certificate_clients=clients)


# Each ``limits`` key (a field of Limits, of the same name) and how its value is read.
_LIMITS: dict[str, Callable[[_Node], Any]] = {
    "max_request_bytes": lambda n: n.integer(1024, GRPC_MAX_MESSAGE_BYTES),
    "max_request_headers_kb": lambda n: n.integer(1, _MAX_HEADERS_KB),
    "max_stream_duration": _Node.seconds,
    "max_connections": lambda n: n.integer(1),
    "max_heap_bytes": lambda n: n.heap_bytes(),
    "request_headers_timeout": _Node.seconds,
    "request_timeout": _Node.seconds,
    "idle_timeout": _Node.seconds,
    "max_connection_duration": _Node.seconds,
    "stream_keepalive": _Node.seconds,
    "trusted_proxy_hops": lambda n: n.integer(0),
}


def _limits(node: _Node) -> Limits:
    m = node.mapping(tuple(_LIMITS))
    return Limits(**{key: read(m[key]) for key, read in _LIMITS.items() if key in m})


#: The file's top-level sections this part owns (gateway/configfile.py routes them here).
SECTIONS = (
    "auth",
    "clients",
    "quotas",
    "tls",
    "cors",
    "allowed_hosts",
    "limits",
    "admin_only",
    "direct",
)


def _direct(node: _Node) -> Direct:
    m = node.mapping(("generate",))
    return Direct(generate=m["generate"].boolean() if "generate" in m else False)


def parse_edge(data: Mapping[str, Any], base: Path = Path(".")) -> EdgeConfig:
    """Validates the edge's sections of a parsed file; relative file names are relative to
    ``base`` (the file's folder)."""
    top = _Node(data, "").mapping(SECTIONS)
    auth = top.get("auth", _Node(None, "auth")).mapping(
        ("api_keys", "api_keys_file", "jwt", "groups", "acl_cache_seconds")
    )
    key_nodes = auth.get("api_keys", _Node(None, "")).items()
    if "api_keys_file" in auth:
        key_nodes += _api_keys_file(auth["api_keys_file"], base)
    keys = tuple(_api_key(n) for n in key_nodes)
    seen: set[str] = set()
    for node, key in zip(key_nodes, keys, strict=True):
        if key.key in seen:
            raise ConfigError(f"{node.path}.key: the same key appears twice")
        seen.add(key.key)
    jwt_nodes = auth.get("jwt", _Node(None, "")).items()
    jwt = tuple(_jwt(n, base) for n in jwt_nodes)
    first_of: dict[str, int] = {}  # each issuer's first entry
    for i, issuer in enumerate(jwt):
        if (first := first_of.setdefault(issuer.issuer, i)) < i:
            # Envoy's RBAC admits a token's roles by its `iss` (edge/_envoy.py), and the
            # client-claim check keys on it too: two entries of one issuer mixed theirs.
            raise ConfigError(
                f"{jwt_nodes[i].path}.issuer: {issuer.issuer} is also the issuer of "
                f"{jwt_nodes[first].path}: a token is matched to its entry by its iss claim "
                "alone, so each would have the roles and client claim of both; list it once, "
                "with every key set in its jwks_file"
            )
    groups = {
        name: frozenset(n.identity() for n in members.items())
        for name, members in auth.get("groups", _Node(None, "auth.groups")).mapping().items()
    }
    clients = {
        _Node(k, v.path).identity(): _client(v)
        for k, v in top.get("clients", _Node(None, "clients")).mapping().items()
    }
    tls = _optional(top.get("tls"), lambda n: _tls(n, base))
    if clients and not (keys or jwt or (tls and tls.certificate_clients)):
        # Without a credential no call has a client id, so no rule here could ever apply: a
        # config that cannot mean what it says is refused, not run as if it were not there.
        raise top["clients"].fail(
            "no client can be identified: client ids come from auth.api_keys, auth.jwt or"
            " tls.certificate_clients, and the config has none"
        )
    certificate_nodes = (
        top["tls"].mapping().get("certificate_clients", _Node(None, "")).items() if tls else []
    )
    certificates = tls.certificate_clients if tls else ()
    credentials: list[tuple[_Node, ApiKey | CertificateClient]] = [
        *zip(key_nodes, keys, strict=True),
        *zip(certificate_nodes, certificates, strict=True),
    ]
    _one_set_of_roles(credentials)
    if clients and not jwt:
        # Then every client id comes from a key or a certificate: a rule for one that none
        # names (a typo) applies to no call, silently, and the client it meant has no limit.
        named = {c.client for _, c in credentials}
        for name, node in top["clients"].mapping().items():
            if name not in named:
                raise node.fail(
                    "no credential names this client id (auth.api_keys, auth.api_keys_file, "
                    "tls.certificate_clients), so these rules would never apply; client ids "
                    f"the config names: {', '.join(sorted(named))}"
                )
    cors = top.get("cors", _Node(None, "cors")).mapping(("allowed_origins",))
    if "api_keys_file" in auth and not (keys or jwt or (tls and tls.certificate_clients)):
        # An emptied Secret (or a file of comments) was the only credential there was: the
        # stack was open to every caller, its config the same as one without `auth`.
        raise auth["api_keys_file"].fail(
            f"{auth['api_keys_file'].file(base)}: holds no key, and nothing else here "
            "authenticates a caller: the stack would let everyone in (list the keys, or "
            "leave api_keys_file out)"
        )
    return EdgeConfig(
        api_keys=keys,
        jwt=jwt,
        groups=MappingProxyType(groups),
        # Up to an hour: a change made elsewhere (saxutil, another gateway) takes up to twice
        # this to reach every call. 0 reads them for every call, as the seed did.
        acl_cache_seconds=auth["acl_cache_seconds"].number(maximum=3600)
        if "acl_cache_seconds" in auth
        else EdgeConfig.acl_cache_seconds,
        clients=MappingProxyType(clients),
        quotas=_quotas(top["quotas"]) if "quotas" in top else Quotas(),
        tls=tls,
        cors_origins=tuple(n.origin() for n in cors["allowed_origins"].items())
        if "allowed_origins" in cors
        else (),
        allowed_hosts=tuple(n.host() for n in top["allowed_hosts"].items())
        if "allowed_hosts" in top
        else (),
        limits=_limits(top["limits"]) if "limits" in top else Limits(),
        admin_only=top["admin_only"].given(_ADMIN_ONLY_NULL).choices(EXPOSABLE)
        if "admin_only" in top
        else frozenset(EXPOSABLE),
        direct=_direct(top["direct"]) if "direct" in top else Direct(),
    )
