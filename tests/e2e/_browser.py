"""Runs a driver of tests/e2e/browser/ (Node + playwright-core over Debian's headless
`chromium`, both installed by `make test`) and reads the JSON it prints."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
DRIVERS = Path(__file__).parent / "browser"


def run_in_chromium(driver: str, args: list[str], home: Path) -> Any:
    """``node browser/<driver> args...`` from the repository root, ``home`` its HOME; fails
    the test if node or chromium is missing or the driver exits non-zero."""
    node, chromium = shutil.which("node"), shutil.which("chromium")
    assert node and chromium, "node and chromium are needed: `make test` installs both"
    result = subprocess.run(
        [node, str(DRIVERS / driver), *args],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "CHROMIUM": chromium, "HOME": str(home)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)
