"""The gateway's settings: one frozen object, built at the edge (CLI or test) and passed down.

    GatewaySettings(client=ClientSettings(sax_root="/tmp/root"), default_timeout=30)

The Sax client's own settings are a part of it, not copied into it; every default is defined
here (or in ``ClientSettings``) once, and the CLI's flags take theirs from these fields.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import yaml

from gateway.client import ClientSettings
from gateway.common.limits import KIB, MIB
from gateway.common.logs import LogFormat

if TYPE_CHECKING:  # gateway.modelconfig raises this module's ConfigError
    from gateway.modelconfig import ModelConfig

DEFAULT_GATEWAY_PORT = 50051
"""The port ``saxgw gateway`` listens on when given none (``up`` starts the first one there)."""
STREAM_TIMEOUT = 600.0
"""The longest a stream (GenerateStream, an OpenAI ``stream: true``) may last, unless
``limits.max_stream_duration`` is shorter: the gateway's deadline when the caller sets none,
and Envoy's bound on them (gateway/edge/_listener.py)."""
DEFAULT_STREAM_KEEPALIVE = 10.0
"""``stream_keepalive`` without ``--stream-keepalive`` or the config file's
``limits.stream_keepalive``: under the read timeouts proxies and SDKs set by default (nginx's
60 s, the OpenAI SDKs' 600 s), and a few bytes a stream that waits that long hardly notices."""


class ConfigError(ValueError):
    """The ``--config`` file is wrong; the message names the file and the key at fault
    (`gateway.configfile` reads it; each section's parser raises this)."""


#: How deep a config file's lists and mappings may nest (a real one nests a few levels).
#: PyYAML builds a document by recursion: a file nested a few hundred levels deep ended in
#: a RecursionError traceback instead of an error naming the file.
MAX_YAML_DEPTH = 100


class _UniqueKeys(yaml.SafeLoader):
    """PyYAML's safe loader, but a key set twice in one mapping is an error: PyYAML keeps the
    last, so a second ``auth:`` or ``limits:`` further down replaced the first whole, and the
    rules it held were silently dropped. And nesting past `MAX_YAML_DEPTH` is an error."""

    _depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        self._depth += 1
        try:
            if self._depth > MAX_YAML_DEPTH:
                line = self.peek_event().start_mark.line + 1  # type: ignore[no-untyped-call]
                raise ConfigError(f"line {line}: nested more than {MAX_YAML_DEPTH} levels deep")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


_BOOL = "tag:yaml.org,2002:bool"
MIN_API_KEY_LENGTH = 16
"""The fewest characters of an ``auth.api_keys`` key (gateway/edge/_load.py)."""


def could_be_api_key(name: str) -> bool:
    """Whether a name the file holds where a key of a mapping goes could be an API key
    written in the wrong place (``- sk-...: {client: ops}``), and so must not be repeated
    in an error: long enough, and neither a setting's snake_case name nor a model ID."""
    return len(name) >= MIN_API_KEY_LENGTH and not re.fullmatch(r"[a-z_]+|/.*", name)


def unknown_key(where: str, key: object, expected: str, *, kind: str = "key") -> ConfigError:
    """The error for ``key``, an unknown ``kind`` in the mapping at ``where`` ("" for the
    file's sections), which ``expected`` says what it takes: it names the key, unless
    `could_be_api_key`."""
    if isinstance(key, str) and could_be_api_key(key):
        return ConfigError(
            f"{where or 'the file'}: an unknown {kind} of {len(key)} characters, not repeated "
            f"here as it may be an API key; {expected}"
        )
    return ConfigError(f"{f'{where}.{key}' if where else key}: unknown {kind}; {expected}")


def not_a_model_id(where: str, key: object, why: str) -> ConfigError:
    """The error for ``key``, a key of the mapping at ``where`` that must be a Sax model ID
    and is none (``why``, which repeats it): unless `could_be_api_key`, which it never
    repeats."""
    if isinstance(key, str) and could_be_api_key(key):
        return ConfigError(
            f"{where}: a key of {len(key)} characters is not a Sax model ID (a model ID "
            "starts with /sax/; not repeated here as it may be an API key)"
        )
    return ConfigError(f"{where}.{key}: not a Sax model ID: {why}")


