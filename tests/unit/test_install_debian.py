"""The make targets that install Debian packages (chromium, bench-tools): as root they run
apt-get; anyone else is told what to ask root for, and apt-get is not run."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "install-debian"


def _run(tmp_path: Path, uid: int, commands: str, *packages: str) -> tuple[int, str, str]:
    """install-debian as a user ``uid`` (a stub ``id``), with an ``apt-get`` that records its
    arguments: (exit status, stderr, what apt-get was asked)."""
    stubs = tmp_path / "stubs"
    stubs.mkdir(exist_ok=True)
    asked = tmp_path / "apt-get.args"
    (stubs / "id").write_text(f"#!/bin/sh\necho {uid}\n")
    (stubs / "apt-get").write_text(f'#!/bin/sh\necho "$@" >> {asked}\n')
    for stub in stubs.iterdir():
        stub.chmod(0o755)
    done = subprocess.run(
        ["bash", str(SCRIPT), commands, *packages],
        env={"PATH": f"{stubs}:/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    return done.returncode, done.stderr, asked.read_text() if asked.exists() else ""


def test_a_user_who_is_not_root_is_told_what_to_install(tmp_path: Path) -> None:
    # `make test` as an ordinary user on a machine without chromium ran apt-get, which failed
    # with "Could not open lock file /var/lib/apt/lists/lock - open (13: Permission denied)".
    missing = "saxgw-no-such-command"
    assert _run(tmp_path, 1000, f"sh {missing}", "chromium") == (
        1,
        f"install-debian: {missing} not found, and installing chromium needs root: "
        "run `sudo apt-get install chromium` (or this make target as root)\n",
        "",
    )
    # Commands that are there install nothing, whoever asks.
    assert _run(tmp_path, 1000, "sh", "chromium") == (0, "", "")
    assert _run(tmp_path, 0, f"sh {missing}", "wrk", "nghttp2-client") == (
        0,
        "",
        "update -qq\ninstall -y -qq wrk nghttp2-client\n",
    )


def test_the_make_targets_install_through_it() -> None:
    makefile = (ROOT / "Makefile").read_text()
    for target, line in (
        ("chromium", "scripts/install-debian chromium chromium"),
        ("bench-tools", 'scripts/install-debian "wrk h2load" wrk nghttp2-client'),
    ):
        recipe = re.search(rf"^{target}:.*\n((?:\t.*\n)+)", makefile, re.MULTILINE)
        assert recipe is not None, target
        assert recipe.group(1) == f"\t{line}\n"
    assert "apt-get" not in re.sub(r"^#.*\n", "", makefile.split("\ncontract:")[0], flags=re.M)
