"""TLS and mTLS on the public listener, and certificate renewal without a restart.

A second Envoy, rendered from the secure stack's config plus a `tls` section, fronts the
secure stack's gateway; the CA and certificates are made here with `cryptography`.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography import x509

from gateway.configfile import load_config
from gateway.edge import CertificateClient, Tls
from gateway.launch.processes import free_port
from tests.e2e._published import TEST_LM
from tests.e2e.security._credentials import CertificateAuthority, write_atomically
from tests.e2e.security._fronts import front_envoy
from tests.e2e.security.conftest import TEAM_A_KEY, SecureStack

pytestmark = pytest.mark.e2e

MODEL = "/sax/test/sec-tls"
TEAM_A = {"Authorization": f"Bearer {TEAM_A_KEY}"}


@dataclasses.dataclass
class TlsFront:
    port: int
    ca: CertificateAuthority
    certs: Path
    client: tuple[str, str]
    """Client certificate and key files signed by the CA, for CN=team-a (a known client)."""
    stranger: tuple[str, str]
    """The same for CN=stranger, which the config does not name."""

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def context(self, *, client_cert: bool = True, stranger: bool = False) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.certs / "ca.pem"))
        if client_cert:
            context.load_cert_chain(*(self.stranger if stranger else self.client))
        return context


@pytest.fixture(scope="module")
def front(secure: SecureStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsFront]:
    base = tmp_path_factory.mktemp("tls")
    certs = base / "certs"
    certs.mkdir()
    ca = CertificateAuthority.generate()
    (certs / "ca.pem").write_bytes(ca.pem())
    cert, key = ca.issue("saxgw server 1", server=True)
    (certs / "server.pem").write_bytes(cert)
    (certs / "server.key").write_bytes(key)
    client_cert, client_key = ca.issue("team-a", server=False)
    (base / "client.pem").write_bytes(client_cert)
    (base / "client.key").write_bytes(client_key)
    stranger_cert, stranger_key = ca.issue("stranger", server=False)
    (base / "stranger.pem").write_bytes(stranger_cert)
    (base / "stranger.key").write_bytes(stranger_key)
    tls = Tls(
        cert_file=certs / "server.pem",
        key_file=certs / "server.key",
        client_ca_file=certs / "ca.pem",
        # team-a's certificate identifies it without a key; the stranger's only connects.
        certificate_clients=(
            CertificateClient(subject="CN=team-a", client="team-a", roles=frozenset({"data"})),
        ),
    )
    edge = dataclasses.replace(secure.stack.envoy.edge, tls=tls)
    with front_envoy(secure, edge, base, "envoy-tls") as port:
        yield TlsFront(
            port,
            ca,
            certs,
            (str(base / "client.pem"), str(base / "client.key")),
            (str(base / "stranger.pem"), str(base / "stranger.key")),
        )


@pytest.fixture(scope="module")
def model(secure: SecureStack) -> Iterator[str]:
    overrides = {"text": " ".join(["tok"] * 12), "delay_ms": "150"}
    with secure.published(MODEL, overrides) as name:
        yield name


def _server_cn(front: TlsFront) -> str:
    return _served_cn(front.port, front.context())


def _served_cn(port: int, context: ssl.SSLContext) -> str:
    """The common name of the certificate the listener on ``port`` serves."""
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    name = x509.load_der_x509_certificate(der).subject
    return str(name.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value)


def test_tls_with_client_certificate(front: TlsFront, model: str) -> None:
    body = {"model": model, "query": "q"}
    with httpx.Client(base_url=front.url, verify=front.context(stranger=True), timeout=30) as http:
        assert http.get("/").status_code == 200
        response = http.post("/generate", json=body, headers=TEAM_A)
        assert response.status_code == 200, response.text
        # A certificate the config does not name connects, but does not identify a client.
        assert http.post("/generate", json=body).status_code == 401


def test_certificate_identifies_its_client(front: TlsFront, model: str) -> None:
    body = {"model": model, "query": "q"}
    with httpx.Client(base_url=front.url, verify=front.context(), timeout=30) as http:
        response = http.post("/generate", json=body)  # no key: the certificate says team-a
        assert response.status_code == 200, response.text
        publish = {"model": "/sax/test/sec-cert", "model_path": TEST_LM, "checkpoint": "None"}
        refused = http.post("/publish", json=publish)  # team-a has the data role only
        assert (refused.status_code, refused.json()["code"]) == (403, 7)


def _saxgw(front: TlsFront, *args: str) -> subprocess.CompletedProcess[str]:
    return _saxgw_at(f"127.0.0.1:{front.port}", *args)


def _saxgw_at(address: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "SAXGW_API_KEY"}
    argv = [sys.executable, "-m", "gateway.cli", "--gateway", address, *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, env=env)


def test_saxgw_speaks_tls_and_presents_its_certificate(front: TlsFront, model: str) -> None:
    ca = str(front.certs / "ca.pem")
    cert, key = front.client
    # The certificate says team-a (data role): no key needed.
    served = _saxgw(
        front,
        "--ca-cert",
        ca,
        "--client-cert",
        cert,
        "--client-key",
        key,
        "lm.generate",
        model,
        "q",
        "--terse",
    )
    assert (served.returncode, served.stderr) == (0, ""), served.stderr
    assert served.stdout == " ".join(["tok"] * 12) + "\n"
    # Plaintext to a TLS listener, or TLS without the certificate mTLS asks for: no call.
    for flags in ((), ("--ca-cert", ca)):
        refused = _saxgw(front, *flags, "--timeout", "5", "lm.generate", model, "q")
        assert refused.returncode == 1 and refused.stdout == "", (flags, refused)
        # saxgw's one error line and hint, without grpc's own log lines about the handshake
        assert refused.stderr.startswith("saxgw: UNAVAILABLE: "), (flags, refused.stderr)
        assert len(refused.stderr.splitlines()) == 2, refused.stderr
    # Flags that do not fit together: a usage error (exit 2), as argparse's are.
    half = _saxgw(front, "--client-cert", cert, "lm.generate", model, "q")
    assert (half.returncode, half.stdout) == (2, "")
    assert half.stderr == (
        "saxgw lm.generate: error: --client-cert and --client-key go together: give the "
        "certificate and its private key, both PEM files\n"
    )


def test_saxgw_hints_name_the_tls_flags_a_failure_wants(
    front: TlsFront, secure: SecureStack, tmp_path: Path
) -> None:
    tls, plain = f"127.0.0.1:{front.port}", secure.stack.grpc_address
    (tmp_path / "other-ca.pem").write_bytes(CertificateAuthority.generate("another CA").pem())
    ca, other_ca = str(front.certs / "ca.pem"), str(tmp_path / "other-ca.pem")
    cert, key = front.client
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    nothing = f"127.0.0.1:{free_port()}"
    cases = [
        (  # plaintext to the TLS edge: it hangs up at once
            tls,
            (),
            f"{tls} closed the connection at once: if it serves TLS (a config with a tls: "
            "section), add --tls, or --ca-cert FILE if a private CA signed its certificate",
        ),
        *(
            (  # TLS, but the edge's certificate is from a CA saxgw was not given
                tls,
                flags,
                f"saxgw does not trust the certificate of {tls}: pass the CA that signed it "
                "with --ca-cert FILE (--tls alone trusts the system's CA roots)",
            )
            for flags in (
                ("--tls",),
                ("--ca-cert", other_ca, "--client-cert", cert, "--client-key", key),
            )
        ),
        (  # TLS that the edge ends after the handshake: it wants a client certificate
            tls,
            ("--ca-cert", ca),
            f"{tls} ended the connection after the TLS handshake: it asks for a client "
            "certificate (mTLS); pass --client-cert and --client-key, signed by a CA it trusts",
        ),
        *(
            (  # files that make no TLS: it blamed the gateway ("is a gateway listening?")
                tls,
                flags,
                "saxgw could not set up TLS from its own files: --ca-cert must be a PEM "
                "certificate, --client-cert and --client-key a PEM certificate and its own key",
            )
            for flags in (
                ("--ca-cert", str(garbage)),
                ("--ca-cert", ca, "--client-cert", key, "--client-key", cert),
            )
        ),
        (  # TLS to a plaintext edge
            plain,
            ("--ca-cert", ca),
            f"{plain} does not serve TLS: leave out --tls, --ca-cert, --client-cert and "
            "--client-key",
        ),
        *(
            (  # nothing listening, TLS or not: the hint it always had
                nothing,
                flags,
                f"is a gateway listening on {nothing}? start one with `make up` (or `saxgw up`); "
                "if it is, its Sax cell may be down: try `saxgw ls`",
            )
            for flags in ((), ("--tls",))
        ),
    ]
    for address, flags, hint in cases:
        refused = _saxgw_at(address, *flags, "--timeout", "5", "ls", "/sax/test")
        assert (refused.returncode, refused.stdout) == (1, ""), (address, flags, refused)
        error, said = refused.stderr.splitlines()
        assert error.startswith("saxgw: UNAVAILABLE: failed to connect to all addresses; ")
        assert said == f"hint: {hint}", (address, flags)


def test_mtls_refuses_clients_without_a_certificate(front: TlsFront) -> None:
    refused = (httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError)
    with (
        httpx.Client(verify=front.context(client_cert=False), timeout=10) as http,
        pytest.raises(refused),
    ):
        http.get(front.url + "/")
    stranger = CertificateAuthority.generate("another CA")
    cert, key = stranger.issue("mallory", server=False)
    context = front.context(client_cert=False)
    path = front.certs.parent
    (path / "mallory.pem").write_bytes(cert)
    (path / "mallory.key").write_bytes(key)
    context.load_cert_chain(str(path / "mallory.pem"), str(path / "mallory.key"))
    with httpx.Client(verify=context, timeout=10) as http, pytest.raises(refused):
        http.get(front.url + "/")


def test_renewed_certificate_is_served_without_dropping_streams(
    front: TlsFront, model: str
) -> None:
    assert _server_cn(front) == "saxgw server 1"
    with httpx.Client(base_url=front.url, verify=front.context(), timeout=60) as http:
        body = {"model": model, "query": "q"}
        with http.stream("POST", "/generate_stream", json=body, headers=TEAM_A) as stream:
            lines = stream.iter_lines()
            first = next(line for line in lines if line.startswith("data:"))
            assert '"deltas"' in first
            cert, key = front.ca.issue("saxgw server 2", server=True)
            write_atomically(front.certs / "server.key", key)
            write_atomically(front.certs / "server.pem", cert)
            deadline = time.monotonic() + 30
            while _server_cn(front) != "saxgw server 2":
                assert time.monotonic() < deadline, "Envoy never served the renewed certificate"
                time.sleep(0.3)
            # The stream opened before the renewal runs to its end.
            rest = [line for line in lines if line.startswith("data:")]
            assert '"done":true' in rest[-1], rest[-1]


def test_a_kubernetes_secret_update_is_served_and_outlives_envoy(
    secure: SecureStack, tmp_path: Path
) -> None:
    """A Secret volume as kubelet lays it out: ``tls.crt -> ..data/tls.crt``, ``..data ->
    ..<timestamp>``; an update writes a new timestamped directory, renames a new ``..data``
    link over the old one and deletes the old directory. The config names ``tls/tls.crt``."""
    ca = CertificateAuthority.generate()
    volume = tmp_path / "tls"
    volume.mkdir()

    def project(version: str, common_name: str) -> None:
        cert, key = ca.issue(common_name, server=True)
        files = volume / f"..{version}"
        files.mkdir()
        (files / "tls.crt").write_bytes(cert)
        (files / "tls.key").write_bytes(key)
        (volume / "..data_tmp").symlink_to(files.name)
        (volume / "..data_tmp").replace(volume / "..data")

    project("2026_12_01", "saxgw server 1")
    for name in ("tls.crt", "tls.key"):
        (volume / name).symlink_to(f"..data/{name}")
    config = tmp_path / "saxgw.yaml"
    config.write_text("tls: {cert_file: tls/tls.crt, key_file: tls/tls.key}\n")
    tls = load_config(config).edge.tls
    edge = dataclasses.replace(secure.stack.envoy.edge, tls=tls)
    context = ssl.create_default_context(cafile=None, cadata=ca.pem().decode())
    with front_envoy(secure, edge, tmp_path / "first", "envoy-k8s-tls") as port:
        assert _served_cn(port, context) == "saxgw server 1"
        project("2026_12_02", "saxgw server 2")
        shutil.rmtree(volume / "..2026_12_01")
        deadline = time.monotonic() + 30
        while _served_cn(port, context) != "saxgw server 2":
            assert time.monotonic() < deadline, "Envoy never served the updated Secret"
            time.sleep(0.3)
    # An Envoy started again (a crash, its container restarted) from the same rendered
    # config serves the volume's files as they are now: the old directory is gone.
    with front_envoy(secure, edge, tmp_path / "again", "envoy-k8s-tls") as port:
        assert _served_cn(port, context) == "saxgw server 2"