def _mapping(loader: _UniqueKeys, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *defaults`, which keys override
            continue
        if key_node.tag == _BOOL and isinstance(key_node, yaml.ScalarNode):
            # A key is a name: YAML 1.1 reads `no`, `yes`, `on` and `off` as booleans, so a
            # client named `no` was False, and a mistyped `on:` was reported as "True".
            key_node.tag = "tag:yaml.org,2002:str"
        line = key_node.start_mark.line + 1
        if not isinstance(key_node, yaml.ScalarNode):
            # `[auth]:` (a TOML habit) or `? {a: 1}`: a key that is a list or a mapping, which
            # no section or setting is; hashed below, it ended saxgw in a TypeError traceback.
            raise ConfigError(f"line {line}: a key is a list or a mapping; keys are names")
        key = loader.construct_object(key_node)
        if isinstance(key, str) and key in seen:
            first = f"(first at line {seen[key]})"
            if could_be_api_key(key):
                raise ConfigError(
                    f"line {line}: a key of {len(key)} characters is set twice {first}, not "
                    "repeated here as it may be an API key"
                )
            raise ConfigError(f"line {line}: {key!r} is set twice {first}")
        seen.setdefault(key, line)
    return loader.construct_mapping(node)


_UniqueKeys.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def _int(loader: _UniqueKeys, node: yaml.ScalarNode) -> int | str:
    """An integer, but one with a leading 0 is kept as written, a string: YAML 1.1 reads it as
    octal, so `max_queued: 010` was 8, silently, and `client: 0123` the client 83. A number
    field so written is refused where it is read ("expected an integer", naming its path, as
    `08` always was), and a name is the name written."""
    digits = node.value.lstrip("+-").replace("_", "")
    if len(digits) > 1 and digits[0] == "0" and digits[1].isdigit():
        return str(node.value)
    value: int = loader.construct_yaml_int(node)
    return value


_UniqueKeys.add_constructor("tag:yaml.org,2002:int", _int)
# YAML 1.2's floats: PyYAML (YAML 1.1) wants a dot, so `1e9` or `5e-1` was a string, and a
# number key holding one failed with "expected a number".
_UniqueKeys.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def parse_yaml(text: str) -> Any:
    """The YAML document of a config file (``--config``, ``auth.api_keys_file``); raises
    `yaml.YAMLError`, or `ConfigError` for a key set twice in one mapping."""
    return yaml.load(text, Loader=_UniqueKeys)  # a SafeLoader: no arbitrary objects


#: A quoted value in a YAML problem as long as an API key (`MIN_API_KEY_LENGTH` or more): an
#: alias or tag name, the one kind of value PyYAML's problems repeat at length, which an
#: unquoted key beginning with ``*``, ``&`` or ``!`` becomes.
_LONG_QUOTED = re.compile(  # not YAML's own '<block mapping start>'
    rf"'(?!<)[^']{{{MIN_API_KEY_LENGTH},}}'|\"(?!<)[^\"]{{{MIN_API_KEY_LENGTH},}}\""
)


def yaml_error_place(exc: yaml.YAMLError) -> str:
    """Where and why ``exc`` found the file at fault, as `` at line N, column C: problem``; for
    a construct left open (an unclosed quote or bracket), also the line it began on, since
    the problem is only found at the end of the file. Never a line's text (a key file's lines
    hold keys), and a problem's quoted value only if too short to be a key."""
    mark = getattr(exc, "problem_mark", None)
    if mark is None:
        if isinstance(exc, yaml.reader.ReaderError):
            # A character YAML does not take (a control character, such as a terminal's
            # escape pasted into a comment): said nothing of where, or of what.
            return f" at character {exc.position + 1}: U+{exc.character:04X} is not allowed"
        return ""
    where = f" at line {mark.line + 1}, column {mark.column + 1}"
    began = getattr(exc, "context_mark", None)
    if began is not None and began.line != mark.line:
        where += f", in what began at line {began.line + 1} ({getattr(exc, 'context', '')})"
    problem = getattr(exc, "problem", None)
    if not problem:
        return where
    # PyYAML's own words ("found character '\t' that cannot start any token") say what to
    # fix, where the line alone left an operator to guess.
    problem = _LONG_QUOTED.sub("'...'", problem)
    if "'\\t'" in problem:
        problem += " (YAML indents with spaces, never tabs)"
    return f"{where}: {problem}"


@dataclass(frozen=True, kw_only=True)
class TelemetrySettings:
    """What the gateway reports about itself: metrics, traces and the per-call cost header."""

    metrics: bool = True
    """Count calls in Prometheus metrics."""
    cost_header: bool = False
    """Send a unary call's Sax query cost as the ``x-sax-query-cost-ms`` response header
    from the gateway itself, at the price of one more send per call. False (the default) sends
    it as a trailer, which the stack's Envoy copies into the response headers (its
    ``cost_header`` filter), so HTTP/JSON clients see it either way. Streams use a trailer."""
    metrics_dir: str | None = None
    """Directory shared by every gateway process of one deployment, where each writes its
    metrics (prometheus_client's multiprocess mode) for the ops server to add up. None keeps
    them in this process only (tests, or one process scraped some other way)."""
    otlp_endpoint: str | None = None
    """OTLP/gRPC collector (``http://127.0.0.1:4317``) that receives traces; None: no tracing."""
    otlp_certificate: str | None = None
    """PEM file of the CA(s) an ``https://`` collector's certificate is checked against;
    None: the system's roots (gRPC's defaults)."""
    otlp_headers: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    """Metadata sent with every export, such as a hosted collector's key (from
    ``$OTEL_EXPORTER_OTLP_TRACES_HEADERS`` or ``$OTEL_EXPORTER_OTLP_HEADERS``, never a flag,
    whose value every ``ps`` shows); left out of ``repr``."""
    service_name: str = "sax-gateway"
    """``service.name`` of the exported spans."""
    trace_sample_ratio: float = 1.0
    """Share of traces started by the gateway that are recorded; a caller's ``traceparent``
    decides for its own calls."""
    log_format: LogFormat = "auto"
    """``json`` lines, ``text``, or ``auto`` (text on a terminal); the process's logs."""


@dataclass(frozen=True, kw_only=True)
class ModelLimit:
    """Calls to one model in flight in the stack (its gateway processes together), and how
    many more may wait."""

    max_in_flight: int = 64
    max_queued: int = 256


@dataclass(frozen=True, kw_only=True)
class AccessSettings:
    """Who may call what, as far as the gateway checks it (Envoy checks credentials and roles).

    Built from the ``--config`` file by `gateway.edge.access_settings`.
    """

    identity_header: str = "x-saxgw-client"
    """The header Envoy sets to the client id it authenticated (clients cannot set it)."""
    groups: Mapping[str, frozenset[str]] = field(default_factory=lambda: MappingProxyType({}))
    """Sax ACL ``acl/<group>`` -> client ids; a group not listed holds the client of its name."""
    client_models: Mapping[str, tuple[str, ...]] = field(
        default_factory=lambda: MappingProxyType({})
    )
    """Client id -> model id patterns (fnmatch) it may call; a client not listed may call any."""
    client_max_concurrent: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    default_max_concurrent: int | None = None
    """Calls in flight per client when ``client_max_concurrent`` does not name it."""
    model: ModelLimit = field(default_factory=ModelLimit)
    models: Mapping[str, ModelLimit] = field(default_factory=lambda: MappingProxyType({}))
    known_clients: frozenset[str] = frozenset()
    """Client ids the config names; logs and metrics label any other id "other" (JWT
    subjects are unbounded, label values must not be)."""
    acl_cache_seconds: float = 1.0
    """How long a model's ACLs are reused before asking the admin again (in the background
    for a further ``acl_cache_seconds``, during which calls still use them)."""


@dataclass(frozen=True, kw_only=True)
class SharedSlots:
    """The table of per-client counts a stack's gateway processes share
    (gateway/common/slottable.py), and this process's column in it."""

    path: str
    """The table file, made by the stack before it starts its gateways."""
    worker: int
    """This process's index among the stack's gateways, the same across its restarts."""
    inherited: int | None = None
    """A descriptor of the table this process inherits from the stack, read instead of
    ``path`` (which then only names it): the stack's gateways, restarted ones too, count in
    one file, even once its name was removed (gateway/common/slottable.py)."""


STREAMS_END_BEFORE = 1.0
"""Seconds before the end of the grace period at which calls still in flight are failed, so
that streams can send the message that says how they ended (at most half the period)."""


def calls_grace(grace_period: float) -> float:
    """How long calls in flight run on at shutdown: the grace period, less `STREAMS_END_BEFORE`
    for streams to say how they ended."""
    return grace_period - min(STREAMS_END_BEFORE, grace_period / 2)


@dataclass(frozen=True, kw_only=True)
class GatewaySettings:
    """Everything the gateway server needs; nothing below this reads the environment."""

    client: ClientSettings
    """How the gateway's Sax client finds and talks to cells (SAX_ROOT, GCS endpoint, ...)."""
    host: str = "127.0.0.1"
    port: int = 0
    """gRPC port; 0 picks a free one."""
    default_timeout: float = 60.0
    """Deadline of a unary call when the caller sets none (seconds)."""
    stream_timeout: float = STREAM_TIMEOUT
    """Deadline of a stream when the caller sets none (seconds)."""
    grace_period: float = 10.0
    """On shutdown, how long in-flight calls may take to finish (seconds); those still
    running at `calls_grace` fail (UNAVAILABLE)."""
    stream_keepalive: float = DEFAULT_STREAM_KEEPALIVE
    """Seconds a stream may send nothing: then an OpenAI stream sends an SSE comment (before
    its first event or between two), and SaxGateway's its headers (once, before its first
    message), so that a client's read timeout does not end it; the 200 is then committed,
    and a failure is reported in-band. 0: never (gateway/service/_keepalive.py)."""
    max_message_bytes: int = 32 * MIB
    """Largest gRPC message sent; matches Envoy's body limit."""
    max_receive_bytes: int = 32 * MIB
    """Largest gRPC message accepted, as gRPC counts it: inflated, if the caller compressed
    it, which Envoy's body limit (on the bytes as sent) does not bound."""
    max_payload_bytes: int = 10 * MIB
    """Largest image or audio payload; larger ones are INVALID_ARGUMENT, naming the field."""
    max_metadata_bytes: int = 128 * KIB
    """Largest request metadata (headers) a call may carry, as gRPC counts it: twice Envoy's
    header limit (``limits.max_request_headers_kb``, 60 KiB by default; gateway/cli/_edge.py),
    so that every request Envoy lets through is served. gRPC's own default (8 KiB, refusing
    at random up to 16 KiB) answered requests whose headers Envoy had accepted with
    RESOURCE_EXHAUSTED: a 429, which clients retry, where the headers were at fault."""
    health_interval: float = 5.0
    """How often the health service probes the cell (seconds)."""
    max_watch_duration: float = 0.0
    """How long a grpc.health.v1 Watch may last (seconds; 0: for good): the config file's
    ``limits.max_stream_duration``, after which the gateway ends it with DEADLINE_EXCEEDED,
    before Envoy's backstop resets it (INTERNAL to gRPC clients)."""
    max_streams_per_client: int = 100
    """Long-lived streams (GenerateStream, WatchAddresses) one client may hold open."""
    access: AccessSettings = field(default_factory=AccessSettings)
    """Model ACLs, client model lists and concurrency limits the gateway enforces."""
    shared_slots: SharedSlots | None = None
    """Where the per-client limits (``max_concurrent``, ``max_streams_per_client``) are
    counted with the stack's other gateway processes; None: in this process alone."""

    stack_token: str | None = field(default=None, repr=False)
    """The token every call but health checks must carry (gateway/common/stacktoken.py),
    handed over by `saxgw up|serve` in the environment; None: none is required."""
    config_file: str | None = None
    """The ``--config`` file: a gateway process takes ``models``, ``access`` and its deadline
    caps from it (gateway/cli/_edge.py: gateway_settings)."""
    config_snapshot: str | None = None
    """The ``--config`` file as the stack read it at start (gateway/configfile.py:
    write_snapshot): a gateway process of `saxgw up|serve` reads this instead, restarted
    ones included, so that an edit of the file reaches none of them."""
    models: Mapping[str, ModelConfig] = field(default_factory=dict)
    """Per-model settings of the OpenAI-compatible API (the config file's ``models:``)."""
    telemetry: TelemetrySettings = field(default_factory=TelemetrySettings)
    """Metrics, traces and cost reporting."""

    @property
    def sax_root(self) -> str:
        """The client's SAX_ROOT (read-only shorthand)."""
        return self.client.sax_root
