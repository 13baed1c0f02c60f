"""The README's walk-throughs, run as written, in order, twice in a row (issue #11).

Only the address changes: the stack listens on a free port instead of localhost:8888, `saxgw`
is told so with its global `--gateway` flag, and the vision example writes into a temporary
directory. A command followed by `# {json}` (without "...") must print exactly that JSON.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

from gateway.launch.stack import Stack

README = Path(__file__).resolve().parents[2] / "README.md"
SECTIONS = ("## The seed's walk-through", "## saxutil's verbs, over the gateway")


def _blocks(text: str) -> list[str]:
    blocks = []
    for title in SECTIONS:
        section = text[text.index(title) :]
        section = section[: section.find("\n## ", len(title))]
        blocks += re.findall(r"```sh\n(.*?)```", section, flags=re.S)
    return blocks


def _commands(block: str) -> list[tuple[str, str | None]]:
    """(command, expected output or None) in the order they appear."""
    commands: list[tuple[str, str | None]] = []
    pending = ""
    for line in block.splitlines():
        if not pending and line.startswith("# "):
            if commands and commands[-1][1] is None:
                commands[-1] = (commands[-1][0], line[2:])
            continue
        pending += line + "\n"
        try:
            shlex.split(pending, comments=True)
        except ValueError:
            continue  # an open quote: the command goes on
        if not pending.rstrip().endswith("\\"):
            if pending.strip():
                commands.append((pending, None))
            pending = ""
    assert not pending, pending
    return commands


def _run(command: str, stack: Stack, images: Path) -> str:
    address = stack.grpc_address
    shell = (
        command.replace("localhost:8888", address)
        .replace(".venv/bin/saxgw ", f"{sys.executable} -m gateway.cli --gateway {address} ")
        .replace("/tmp/saxgw-images", str(images))
    )
    interactive = "Ctrl-C" in command  # runs until stopped: stop it after a while
    if interactive:
        shell = f"timeout 5 {shell}"
    done = subprocess.run(
        ["bash", "-c", shell], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == (124 if interactive else 0), (command, done.stdout, done.stderr)
    return done.stdout


def test_readme_walk_throughs_work_verbatim_twice(stack: Stack, tmp_path: Path) -> None:
    commands = [c for block in _blocks(README.read_text()) for c in _commands(block)]
    assert len(commands) > 15
    for round_ in range(2):
        for command, expected in commands:
            out = _run(command, stack, tmp_path / f"images-{round_}")
            if expected is not None and "..." not in expected:
                assert json.loads(out) == json.loads(expected), (round_, command, out)
