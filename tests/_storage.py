"""Storage that fails for real, for the tests of storage failures.

- ``Emulator``: gcp-storage-emulator as a process of its own, keeping its objects on disk, so
  that a test can kill it (storage down) and start it again on what it stored.
- ``FaultyFront``: an HTTP proxy in front of it, on a real socket, that answers uploads with a
  status chosen by the test (403: GCS refuses the server's credentials; 503: GCS failing).
- ``frozen``: a local directory in which nothing can be created, even by root (``chattr +i``).
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from gateway.launch.processes import free_port
from tests._stacks import wait_listening

BUCKET = "sax-bucket"


class Emulator:
    """A GCS emulator process with one bucket, its objects under ``data``."""

    def __init__(self, data: Path) -> None:
        self.data = data
        self.port = free_port()
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        log = self.data / "emulator.log"
        argv = [sys.executable, "-m", "gcp_storage_emulator", "--data-dir", str(self.data)]
        argv += ["start", "--host", "127.0.0.1", "--port", str(self.port)]
        argv += ["--default-bucket", BUCKET, "--quiet"]
        with log.open("ab") as out:
            self._process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
        wait_listening(self._process, self.port, log, "the storage emulator", timeout=30)

    def kill(self) -> None:
        """``kill -9``: storage that is down, with nothing flushed or closed."""
        if self._process is not None and self._process.poll() is None:
            os.kill(self._process.pid, signal.SIGKILL)
            self._process.wait()
        self._process = None


class FaultyFront:
    """Forwards every request to port ``upstream`` of ``host``, where it listens too, except
    uploads while ``upload_status`` is set: those are answered with that status and GCS's JSON
    error body. While ``lose_upload_replies`` is set, uploads are forwarded and their answers
    lost (the connection closed instead). A request that cannot be forwarded (the emulator is
    down) gets its connection closed, as a dead server's would."""

    def __init__(self, upstream: int, host: str = "127.0.0.1") -> None:
        self.host = host
        self.upload_status: int | None = None
        self.lose_upload_replies = False
        front = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def _relay(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                status = front.upload_status
                if status is not None and self.path.startswith("/upload/"):
                    self._answer(status, _gcs_error(status))
                    return
                headers = {k: v for k, v in self.headers.items() if k.lower() != "connection"}
                try:
                    conn = http.client.HTTPConnection(host, upstream, timeout=10)
                    conn.request(self.command, self.path, body=body, headers=headers)
                    reply = conn.getresponse()
                    data = reply.read()
                    conn.close()
                except OSError:
                    self.close_connection = True
                    return
                if front.lose_upload_replies and self.path.startswith("/upload/"):
                    self.close_connection = True
                    return
                self.send_response(reply.status)
                for key, value in reply.getheaders():
                    if key.lower() not in ("connection", "transfer-encoding", "content-length"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _answer(self, status: int, data: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _relay

        self._server = ThreadingHTTPServer((host, 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


# What GCS says with some failures (the library quotes the message).
_GCS_MESSAGES = {
    401: "Anonymous caller does not have storage.objects.create access.",
    403: "sax-admin@example.iam.gserviceaccount.com does not have storage.objects.create "
    "access to the Google Cloud Storage object.",
    429: "The object exceeded the rate limit for object mutation operations.",
    503: "Backend Error",
}


def _gcs_error(status: int) -> bytes:
    """The JSON body GCS sends with a failed call."""
    message = _GCS_MESSAGES.get(status, "Internal Error")
    error = {"code": status, "message": message, "errors": [{"message": message}]}
    return json.dumps({"error": error}).encode()


#: How a write into a `frozen` directory fails, as an OSError's text starts: the immutable flag
#: refuses root with EPERM, a mode without write permission anyone else with EACCES.
FROZEN_ERROR = (
    "[Errno 1] Operation not permitted" if os.geteuid() == 0 else "[Errno 13] Permission denied"
)


@contextmanager
def frozen(directory: Path) -> Iterator[None]:
    """Nothing can be created in ``directory`` (its files stay readable) until the block ends.
    Root ignores a mode without write permission, so as root it is ``chattr +i``, which binds
    root too; anyone else is bound by the mode."""
    if os.geteuid() != 0:
        mode = directory.stat().st_mode
        directory.chmod(mode & ~0o222)
        try:
            yield
        finally:
            directory.chmod(mode)
        return
    subprocess.run(["chattr", "+i", str(directory)], check=True, capture_output=True)
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(directory)], check=True)
