"""A `--config` file that parses but that Envoy cannot use stops `saxgw up|serve` at start with
one line naming the key and the file (exit status 2, as every config error), instead of
Envoy's dump of its whole config and "envoy exited". Real `saxgw` processes; the JWKS rules
are checked against the real Envoy binary (``--mode validate``)."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from gateway.edge import EdgeConfig
from gateway.edge._jwks import jwks_problem
from gateway.edge._schema import JwtIssuer
from gateway.launch.envoy import EnvoySettings, envoy_binary, render
from gateway.launch.processes import free_port


def _b64(number: int, size: int = 0) -> str:
    data = number.to_bytes(size or (number.bit_length() + 7) // 8 or 1, "big")
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _rsa(**extra: object) -> dict[str, object]:
    numbers = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    n = numbers.public_numbers().n
    return {"kty": "RSA", "n": _b64(n), "e": "AQAB", **extra}


def _ec(curve: ec.EllipticCurve, crv: str, *, off_curve: bool = False) -> dict[str, object]:
    point = ec.generate_private_key(curve).public_key().public_numbers()
    return {"kty": "EC", "crv": crv, "x": _b64(point.x), "y": _b64(point.y + off_curve)}


_RSA = _rsa()
_NOT_A_JWKS = "is not a JWKS: a JSON object with a non-empty keys list"

# (id, JWKS text, what jwks_problem says; None: Envoy starts with it).
CASES: list[tuple[str, str, str | None]] = [
    (id_, text if isinstance(text, str) else json.dumps(text), problem)
    for id_, text, problem in [
        ("rsa", {"keys": [_RSA]}, None),
        ("rsa-ps256", {"keys": [_rsa(alg="PS256")]}, None),
        ("rsa-e3", {"keys": [{**_RSA, "e": "Aw"}]}, None),
        ("rsa-512-bits", {"keys": [{**_RSA, "n": _b64(1 << 511 | 1)}]}, None),
        ("rsa-padded", {"keys": [{**_RSA, "n": str(_RSA["n"]) + "=="}]}, None),
        ("rsa-spaces", {"keys": [{**_RSA, "n": " ".join(str(_RSA["n"]))}]}, None),
        ("ec-p256", {"keys": [_ec(ec.SECP256R1(), "P-256")]}, None),
        ("ec-p384", {"keys": [_ec(ec.SECP384R1(), "P-384")]}, None),
        ("ec-p521", {"keys": [_ec(ec.SECP521R1(), "P-521")]}, None),
        ("oct", {"keys": [{"kty": "oct", "alg": "HS256", "k": "c2VjcmV0"}]}, None),
        ("okp", {"keys": [{"kty": "OKP", "crv": "Ed25519", "x": _b64(5, 32)}]}, None),
        # Envoy skips keys it cannot use while one is usable (an IdP's encryption keys).
        ("one-usable", {"keys": [{"kty": "RSA", "use": "enc", "alg": "RSA-OAEP"}, _RSA]}, None),
        ("not-json", "{nope", _NOT_A_JWKS),
        ("no-keys", {"keys": []}, _NOT_A_JWKS),
        (
            "rsa-n-not-base64url",
            {"keys": [{"kty": "RSA", "n": "not-base64!!", "e": "AQAB"}]},
            "keys[0]: 'n' is not base64url",
        ),
        (
            "rsa-standard-base64",
            {"keys": [{**_RSA, "n": str(_RSA["n"]).replace("_", "/").replace("-", "+")}]},
            "keys[0]: 'n' is not base64url",
        ),
        ("rsa-bad-padding", {"keys": [{**_RSA, "n": str(_RSA["n"]) + "="}]}, "keys[0]: 'n' "),
        ("rsa-e5", {"keys": [{**_RSA, "e": "BQ"}]}, "keys[0]: 'e' is not 3 or 65537"),
        (
            "rsa-511-bits",
            {"keys": [{**_RSA, "n": _b64(1 << 510 | 1)}]},
            "keys[0]: 'n' is no RSA modulus (odd, 512 to 16384 bits)",
        ),
        ("rsa-even", {"keys": [{**_RSA, "n": _b64(1 << 1023)}]}, "keys[0]: 'n' is no RSA"),
        ("rsa-no-e", {"keys": [{"kty": "RSA", "n": _RSA["n"]}]}, "keys[0]: no 'e'"),
        ("rsa-n-number", {"keys": [{**_RSA, "n": 5}]}, "keys[0]: 'n' is not a string"),
        (
            "rsa-hs256",
            {"keys": [{**_RSA, "alg": "HS256"}]},
            "keys[0]: alg 'HS256' is not RS* or PS* for an RSA key",
        ),
        ("no-kty", {"keys": [{"n": "AQAB"}]}, "keys[0]: no 'kty' string"),
        (
            "kty-foo",
            {"keys": [{"kty": "foo"}]},
            "keys[0]: kty 'foo' is not one of RSA, EC, oct, OKP",
        ),
        ("not-objects", {"keys": [1, "x"]}, "keys[0]: not a JSON object"),
        (
            "ec-off-curve",
            {"keys": [_ec(ec.SECP256R1(), "P-256", off_curve=True)]},
            "keys[0]: 'x' and 'y' are not a point of P-256",
        ),
        (
            "ec-wrong-curve",
            {"keys": [_ec(ec.SECP384R1(), "P-256")]},
            "keys[0]: 'x' and 'y' are not a point of P-256",
        ),
        (
            "ec-alg-crv",
            {"keys": [{**_ec(ec.SECP256R1(), "P-384"), "alg": "ES256"}]},
            "keys[0]: crv 'P-384' does not fit alg 'ES256'",
        ),
        (
            "ec-secp256k1",
            {"keys": [{"kty": "EC", "crv": "secp256k1", "x": "AA", "y": "AA"}]},
            "keys[0]: crv 'secp256k1' is not a curve of P-256, P-384 or P-521",
        ),
        ("oct-empty", {"keys": [{"kty": "oct", "k": ""}]}, "keys[0]: 'k' is empty"),
        ("oct-one-char", {"keys": [{"kty": "oct", "k": "c"}]}, "keys[0]: 'k' is not base64url"),
        (
            "okp-short",
            {"keys": [{"kty": "OKP", "crv": "Ed25519", "x": "AAAA"}]},
            "keys[0]: 'x' is not 32 bytes",
        ),
        (
            "okp-x25519",
            {"keys": [{"kty": "OKP", "crv": "X25519", "x": _b64(5, 32)}]},
            "keys[0]: 'crv' is not Ed25519",
        ),
    ]
]


def _envoy_starts_with(jwks: Path, tmp_path: Path) -> bool:
    issuer = JwtIssuer(issuer="https://i.test", jwks_file=jwks, jwks=jwks.read_text())
    edge = EdgeConfig(jwt=(issuer,))
    config = tmp_path / "envoy.yaml"
    config.write_text(render(EnvoySettings(gateway_endpoints=["127.0.0.1:1"], edge=edge)))
    validate = [str(envoy_binary()), "--mode", "validate", "-c", str(config)]
    done = subprocess.run(validate, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 or "invalid local jwks" in done.stdout + done.stderr, done.stderr
    return done.returncode == 0


@pytest.mark.parametrize(("text", "problem"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_jwks_problem_is_what_envoy_refuses(text: str, problem: str | None, tmp_path: Path) -> None:
    jwks = tmp_path / "jwks.json"
    jwks.write_text(text)
    found = jwks_problem(text)
    if problem is None or problem == _NOT_A_JWKS:
        assert found == problem
    else:
        assert found is not None and found.startswith(f"has no key Envoy can use ({problem}")
    if problem != _NOT_A_JWKS:  # the loader's old check already refused those
        assert _envoy_starts_with(jwks, tmp_path) is (problem is None)


_OCT = '{"kty": "oct", "k": "c2VjcmV0LWtleQ"'


@pytest.mark.parametrize(
    "text",
    [
        '{"keys": [' + _OCT + ', "kid": "a", "kid": "b"}]}',
        '{"keys": [' + _OCT + '}], "keys": [' + _OCT + "}]}",
        '{"keys": [' + _OCT + '}], "x": NaN}',
        '{"keys": [' + _OCT + '}], "x": Infinity}',
        '{"keys": [' + _OCT + '}], "x": 1e400}',
        '{"keys": [' + _OCT + '}], "x": "\\ud800"}',
        '{"keys": [' + _OCT + '}], "x": ' + "9" * 309 + "}",
    ],
    ids=["key-twice", "keys-twice", "nan", "infinity", "1e400", "lone-surrogate", "big-int"],
)
def test_json_envoy_cannot_parse_is_no_jwks(text: str, tmp_path: Path) -> None:
    # Python's decoder takes these: the loader passed them, and Envoy exited at start.
    jwks = tmp_path / "jwks.json"
    jwks.write_text(text)
    assert str(jwks_problem(text)).startswith("is not JSON Envoy reads: ")
    assert not _envoy_starts_with(jwks, tmp_path)


def _saxgw(command: str, config: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    ports = [f"--port={free_port()}", f"--envoy-admin-port={free_port()}"]
    ports += [f"--gateway-ports={free_port()}", f"--ops-port={free_port()}"]
    if command == "up":
        ports += [f"--admin-port={free_port()}", f"--model-server-ports={free_port()}"]
    (tmp_path / "sax-root").mkdir(exist_ok=True)
    argv = [sys.executable, "-m", "gateway.cli", command, f"--config={config}", *ports]
    argv += [f"--sax-root={tmp_path / 'sax-root'}", f"--log-dir={tmp_path / 'logs'}"]
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=tmp_path)


@pytest.mark.parametrize("command", ["up", "serve"])
def test_an_unusable_jwks_stops_saxgw_in_one_line(command: str, tmp_path: Path) -> None:
    (tmp_path / "jwks.json").write_text('{"keys": [{"kty": "RSA", "n": "n0t!", "e": "AQAB"}]}')
    config = tmp_path / "saxgw.yaml"
    config.write_text("auth:\n  jwt:\n    - {issuer: https://i.test, jwks_file: jwks.json}\n")
    done = _saxgw(command, config, tmp_path)
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == (
        f"saxgw: bad config: {config}: auth.jwt[0].jwks_file: {tmp_path / 'jwks.json'} has no "
        "key Envoy can use (keys[0]: 'n' is not base64url)\n"
    )
    assert not (tmp_path / "logs").exists()  # nothing was started


def _envoy_config(config: Path, out: Path) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "gateway.cli", "envoy-config", f"--config={config}"]
    argv += ["--gateway=127.0.0.1:1", f"--out={out}"]
    return subprocess.run(argv, capture_output=True, text=True, timeout=120)


def test_long_and_short_durations_reach_envoy_as_it_reads_them(tmp_path: Path) -> None:
    # `{:g}` rendered 1000000 (11.6 days) as "1e+06s", and Envoy refused to start.
    config = tmp_path / "saxgw.yaml"
    config.write_text(
        "limits: {idle_timeout: 1000000, max_stream_duration: 1000000, "
        "request_headers_timeout: 0.001}\n"
    )
    assert _envoy_config(config, tmp_path / "out").returncode == 0
    text = (tmp_path / "out" / "envoy.yaml").read_text()
    assert '"idle_timeout": "1000000s", "max_stream_duration": "1000005s"' in text
    assert 'request_headers_timeout: "0.001s"' in text  # the least: under it, refused
    validate = [str(envoy_binary()), "--mode", "validate", "-c", str(tmp_path / "out/envoy.yaml")]
    done = subprocess.run(validate, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout[-2000:]


# Envoy's ranges (uint32 fields, max_request_headers_kb <= 8192), gRPC's C-int message size,
# and no .nan/.inf: each passed the loader and stopped Envoy (or the gateway) at start.
@pytest.mark.parametrize(
    ("yaml_text", "message"),
    [
        (
            "limits: {max_request_bytes: 4294967295}",
            "limits.max_request_bytes: must be at most 2147483647",
        ),
        (
            "limits: {max_request_headers_kb: 8193}",
            "limits.max_request_headers_kb: must be at most 8192",
        ),
        (
            "limits: {max_connections: 4294967296}",
            "limits.max_connections: must be at most 4294967295",
        ),
        (
            "limits: {trusted_proxy_hops: 4294967296}",
            "limits.trusted_proxy_hops: must be at most 4294967295",
        ),
        ("limits: {idle_timeout: .nan}", "limits.idle_timeout: expected a finite number"),
        (
            "limits: {max_stream_duration: .inf}",
            "limits.max_stream_duration: expected a finite number",
        ),
        (
            "limits: {max_stream_duration: 1000000001}",
            "limits.max_stream_duration: must be at most 1000000000",
        ),
        (
            "quotas: {rate: {requests_per_second: 1, burst: 4294967296}}",
            "quotas.rate.burst: must be at most 4294967295",
        ),
        (
            "quotas: {rate: {requests_per_second: 4294967296}}",
            "quotas.rate.requests_per_second: must be at most 4294967295",
        ),
        (
            # A token every 1e10 s: Envoy refused the fill interval ("Duration out-of-range").
            "quotas: {rate: {requests_per_second: 1e-10}}",
            "quotas.rate.requests_per_second: must be 0.000000001 or more (a call every "
            "1000000000 s), the slowest rate Envoy takes",
        ),
    ],
)
def test_numbers_beyond_envoys_range_stop_saxgw_in_one_line(
    yaml_text: str, message: str, tmp_path: Path
) -> None:
    config = tmp_path / "saxgw.yaml"
    config.write_text(yaml_text + "\n")
    done = _envoy_config(config, tmp_path / "out")
    assert (done.returncode, done.stderr) == (2, f"saxgw: bad config: {config}: {message}\n")


def test_the_largest_numbers_allowed_start_envoy(tmp_path: Path) -> None:
    config = tmp_path / "saxgw.yaml"
    config.write_text(
        "limits: {max_request_bytes: 2147483647, max_request_headers_kb: 8192, "
        "max_connections: 4294967295, trusted_proxy_hops: 4294967295, "
        "idle_timeout: 1000000000, max_stream_duration: 1000000000, "
        "request_headers_timeout: 1000000000}\n"
        "quotas: {rate: {requests_per_second: 4294967295, burst: 4294967295}}\n"
        "clients: {ops: {rate: {requests_per_second: 0.000000001}}}\n"
        "auth: {api_keys: [{key: sk-ops-0123456789abcdef, client: ops, roles: [data]}]}\n"
    )
    assert _envoy_config(config, tmp_path / "out").returncode == 0
    validate = [str(envoy_binary()), "--mode", "validate", "-c", str(tmp_path / "out/envoy.yaml")]
    done = subprocess.run(validate, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout[-2000:]


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"saxgw.yaml": b"\xff\xfe"}, "not UTF-8 text"),
        (
            {"saxgw.yaml": b"auth: {api_keys_file: keys.yaml}\n", "keys.yaml": b"\xff"},
            "auth.api_keys_file: {dir}/keys.yaml: not UTF-8 text",
        ),
        (
            {"saxgw.yaml": b"models: {/sax/test/lm: {tokenizer: t.model}}\n", "t.model": b"no"},
            "models./sax/test/lm.tokenizer: {dir}/t.model is not a SentencePiece model",
        ),
        (
            {"saxgw.yaml": b'models: {/sax/test/lm: {chat_template: "{% if %}"}}\n'},
            "models./sax/test/lm.chat_template: Expected an expression, got 'end of statement "
            "block'",
        ),
        (
            # Every line commented out (or a file emptied by accident) ran the stack with no
            # authentication at all, as without --config.
            {"saxgw.yaml": b"# auth:\n#   api_keys_file: keys.yaml\n\n"},
            "holds no settings (it is empty, or only comments): leave out --config to run "
            "with the defaults (no authentication), or write {{}} for them",
        ),
    ],
    ids=["config-not-utf8", "keys-not-utf8", "tokenizer", "chat-template", "no-settings"],
)
def test_files_saxgw_cannot_use_stop_serve_in_one_line(
    files: dict[str, bytes], message: str, tmp_path: Path
) -> None:
    # Before: a traceback (UnicodeDecodeError), or every gateway process failing at start
    # with one ("gateway-0 exited"), exit 1.
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    config = tmp_path / "saxgw.yaml"
    done = _saxgw("serve", config, tmp_path)
    expected = message.format(dir=tmp_path)
    assert (done.returncode, done.stderr) == (2, f"saxgw: bad config: {config}: {expected}\n")
    assert not (tmp_path / "logs").exists()  # nothing was started
