"""What an operator decides in the ``--config`` file, as frozen values (docs/config.md).

`parse_edge` (in `_load`) builds an `EdgeConfig` from the file `gateway.configfile` read;
`saxgw` renders Envoy's config and the gateway's `AccessSettings` from it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from gateway.config import DEFAULT_STREAM_KEEPALIVE
from gateway.config import ModelLimit as ModelLimit  # re-exported: the file's quotas.model

ROLES = ("admin", "data")
#: What `admin_only` may name: reflection, the calls that reveal model-server addresses
#: (ListModels, GetModel, WatchAddresses), and cell statistics.
EXPOSABLE = ("addresses", "reflection", "stats")


#: A compact JWT: a base64url JSON header (so ``eyJ``, ``{"``) and two more segments. Where a
#: stack takes both API keys and JWTs, a bearer token of this shape is checked as a JWT alone,
#: so that its refusal says why ("Jwt is expired") rather than that it is no API key; and no
#: API key may have this shape. Python's `re` and Envoy's RE2 read it alike.
JWT_SHAPE = r"eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*"


@dataclass(frozen=True, kw_only=True)
class ApiKey:
    """One ``auth.api_keys`` entry. The key never appears in a repr or an error."""

    key: str = field(repr=False)
    client: str
    roles: frozenset[str]


@dataclass(frozen=True, kw_only=True)
class JwtIssuer:
    """One ``auth.jwt`` entry: tokens signed by a key in ``jwks_file`` and issued by ``issuer``."""

    issuer: str
    jwks_file: Path
    jwks: str = field(repr=False)
    """The key set as ``jwks_file`` held when the config was read: Envoy gets this text, not
    the file, so an Envoy started again (a crash, the watchdog) verifies with the keys the
    stack started with, as the rest of the config stays as read, and a JWKS file edited
    meanwhile (or half written) cannot keep it from starting. Out of ``repr``: an ``oct``
    key is a shared secret."""
    audiences: tuple[str, ...] = ()
    client_claim: str = "sub"
    """The claim whose value becomes the client id."""
    roles: frozenset[str] = frozenset({"data"})
    """Roles every valid token of this issuer has."""
    roles_claim: str | None = None
    """A list claim whose values (``admin``, ``data``) add roles."""
    require_expiration: bool = True
    """Refuse tokens without an ``exp`` claim: such a token, once leaked, works forever."""


@dataclass(frozen=True, kw_only=True)
class Rate:
    """A token bucket: ``burst`` requests at once, refilled at ``requests_per_second``."""

    requests_per_second: float
    burst: int


@dataclass(frozen=True, kw_only=True)
class ClientPolicy:
    """``clients.<id>``: what one client may do beyond its roles."""

    models: tuple[str, ...] | None = None
    """Model id patterns (``fnmatch``) the client may call; None allows every model."""
    rate: Rate | None = None
    max_concurrent: int | None = None


@dataclass(frozen=True, kw_only=True)
class Quotas:
    """``quotas``: defaults for every client and every model."""

    rate: Rate | None = None
    """Each client's own bucket (clients.<id>.rate overrides it); None: no rate limit."""
    max_concurrent: int | None = None
    """Each client's calls in flight (clients.<id>.max_concurrent overrides it)."""
    model: ModelLimit = field(default_factory=ModelLimit)
    models: Mapping[str, ModelLimit] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True, kw_only=True)
class CertificateClient:
    """``tls.certificate_clients`` entry: a client certificate's subject identifies a client."""

    subject: str
    """The subject as Envoy prints it (RFC 2253), e.g. ``CN=team-c,O=Example``."""
    client: str
    roles: frozenset[str]


@dataclass(frozen=True, kw_only=True)
class Tls:
    """``tls``: the public listener's certificate; with ``client_ca_file``, mTLS."""

    cert_file: Path
    key_file: Path
    client_ca_file: Path | None = None
    certificate_clients: tuple[CertificateClient, ...] = ()


