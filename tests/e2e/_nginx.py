"""A real nginx in front of a stack, as a reverse proxy: Debian's, installed by `make test`
(`make nginx`)."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from gateway.launch.processes import free_port
from tests._stacks import wait_listening


def _config(folder: Path, port: int, upstream: str, directives: str) -> str:
    """nginx's config: a reverse proxy on 127.0.0.1:``port`` with ``directives`` beside its
    `proxy_pass`, in the foreground, with its pid file, logs and temporary files in
    ``folder``."""
    paths = "\n".join(
        f"    {kind}_temp_path {folder / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    # As root, nginx's workers would otherwise run as `nobody`, who cannot enter the test's
    # folder (0700); not as root, nginx ignores the directive, with a warning.
    user = "user root;" if os.geteuid() == 0 else ""
    return f"""daemon off;
{user}
worker_processes 1;
pid {folder / "nginx.pid"};
error_log {folder / "error.log"};
events {{}}
http {{
    access_log {folder / "access.log"};
{paths}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass {upstream};
            {directives}
        }}
    }}
}}
"""


@contextmanager
def nginx(upstream: str, folder: Path, directives: str = "") -> Iterator[str]:
    """nginx proxying to ``upstream`` (a URL), with ``directives`` in its location; its URL."""
    binary = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/sbin")
    assert binary, "nginx is needed: `make test` (or `make nginx`) installs Debian's"
    port = free_port()
    config = folder / "nginx.conf"
    config.write_text(_config(folder, port, upstream, directives))
    log = folder / "stderr.log"
    with log.open("w") as stderr:
        process = subprocess.Popen(
            [binary, "-p", str(folder), "-c", str(config)],
            stdin=subprocess.DEVNULL,
            stdout=stderr,
            stderr=stderr,
        )
    try:
        wait_listening(process, port, log, "nginx", timeout=30)
        yield f"http://127.0.0.1:{port}"
    finally:
        # SIGTERM to the master (by its pid): it stops its worker and exits.
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
