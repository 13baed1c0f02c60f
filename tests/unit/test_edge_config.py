"""The --config file's edge sections: every error names the key at fault and never echoes a
key. The file is read as a whole (gateway.configfile), as saxgw reads it."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization

from gateway.cli._edge import gateway_settings
from gateway.client import ClientSettings
from gateway.config import MAX_YAML_DEPTH, ConfigError, GatewaySettings, parse_yaml
from gateway.configfile import SECTIONS, ConfigFile, load_config, parse_config
from gateway.edge import EdgeConfig, Rate, access_settings, edge_values
from gateway.edge._load import _LIMITS
from tests.e2e.security._credentials import CertificateAuthority

KEY = "sk-ops-0123456789abcdef"
# A key set Envoy can use (gateway/edge/_jwks.py): one HMAC key.
JWKS = '{"keys": [{"kty": "oct", "k": "c2VjcmV0LWtleQ"}]}'
BASE: dict[str, Any] = {"auth": {"api_keys": [{"key": KEY, "client": "ops", "roles": ["admin"]}]}}
TEAM_A: dict[str, Any] = {
    "auth": {"api_keys": [{"key": "sk-team-a-0123456789ab", "client": "team-a", "roles": ["data"]}]}
}


def edge(data: Any) -> EdgeConfig:
    return parse_config(data).edge


def _error(data: Any, base: Path = Path(".")) -> str:
    with pytest.raises(ConfigError) as caught:
        parse_config(data, base)
    return str(caught.value)


def test_the_issue_example_parses() -> None:
    config = edge(
        {
            "auth": {
                "api_keys": [
                    {"key": "sk-ops-aaaaaaaaaaaaaaaa", "client": "ops", "roles": ["admin", "data"]},
                    {"key": "sk-team-a-bbbbbbbbbbbb", "client": "team-a", "roles": ["data"]},
                ]
            }
        }
    )
    assert [(k.client, sorted(k.roles)) for k in config.api_keys] == [
        ("ops", ["admin", "data"]),
        ("team-a", ["data"]),
    ]
    assert config.authenticated


def test_an_empty_file_is_the_default() -> None:
    assert parse_config(None) == ConfigFile()
    assert edge(None) == EdgeConfig()
    assert not EdgeConfig().authenticated
    assert not EdgeConfig().direct.generate  # direct mode is opt-in


def test_direct_mode_is_asked_for_by_name() -> None:
    assert edge({"direct": {"generate": True}}).direct.generate
    assert not edge({"direct": {}}).direct.generate
    assert not edge({"direct": None}).direct.generate


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"auth": {"api_key": []}}, "auth.api_key: unknown key"),
        ({"oops": 1}, "oops: unknown section; expected one of admin_only, allowed_hosts, auth,"),
        (
            {"auth": {"api_keys": [{"key": KEY, "client": "ops"}]}},
            "auth.api_keys[0]: missing 'roles'",
        ),
        (
            {"auth": {"api_keys": [{"key": KEY, "client": "ops", "roles": ["root"]}]}},
            "auth.api_keys[0].roles: unknown 'root'; expected any of admin, data",
        ),
        (
            {"auth": {"api_keys": [{"key": "short", "client": "ops", "roles": ["data"]}]}},
            "auth.api_keys[0].key: keys are at least 16 characters, visible ASCII (no spaces,",
        ),
        (  # one short of the least (docs/config.md: "at least 16 characters")
            {"auth": {"api_keys": [{"key": "0123456789abcde", "client": "o", "roles": ["data"]}]}},
            "auth.api_keys[0].key: keys are at least 16 characters, visible ASCII (no spaces,",
        ),
        (
            # The OpenAI SDK (httpx) and gRPC refuse to send it: it admitted no client.
            {"auth": {"api_keys": [{"key": "clé-très-secrète-0123", "client": "o", "roles": []}]}},
            "auth.api_keys[0].key: keys are at least 16 characters, visible ASCII (no spaces,",
        ),
        (
            # A final newline (a YAML block scalar) passed, then each call of the key was a 503:
            # Envoy refuses the header value.
            {"auth": {"api_keys": [{"key": KEY, "client": "alice\n", "roles": ["data"]}]}},
            "auth.api_keys[0].client: client ids are 1-128 letters, digits and ._@:- characters",
        ),
        (
            # Envoy refuses a header value with a control character.
            {"auth": {"api_keys": [{"key": "0123456789abcdef\x7f", "client": "o", "roles": []}]}},
            "auth.api_keys[0].key: keys are at least 16 characters, visible ASCII (no spaces,",
        ),
        (
            # jwt_authn alone checks a bearer token of a JWT's shape (edge/_envoy.py).
            {
                "auth": {
                    "api_keys": [
                        {"key": "eyJhbGciOi.eyJzdWIi.c2ln", "client": "ops", "roles": ["data"]}
                    ]
                }
            },
            "auth.api_keys[0].key: a key shaped like a JWT (eyJ...x.y) would be checked as a JWT",
        ),
        (
            {"auth": {"api_keys": [{"key": KEY, "client": "a b", "roles": ["data"]}]}},
            "auth.api_keys[0].client: client ids are",
        ),
        (
            {**BASE, "quotas": {"rate": {"requests_per_second": "fast"}}},
            "quotas.rate.requests_per_second: expected a number",
        ),
        (
            {**BASE, "quotas": {"models": {"/sax/test/lm": {"max_in_flight": 0}}}},
            "quotas.models./sax/test/lm.max_in_flight: must be at least 1",
        ),
        (
            {**BASE, "quotas": {"models": {"lm2b": {"max_in_flight": 8}}}},
            "quotas.models.lm2b: not a Sax model ID: model ID 'lm2b' should have the form",
        ),
        ({**BASE, "clients": {"team-a": {"modles": []}}}, "clients.team-a.modles: unknown key"),
        # Matched against /sax/... IDs, these matched nothing: the client was refused the model.
        (
            {**BASE, "clients": {"team-a": {"models": ["/sax/test/*", "sax/test/lm"]}}},
            "clients.team-a.models[1]: 'sax/test/lm' matches no model: patterns are matched "
            "against model IDs, which begin /sax/ (not a model's alias, nor its ID without the /)",
        ),
        (
            {**BASE, "clients": {"team-a": {"models": ["lm"]}}},
            "clients.team-a.models[0]: 'lm' matches no model",
        ),
        (
            {**BASE, "limits": {"max_request_bytes": True}},
            "limits.max_request_bytes: expected an integer",
        ),
        ({**BASE, "admin_only": ["secrets"]}, "admin_only: unknown 'secrets'"),
        # Envoy refused every request ("envoy overloaded"), and saxgw blamed the cell.
        (
            {"limits": {"max_heap_bytes": 1 << 20}},
            "limits.max_heap_bytes: must be 0 (unwatched) or at least 67108864 (64 MiB)",
        ),
        (
            {**BASE, "quotas": {"rate": {"requests_per_second": 1000, "burst": 10}}},
            "quotas.rate.burst: must be at least 50 for 1000 per second: Envoy adds tokens at "
            "most every 50 ms, and a smaller bucket cannot hold them",
        ),
        (
            # Envoy's durations stop at nanoseconds: this rendered as 0s, which turns it off.
            {**BASE, "limits": {"idle_timeout": 1e-10}},
            "limits.idle_timeout: must be 0 (none) or at least 0.001 s",
        ),
        (
            # `models:` with its entries commented out: no model, where no key means any.
            {**BASE, "clients": {"team-a": {"models": None}}},
            "clients.team-a.models: no value; write [] for none, or leave the key out for any "
            "model",
        ),
        (
            {**BASE, "auth": {**BASE["auth"], "acl_cache_seconds": 7200}},
            "auth.acl_cache_seconds: must be at most 3600",
        ),
        (
            {**BASE, "auth": {**BASE["auth"], "acl_cache_seconds": -1}},
            "auth.acl_cache_seconds: must be at least 0",
        ),
        (
            {**BASE, "auth": {**BASE["auth"], "acl_cache_seconds": "1m"}},
            "auth.acl_cache_seconds: expected a number",
        ),
        (
            {**BASE, "auth": {**BASE["auth"], "groups": {"readers": ["ops\nteam-a"]}}},
            "auth.groups.readers[0]: expected a client id or JWT subject: 1-1024 printable "
            "characters",
        ),
        (
            {**BASE, "clients": {"team\ta": {"max_concurrent": 1}}},
            "clients.team\ta: expected a client id or JWT subject: 1-1024 printable characters",
        ),
        (
            # `admin_only:` with its entries commented out read as [], opening them to data.
            {**BASE, "admin_only": None},
            "admin_only: no value; [] opens them all to data, without the key they are admin's",
        ),
        (
            {**BASE, "tls": {"cert_file": "nope.pem", "key_file": "nope.key"}},
            "tls.cert_file: no such file",
        ),
        ({**BASE, "models": ["x"]}, "models: must be a mapping"),
        (
            {
                "tls": {
                    "cert_file": "pyproject.toml",
                    "key_file": "pyproject.toml",
                    "certificate_clients": [{"subject": "CN=c", "client": "c", "roles": ["data"]}],
                }
            },
            "tls.certificate_clients: needs client_ca_file",
        ),
        ([], "the file: expected a mapping"),
        (
            # No credential, so no client id: these rules could never apply.
            {"clients": {"team-a": {"models": ["/sax/test/*"]}}},
            "clients: no client can be identified: client ids come from auth.api_keys,"
            " auth.jwt or tls.certificate_clients, and the config has none",
        ),
        (
            # Without auth.jwt, a client id comes from a key or a certificate alone: a rule for
            # a misspelt one (the key's client is ops) applied to no call, so ops had no limit.
            {**BASE, "clients": {"opz": {"max_concurrent": 1}}},
            "clients.opz: no credential names this client id (auth.api_keys, "
            "auth.api_keys_file, tls.certificate_clients), so these rules would never apply; "
            "client ids the config names: ops",
        ),
        ({"direct": {"generate": "yes"}}, "direct.generate: expected true or false"),
        ({"direct": {"stream": True}}, "direct.stream: unknown key; expected one of generate"),
    ],
)
def test_errors_name_the_key(data: Any, message: str) -> None:
    assert message in _error(data)


def test_a_host_or_origin_that_is_no_string_names_its_path_once() -> None:
    # Each said it twice: "allowed_hosts[0]: allowed_hosts[0]: expected a non-empty string".
    assert _error({"allowed_hosts": [1]}) == "allowed_hosts[0]: expected a non-empty string"
    assert _error({"cors": {"allowed_origins": [1]}}) == (
        "cors.allowed_origins[0]: expected a non-empty string"
    )


def test_every_credential_of_a_client_id_has_the_same_roles(tmp_path: Path) -> None:
    # Envoy checks roles by client id: a data key of `ops` published models with the roles
    # of another key of `ops` (admin), and a certificate of `batch` had an API key's.
    keys = [
        {"key": KEY, "client": "ops", "roles": ["admin", "data"]},
        {"key": "sk-ops-ci-0123456789ab", "client": "ops", "roles": ["data"]},
    ]
    assert _error({"auth": {"api_keys": keys}}) == (
        "auth.api_keys[1].roles: client ops has the roles admin, data at auth.api_keys[0]: "
        "Envoy checks roles by client id, so every credential of a client id has the same "
        "roles; give this one a client id of its own"
    )
    (tmp_path / "keys.yaml").write_text(
        "- {key: sk-ops-ci-0123456789ab, client: ops, roles: [data, admin]}\n"
    )
    same = {"auth": {"api_keys": keys[:1], "api_keys_file": "keys.yaml"}}
    assert [sorted(k.roles) for k in parse_config(same, tmp_path).edge.api_keys] == [
        ["admin", "data"]
    ] * 2
    (tmp_path / "keys.yaml").write_text("- {key: sk-ops-ci-0123456789ab, client: ops, roles: []}\n")
    assert _error(same, tmp_path).startswith(
        "auth.api_keys_file[0].roles: client ops has the roles admin, data at auth.api_keys[0]: "
    )


def test_errors_never_show_keys(tmp_path: Path) -> None:
    twice = {"auth": {"api_keys": [BASE["auth"]["api_keys"][0]] * 2}}
    message = _error(twice)
    assert message == "auth.api_keys[1].key: the same key appears twice"
    assert KEY not in message
    assert KEY not in repr(parse_config(BASE))
    # A key written where a name goes (`- sk-...: {client: ops, ...}`, a shape one may guess)
    # was named as an unknown key; a name too short to be a key still is.
    keyed = {"auth": {"api_keys": [{KEY: {"client": "ops", "roles": ["data"]}}]}}
    assert _error(keyed) == (
        "auth.api_keys[0]: an unknown key of 23 characters, not repeated here as it may be an "
        "API key; expected one of key, client, roles"
    )
    # Anywhere else too: a key pasted a line off was repeated in full ("sk-...: unknown
    # section", "limits.sk-...: unknown key").
    assert _error({KEY: {"client": "ops"}}) == (
        "the file: an unknown section of 23 characters, not repeated here as it may be an API "
        "key; expected one of " + ", ".join(SECTIONS)
    )
    assert _error({"limits": {KEY: 1}}) == (
        "limits: an unknown key of 23 characters, not repeated here as it may be an API key; "
        "expected one of " + ", ".join(_LIMITS)
    )
    # The sections of their own parsers, and keys that must be model IDs, alike.
    for data, start in [
        ({"models": {"/sax/test/lm": {KEY: 1}}}, "models./sax/test/lm: an unknown key of 23 "),
        ({"supervisor": {KEY: 1}}, "supervisor: an unknown key of 23 characters, not repeated"),
        ({"models": {KEY: {}}}, "models: a key of 23 characters is not a Sax model ID"),
        ({"quotas": {"models": {KEY: {"max_in_flight": 2}}}}, "quotas.models: a key of 23 "),
    ]:
        message = _error(data)
        assert message.startswith(start) and KEY not in message, message
    assert _error({"supervisor": {"fist_delay": 1}}).startswith("supervisor.fist_delay: unknown")
    typo = {"auth": {"api_keys": [{"key": KEY, "client": "ops", "rolse": ["data"]}]}}
    assert _error(typo) == "auth.api_keys[0].rolse: unknown key; expected one of key, client, roles"
    # And as a key set twice, in a keys file written as a mapping of key to client.
    (tmp_path / "keys.yaml").write_text(f"{KEY}: ops\n{KEY}: ops\n")
    assert _error({"auth": {"api_keys_file": "keys.yaml"}}, tmp_path) == (
        f"auth.api_keys_file: {tmp_path / 'keys.yaml'}: line 2: a key of 23 characters is set "
        "twice (first at line 1), not repeated here as it may be an API key"
    )


@pytest.mark.parametrize("text", ["", "# keys go here\n", "[]\n"])
def test_a_keys_file_without_keys_is_refused_when_nothing_else_authenticates(
    tmp_path: Path, text: str
) -> None:
    # An emptied Secret left the stack open to every caller: the config rendered as one
    # without `auth`, and nothing said so.
    (tmp_path / "keys.yaml").write_text(text)
    assert _error({"auth": {"api_keys_file": "keys.yaml"}}, tmp_path) == (
        f"auth.api_keys_file: {tmp_path / 'keys.yaml'}: holds no key, and nothing else here "
        "authenticates a caller: the stack would let everyone in (list the keys, or leave "
        "api_keys_file out)"
    )
    # Beside keys of the file itself, or issuers (a JWT-only deployment that keeps the
    # base's keys Secret empty), it is no more than an empty list.
    inline = {"auth": {**BASE["auth"], "api_keys_file": "keys.yaml"}}
    assert [k.client for k in parse_config(inline, tmp_path).edge.api_keys] == ["ops"]
    (tmp_path / "jwks.json").write_text(JWKS)
    issuer = {"issuer": "https://i.test", "jwks_file": "jwks.json"}
    jwt_only = {"auth": {"jwt": [issuer], "api_keys_file": "keys.yaml"}}
    assert parse_config(jwt_only, tmp_path).edge.authenticated


def test_jwt_files_are_relative_to_the_config(tmp_path: Path) -> None:
    (tmp_path / "jwks.json").write_text(JWKS)
    config_file = tmp_path / "saxgw.yaml"
    config_file.write_text(
        "auth:\n  jwt:\n    - {issuer: https://i.test, jwks_file: jwks.json, roles: [admin]}\n"
    )
    (issuer,) = load_config(config_file).edge.jwt
    assert issuer.jwks_file == (tmp_path / "jwks.json").resolve()
    assert issuer.roles == frozenset({"admin"})
    assert issuer.client_claim == "sub"
    assert issuer.require_expiration is True


def test_an_issuer_is_listed_once(tmp_path: Path) -> None:
    # Envoy's RBAC gives a token the roles of every entry of its `iss`, and the client claim
    # of the last: a token verified by the data issuer's key set was an admin.
    (tmp_path / "jwks.json").write_text(JWKS)
    (tmp_path / "admin-jwks.json").write_text(JWKS.replace("c2VjcmV0LWtleQ", "b3RoZXIta2V5"))
    issuers = [
        {"issuer": "https://i.test", "jwks_file": "jwks.json"},
        {"issuer": "https://i.test", "jwks_file": "admin-jwks.json", "roles": ["admin"]},
    ]
    assert _error({"auth": {"jwt": issuers}}, tmp_path) == (
        "auth.jwt[1].issuer: https://i.test is also the issuer of auth.jwt[0]: a token is "
        "matched to its entry by its iss claim alone, so each would have the roles and client "
        "claim of both; list it once, with every key set in its jwks_file"
    )


def test_an_issuers_roles_left_with_no_value_are_refused(tmp_path: Path) -> None:
    # `roles:` with its entries commented out read as no role, where no key means data.
    (tmp_path / "jwks.json").write_text(JWKS)
    config_file = tmp_path / "saxgw.yaml"
    config_file.write_text(
        "auth:\n  jwt:\n    - issuer: https://i.test\n      jwks_file: jwks.json\n      roles:\n"
    )
    with pytest.raises(ConfigError) as refused:
        load_config(config_file)
    assert str(refused.value).endswith(
        "auth.jwt[0].roles: no value; write [] for none, or leave the key out for the data role"
    )


def test_an_issuer_may_accept_tokens_without_expiry(tmp_path: Path) -> None:
    (tmp_path / "jwks.json").write_text(JWKS)
    issuer = {"issuer": "https://i.test", "jwks_file": "jwks.json", "require_expiration": False}
    (parsed,) = parse_config({"auth": {"jwt": [issuer]}}, tmp_path).edge.jwt
    assert parsed.require_expiration is False
    wrong = {"auth": {"jwt": [{**issuer, "require_expiration": "no"}]}}
    assert _error(wrong, tmp_path) == "auth.jwt[0].require_expiration: expected true or false"


def test_api_keys_file_adds_keys_kept_apart(tmp_path: Path) -> None:
    # The keys in a file of their own (a Kubernetes Secret), the rest in the config (a ConfigMap).
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "api-keys.yaml").write_text(
        "- {key: sk-team-a-bbbbbbbbbbbb, client: team-a, roles: [data]}\n"
    )
    data = {"auth": {**BASE["auth"], "api_keys_file": "keys/api-keys.yaml"}}
    config = parse_config(data, tmp_path).edge
    assert [(k.key, k.client) for k in config.api_keys] == [
        (KEY, "ops"),
        ("sk-team-a-bbbbbbbbbbbb", "team-a"),
    ]
    only_file = parse_config({"auth": {"api_keys_file": "keys/api-keys.yaml"}}, tmp_path)
    assert only_file.edge.authenticated


def test_api_keys_file_errors_name_the_file_key(tmp_path: Path) -> None:
    keys = tmp_path / "keys.yaml"
    in_file = {"auth": {"api_keys_file": "keys.yaml"}}
    assert _error(in_file, tmp_path) == f"auth.api_keys_file: no such file: {keys}"
    in_dir = {"auth": {"api_keys_file": "."}}
    directory = f"auth.api_keys_file: {tmp_path} is a directory; this names a file"
    assert _error(in_dir, tmp_path) == directory
    keys.write_text("- {key: sk-team-a-bbbbbbbbbbbb, client: team-a, roles: [root]}\n")
    assert _error(in_file, tmp_path) == (
        "auth.api_keys_file[0].roles: unknown 'root'; expected any of admin, data"
    )
    keys.write_text(f"- {{key: {KEY}, client: other, roles: [data]}}\n")
    twice = {"auth": {**BASE["auth"], "api_keys_file": "keys.yaml"}}
    assert _error(twice, tmp_path) == "auth.api_keys_file[0].key: the same key appears twice"
    keys.write_text("{not: a list}\n")
    assert _error(in_file, tmp_path) == "auth.api_keys_file: expected a list"
    # A YAML mistake in a long list of keys: which line (never its text, which holds a key).
    keys.write_text(
        f"- {{key: {KEY}, client: a, roles: [data]}}\n"
        "- {key: sk-team-b-cccccccccccc, client: b, roles: [data]\n"
    )
    assert _error(in_file, tmp_path) == (
        f"auth.api_keys_file: {keys}: not valid YAML at line 3, column 1, in what began at "
        "line 2 (while parsing a flow mapping): expected ',' or '}', but got '<stream end>'"
    )


def test_jwks_must_be_a_key_set(tmp_path: Path) -> None:
    (tmp_path / "jwks.json").write_text("{}")
    jwt = {"auth": {"jwt": [{"issuer": "https://i.test", "jwks_file": "jwks.json"}]}}
    assert "auth.jwt[0].jwks_file: " in _error(jwt, tmp_path)
    assert "is not a JWKS" in _error(jwt, tmp_path)


@pytest.mark.parametrize("text", ["[auth]:\n  api_keys: []\n", "limits: {? {a: 1} : 2}\n"])
def test_a_key_that_is_a_list_or_a_mapping_is_one_line(tmp_path: Path, text: str) -> None:
    # A TOML habit (`[auth]:`) ended saxgw in a TypeError traceback ("unhashable type").
    path = tmp_path / "saxgw.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as refused:
        load_config(path)
    assert str(refused.value) == f"{path}: line 1: a key is a list or a mapping; keys are names"


def test_a_number_with_a_leading_zero_is_as_written_not_octal(tmp_path: Path) -> None:
    # YAML 1.1 reads 010 as octal: `max_queued: 010` was 8, silently, and a client id 0123
    # was the client 83. A number so written is refused at its path; a name is as written.
    path = tmp_path / "saxgw.yaml"
    path.write_text("quotas:\n  model: {max_queued: 010}\n")
    with pytest.raises(ConfigError) as refused:
        load_config(path)
    assert str(refused.value) == f"{path}: quotas.model.max_queued: expected an integer"
    path.write_text(f"auth:\n  api_keys: [{{key: {KEY}, client: 0123, roles: [data]}}]\n")
    assert [k.client for k in load_config(path).edge.api_keys] == ["0123"]


def test_a_character_yaml_does_not_take_is_named_with_its_place(tmp_path: Path) -> None:
    # A terminal's escape pasted into a comment said only "not valid YAML".
    path = tmp_path / "saxgw.yaml"
    path.write_text("limits: {}  # \x1b[0m\n")
    with pytest.raises(ConfigError) as refused:
        load_config(path)
    assert str(refused.value) == (f"{path}: not valid YAML at character 15: U+001B is not allowed")


def test_load_config_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("auth: [\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: not valid YAML at line 2"):
        load_config(path)
    # An unclosed quote is found only at the end of the file: the line it opened on too.
    path.write_text('models:\n  /sax/test/a:\n    chat_template: "{{ x }\n    stop: [a]\n\n\n')
    message = (
        "not valid YAML at line 7, column 1, in what began at line 3 (while scanning a quoted "
        "scalar): found unexpected end of stream"
    )
    with pytest.raises(ConfigError, match=re.escape(f"bad.yaml: {message}") + "$"):
        load_config(path)
    # What is wrong, not only where: a tab, the usual slip, said "not valid YAML at line 2".
    path.write_text("limits:\n\tidle_timeout: 5\n")
    message = (
        "not valid YAML at line 2, column 1: found character '\\t' that cannot start any token"
        " (YAML indents with spaces, never tabs)"
    )
    with pytest.raises(ConfigError, match=re.escape(f"bad.yaml: {message}") + "$"):
        load_config(path)
    path.write_text("limits:\n  idle_timeout: 5\n bad: 1\n")  # YAML's own tokens are named
    with pytest.raises(ConfigError, match=re.escape("but found '<block mapping start>'") + "$"):
        load_config(path)
    # Never a key, though: an unquoted key that YAML reads as an alias (`*...`) is not named.
    path.write_text(f"auth:\n  api_keys:\n    - {{key: *{KEY}, client: ops, roles: [data]}}\n")
    with pytest.raises(ConfigError) as refused:
        load_config(path)
    assert str(refused.value).endswith(
        "not valid YAML at line 3, column 13: found undefined alias '...'"
    )
    path.write_text("auth: {api_keys: 3}\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: auth.api_keys: expected a list"):
        load_config(path)


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("[" * 5000 + "]" * 5000, 1),  # flow style
        ("limits: " + "{a: " * 5000 + "1" + "}" * 5000, 1),
        ("".join(" " * i + "a:\n" for i in range(5000)), 100),  # block style
    ],
    ids=["list", "mapping", "block"],
)
def test_a_file_nested_too_deep_is_a_config_error(text: str, line: int, tmp_path: Path) -> None:
    # Before: PyYAML recursed into a RecursionError traceback.
    path = tmp_path / "deep.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value) == (
        f"{path}: line {line}: nested more than {MAX_YAML_DEPTH} levels deep"
    )


def test_nesting_up_to_the_bound_is_read() -> None:
    assert parse_yaml("[" * MAX_YAML_DEPTH + "]" * MAX_YAML_DEPTH) is not None
    with pytest.raises(ConfigError, match="line 1: nested more than"):
        parse_yaml("[" * (MAX_YAML_DEPTH + 1) + "]" * (MAX_YAML_DEPTH + 1))


def test_files_a_config_names_nested_too_deep_are_config_errors(tmp_path: Path) -> None:
    # Before: RecursionError tracebacks from PyYAML and from the JSON decoder.
    (tmp_path / "keys.yaml").write_text("[" * 5000 + "]" * 5000)
    assert _error({"auth": {"api_keys_file": "keys.yaml"}}, tmp_path) == (
        f"auth.api_keys_file: {tmp_path / 'keys.yaml'}: line 1: nested more than "
        f"{MAX_YAML_DEPTH} levels deep"
    )
    (tmp_path / "jwks.json").write_text('{"keys": ' + "[" * 100_000 + "]" * 100_000 + "}")
    jwt = {"auth": {"jwt": [{"issuer": "https://i.test", "jwks_file": "jwks.json"}]}}
    assert _error(jwt, tmp_path) == (
        f"auth.jwt[0].jwks_file: {tmp_path / 'jwks.json'} is not a JWKS: a JSON object with a "
        "non-empty keys list"
    )


@pytest.mark.parametrize(
    ("text", "why"),
    [
        (JWKS.replace('"kty"', '"kid": "a", "kid": "b", "kty"'), "a key given twice in one object"),
        (JWKS[:-1] + ', "keys": []}', "a key given twice in one object ('keys')"),
        (JWKS[:-1] + ', "x": NaN}', "NaN is no JSON number"),
        (JWKS[:-1] + ', "x": -Infinity}', "-Infinity is no JSON number"),
        (JWKS[:-1] + ', "x": 1e400}', "a number past a double's range (1e400)"),
        (JWKS[:-1] + ', "x": "\\ud800"}', "a string with a lone surrogate"),
        (JWKS[:-1] + ', "x": ' + "9" * 309 + "}", "a number past a double's range"),
    ],
)
def test_a_jwks_envoy_cannot_parse_is_refused_at_load(tmp_path: Path, text: str, why: str) -> None:
    # Python's JSON decoder takes these, Envoy's does not: saxgw said the file was fine, and
    # Envoy exited at start ("Jwks is an invalid JSON"), naming no file (exit 1, not 2).
    (tmp_path / "jwks.json").write_text(text)
    jwt = {"auth": {"jwt": [{"issuer": "https://i.test", "jwks_file": "jwks.json"}]}}
    assert _error(jwt, tmp_path).startswith(
        f"auth.jwt[0].jwks_file: {tmp_path / 'jwks.json'} is not JSON Envoy reads: {why}"
    )


def test_a_config_nested_too_deep_stops_the_cli_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "deep.yaml"
    path.write_text("[" * 5000 + "]" * 5000)
    argv = ["envoy-config", "--gateway", "g:1", "--out", str(tmp_path / "out"), "--config"]
    done = subprocess.run(
        [sys.executable, "-m", "gateway.cli", *argv, str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == (
        f"saxgw: bad config: {path}: line 1: nested more than {MAX_YAML_DEPTH} levels deep\n"
    )


def test_exponent_numbers_are_numbers() -> None:
    # PyYAML reads YAML 1.1, whose floats need a dot: `1e6` was the string "1e6", and the
    # number it stood for failed with "expected a number".
    assert parse_yaml("a: 1e6\nb: -2.5E-1\nc: 1_000e3\nd: 7\ne: 1e\nf: e9\ng: 0x10\n") == {
        "a": 1e6,
        "b": -0.25,
        "c": 1e6,
        "d": 7,
        "e": "1e",
        "f": "e9",
        "g": 16,
    }


def test_a_key_set_twice_is_an_error(tmp_path: Path) -> None:
    # PyYAML keeps the last of two equal keys: a second `auth:` further down replaced the
    # first, and the keys it held were dropped without a word (a stack open to anyone).
    path = tmp_path / "saxgw.yaml"
    path.write_text(
        f"auth:\n  api_keys:\n    - {{key: {KEY}, client: ops, roles: [admin]}}\n"
        "limits: {idle_timeout: 5}\nauth: {}\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value) == f"{path}: line 5: 'auth' is set twice (first at line 1)"
    keys = tmp_path / "keys.yaml"
    keys.write_text(f"- {{key: {KEY}, client: ops, roles: [admin],\n   roles: [data]}}\n")
    assert _error({"auth": {"api_keys_file": "keys.yaml"}}, tmp_path) == (
        f"auth.api_keys_file: {keys}: line 2: 'roles' is set twice (first at line 1)"
    )
    # A merge key's values are defaults that the mapping's own keys override, as YAML has it.
    merged = "limits:\n  <<: {idle_timeout: 5, max_connections: 9}\n  idle_timeout: 7\n"
    path.write_text(merged)
    assert load_config(path).edge.limits.idle_timeout == 7


def test_a_key_is_a_name_even_where_yaml_reads_a_boolean(tmp_path: Path) -> None:
    # YAML 1.1 reads no, yes, on and off as booleans: a client named `no` was False, and a
    # mistyped section `on:` was reported as "True: unknown section".
    path = tmp_path / "saxgw.yaml"
    key = 'auth:\n  api_keys: [{key: sk-ops-0123456789abcdef, client: "no", roles: [data]}]\n'
    path.write_text(key + "clients:\n  no: {max_concurrent: 2}\n")
    assert load_config(path).edge.clients["no"].max_concurrent == 2
    path.write_text("on: {}\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value).startswith(f"{path}: on: unknown section; expected one of ")
    # Values keep YAML's booleans.
    path.write_text(
        "auth:\n  jwt:\n    - {issuer: https://i.test, jwks_file: j.json, require_expiration: no}\n"
    )
    (tmp_path / "j.json").write_text(JWKS)
    assert load_config(path).edge.jwt[0].require_expiration is False


def test_one_file_holds_the_edge_and_the_models() -> None:
    config = parse_config({**BASE, "models": {"/sax/test/lm": {"aliases": ["lm"]}}})
    assert config.edge.api_keys[0].client == "ops"
    assert config.models["/sax/test/lm"].aliases == ("lm",)


def test_access_settings_from_the_file() -> None:
    config = edge(
        {
            **BASE,
            # A JWT's subject as Auth0 writes it: a valid member, though no client id here.
            "auth": {
                # team-a's key: a config's client rules name a client id a credential names.
                "api_keys": [*BASE["auth"]["api_keys"], *TEAM_A["auth"]["api_keys"]],
                "groups": {"readers": ["ops", "team-a", "auth0|5f7c8e"]},
                "acl_cache_seconds": 30,
            },
            "clients": {
                "team-a": {
                    "models": ["/sax/test/*"],
                    "max_concurrent": 2,
                    "rate": {"requests_per_second": 0.5},
                }
            },
            "quotas": {"max_concurrent": 8, "model": {"max_in_flight": 4, "max_queued": 10}},
        }
    )
    access = access_settings(config)
    assert access.groups == {"readers": frozenset({"ops", "team-a", "auth0|5f7c8e"})}
    assert access.acl_cache_seconds == 30
    assert access_settings(edge(BASE)).acl_cache_seconds == 1  # the default
    assert access.client_models == {"team-a": ("/sax/test/*",)}
    assert access.client_max_concurrent == {"team-a": 2}
    assert access.default_max_concurrent == 8
    assert (access.model.max_in_flight, access.model.max_queued) == (4, 10)
    assert config.clients["team-a"].rate == Rate(requests_per_second=0.5, burst=1)


def test_limits_reach_the_gateway_processes_and_envoy() -> None:
    base = GatewaySettings(client=ClientSettings(sax_root="/r"), config_file="c.yaml")
    capped = parse_config({"limits": {"max_stream_duration": 30, "max_request_bytes": 1 << 20}})
    settings = gateway_settings(base, capped)
    assert (settings.default_timeout, settings.stream_timeout) == (30, 30)
    assert settings.max_watch_duration == 30  # a health Watch ends there, before Envoy's reset
    assert edge_values(capped.edge, (), Path("unused"))["EDGE_HCM_OPTIONS"].endswith(
        '"max_stream_duration": "35s"}'
    )
    assert settings.max_message_bytes == base.max_message_bytes  # a lower body limit: Envoy's
    larger = gateway_settings(base, parse_config({"limits": {"max_request_bytes": 64 << 20}}))
    assert larger.max_message_bytes == 64 << 20
    # Messages received, compressed ones as they inflate: what a body within the limit
    # transcodes to, the default's 32 MiB at most unless the limit is larger; and the room
    # an OpenAI body's framing takes (its Content-Type: up to the header limit, 60 KiB).
    framing = (60 << 10) + 64
    assert capped.edge.limits.message_framing_bytes == framing
    assert settings.max_receive_bytes == (6 << 20) + framing
    assert larger.max_receive_bytes == (64 << 20) + framing
    assert gateway_settings(base, ConfigFile()).max_receive_bytes == (32 << 20) + framing
    # The largest body limit allowed: gRPC takes a C int, and its framing overflowed it (every
    # gateway exited at start with an OverflowError).
    largest = gateway_settings(base, parse_config({"limits": {"max_request_bytes": 2**31 - 1}}))
    assert largest.max_receive_bytes == largest.max_message_bytes == 2**31 - 1
    # Headers: what Envoy lets through, twice over (gRPC's count and Envoy's own headers).
    assert settings.max_metadata_bytes == base.max_metadata_bytes == 128 << 10
    headers = parse_config({"limits": {"max_request_headers_kb": 1024}})
    assert gateway_settings(base, headers).max_metadata_bytes == 2048 << 10
    behind_two = parse_config({"limits": {"trusted_proxy_hops": 2}}).edge
    recycled = parse_config({"limits": {"max_connection_duration": 300}}).edge
    options = edge_values(recycled, (), Path("x"))["EDGE_HCM_OPTIONS"]
    assert '"max_connection_duration": "300s"' in options
    assert (
        "max_connection_duration" not in edge_values(capped.edge, (), Path("x"))["EDGE_HCM_OPTIONS"]
    )
    assert "xff_num_trusted_hops: 2" in edge_values(behind_two, (), Path("x"))["EDGE_HCM_OPTIONS"]
    unbounded = parse_config({"limits": {"max_stream_duration": 0}})
    settings = gateway_settings(base, unbounded)
    assert (settings.default_timeout, settings.stream_timeout) == (60, 600)
    assert settings.max_watch_duration == 0
    assert (
        "max_stream_duration" not in edge_values(unbounded.edge, (), Path("x"))["EDGE_HCM_OPTIONS"]
    )


def test_stream_keepalive_is_the_flags_else_the_files_else_ten_seconds() -> None:
    base = GatewaySettings(client=ClientSettings(sax_root="/r"))
    assert gateway_settings(base, ConfigFile()).stream_keepalive == 10
    filed = parse_config({"limits": {"stream_keepalive": 2.5}})
    assert gateway_settings(base, filed).stream_keepalive == 2.5
    assert gateway_settings(base, filed, stream_keepalive=0).stream_keepalive == 0
    assert "stream_keepalive" not in edge_values(filed.edge, (), Path("x"))["EDGE_HCM_OPTIONS"]
    with pytest.raises(ConfigError, match="stream_keepalive: must be at least 0"):
        parse_config({"limits": {"stream_keepalive": -1}})


def test_tls_files_must_be_pem_that_envoy_can_use(tmp_path: Path) -> None:
    # Given a file that is no PEM certificate or key, Envoy only logged "Filesystem config
    # update rejected" and reset every connection to the public port; saxgw said "Ready".
    ca = CertificateAuthority.generate()
    cert, key = ca.issue("localhost", server=True)
    _, other_key = ca.issue("other", server=True)
    encrypted = serialization.load_pem_private_key(key, None).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret"),
    )
    files = {
        "tls.crt": cert,
        "tls.key": key,
        "ca.crt": ca.pem(),
        "other.key": other_key,
        "encrypted.key": encrypted,
        "text": b"not PEM\n",
    }
    for name, pem in files.items():
        (tmp_path / name).write_bytes(pem)

    def tls(**files: str) -> dict[str, Any]:
        return {"tls": {"cert_file": "tls.crt", "key_file": "tls.key", **files}}

    parsed = parse_config(tls(client_ca_file="ca.crt"), tmp_path).edge.tls
    assert parsed is not None and parsed.client_ca_file == tmp_path / "ca.crt"
    path = tmp_path.resolve()
    for data, message in [
        (tls(cert_file="text"), f"tls.cert_file: {path}/text holds no PEM certificate"),
        (tls(cert_file="tls.key"), f"tls.cert_file: {path}/tls.key holds no PEM certificate"),
        (tls(key_file="text"), f"tls.key_file: {path}/text holds no PEM private key"),
        (tls(key_file="tls.crt"), f"tls.key_file: {path}/tls.crt holds no PEM private key"),
        (
            tls(key_file="other.key"),
            f"tls.key_file: {path}/other.key is not the key of tls.cert_file's certificate",
        ),
        (
            tls(key_file="encrypted.key"),
            f"tls.key_file: {path}/encrypted.key is encrypted; Envoy is given no passphrase",
        ),
        (
            tls(client_ca_file="text"),
            f"tls.client_ca_file: {path}/text holds no PEM certificate",
        ),
    ]:
        assert _error(data, tmp_path) == message
    # A certificate of a client id an API key names has that key's roles, as every key's.
    batch = {"subject": "CN=batch", "client": "ops", "roles": ["data"]}
    certificate = tls(client_ca_file="ca.crt")
    certificate["tls"]["certificate_clients"] = [batch]
    assert _error({**BASE, **certificate}, tmp_path) == (
        "tls.certificate_clients[0].roles: client ops has the roles admin at auth.api_keys[0]: "
        "Envoy checks roles by client id, so every credential of a client id has the same "
        "roles; give this one a client id of its own"
    )


def test_cors_origins_are_origins_as_browsers_send_them() -> None:
    # Envoy compares the Origin header exactly: an origin written another way matched no
    # request, and the page it was meant for got 403 with nothing at start to say why.
    # An IPv6 host as browsers write it (RFC 5952: [0:0::1] is sent as [::1]).
    written = ["HTTPS://App.Example.com:443", "http://localhost:3000", "*", "null"]
    written += ["http://[0:0:0:0:0:0:0:1]:3000", "https://[FD00:0::5]:443"]
    # A port with leading zeros as the number browsers send (:08443 matched no Origin).
    written += ["https://b.example.com:08443", "http://c.example.com:080"]
    assert edge({"cors": {"allowed_origins": written}}).cors_origins == (
        "https://app.example.com",
        "http://localhost:3000",
        "*",
        "null",
        "http://[::1]:3000",
        "https://[fd00::5]",
        "https://b.example.com:8443",
        "http://c.example.com",
    )
    expected = (
        "expected an origin as browsers send it, scheme://host[:port] without a path "
        "(https://app.example.com), or *"
    )
    for wrong in [
        "https://app.example.com/",
        "app.example.com",
        "https://a.example/x",
        "http://[1:::2]",
    ]:
        data = {"cors": {"allowed_origins": ["https://ok.example", wrong]}}
        assert _error(data) == f"cors.allowed_origins[1]: {expected}"