@dataclass(frozen=True, kw_only=True)
class Limits:
    """``limits``: what one request or the listener may use."""

    max_request_bytes: int = 32 << 20
    max_request_headers_kb: int = 60
    max_stream_duration: float = 3600.0
    """Longest a request or stream may last, seconds (0: unbounded)."""
    request_headers_timeout: float = 10.0
    """Seconds a client has to send its request headers (slowloris)."""
    request_timeout: float = 60.0
    """Seconds a client has to send its whole request, headers and body (slowloris), unless a
    reply has begun: a body that stops coming is 408 whatever the route, a stream's too."""
    idle_timeout: float = 300.0
    """Seconds a connection without any request in flight stays open."""
    max_connection_duration: float = 0.0
    """Seconds a client connection is used for new requests (0: for good): past it, Envoy
    asks the client to open another (HTTP/2 GOAWAY, HTTP/1.1 ``Connection: close``) and lets
    the calls in flight finish. Behind a layer-4 balancer (a Kubernetes Service), a gRPC
    client's one connection otherwise stays on the pod it first reached, whatever the
    autoscaler adds."""
    stream_keepalive: float = DEFAULT_STREAM_KEEPALIVE
    """Seconds a stream may send nothing before it sends a keep-alive (and so its 200): the
    gateway's (`GatewaySettings.stream_keepalive`), where ``--stream-keepalive`` does not set
    it."""
    max_connections: int = 20_000
    max_heap_bytes: int = 2 << 30
    """Envoy's heap, bytes (0: unwatched). Past 85% of it Envoy resets the streams holding
    the most buffered bytes (1 MiB or more each), past 98% it refuses new requests (503)."""
    trusted_proxy_hops: int = 0
    """Proxies in front of Envoy (a load balancer, an ingress) that append the address they
    saw to x-forwarded-for: the client is that many entries from its end. 0: the peer."""

    @property
    def message_framing_bytes(self) -> int:
        """What the gRPC message of a body within ``max_request_bytes`` may hold besides the
        body: an OpenAI route's body goes to the gateway whole, in a ``google.api.HttpBody``
        with its Content-Type (bounded by the header limit) and the tags and lengths of both.
        Counted against the body's own limit, a body within 35 bytes of it was a 413."""
        return self.max_request_headers_kb * 1024 + 64

    @property
    def max_request_message_bytes(self) -> int:
        """The largest gRPC message a body within ``max_request_bytes`` is sent on as: Envoy's
        transcoder's limit, and the least the gateway takes."""
        return self.max_request_bytes + self.message_framing_bytes


@dataclass(frozen=True, kw_only=True)
class Direct:
    """``direct``: data calls Envoy sends straight to the model servers (docs/config.md)."""

    generate: bool = False
    """The unary ``POST /generate`` of a model whose meaning the gateway would not change
    (gateway/launch/direct/); off: every call goes through a gateway."""


@dataclass(frozen=True, kw_only=True)
class EdgeConfig:
    """The edge's sections of the file. The default is what ``saxgw up`` runs without
    ``--config``."""

    api_keys: tuple[ApiKey, ...] = ()
    jwt: tuple[JwtIssuer, ...] = ()
    groups: Mapping[str, frozenset[str]] = field(default_factory=lambda: MappingProxyType({}))
    """Sax ACL ``acl/<group>`` -> client ids; a group not listed holds the client of its name."""
    acl_cache_seconds: float = 1.0
    """How long each gateway process reuses a model's ACLs (``AccessSettings``)."""
    clients: Mapping[str, ClientPolicy] = field(default_factory=lambda: MappingProxyType({}))
    quotas: Quotas = field(default_factory=Quotas)
    tls: Tls | None = None
    cors_origins: tuple[str, ...] = ()
    allowed_hosts: tuple[str, ...] = ()
    """Host names a loopback listener answers besides loopback ones (gateway/edge/_hosts.py)."""
    limits: Limits = field(default_factory=Limits)
    admin_only: frozenset[str] = frozenset(EXPOSABLE)
    direct: Direct = field(default_factory=Direct)

    @property
    def authenticated(self) -> bool:
        """True when callers must present a credential (an API key, a JWT or a certificate)."""
        return bool(self.api_keys or self.jwt or self.certificate_clients)

    @property
    def certificate_clients(self) -> tuple[CertificateClient, ...]:
        """Clients identified by their TLS certificate (mTLS)."""
        return self.tls.certificate_clients if self.tls else ()

    def policy(self, client: str) -> ClientPolicy:
        """The client's own policy, or an empty one."""
        return self.clients.get(client, ClientPolicy())
