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
