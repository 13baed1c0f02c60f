"""The banner of `saxgw up|serve` (gateway/cli/_running.py): what to try, TLS flags included;
its stop signals."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from gateway.cli._restored import Restored
from gateway.cli._running import (
    NAMED_AT_MOST,
    _print_banner,
    _report_restored,
    _supervise,
    banner,
)
from gateway.client import ClientSettings
from gateway.common.logs import JsonFormatter
from gateway.config import GatewaySettings
from gateway.edge import EdgeConfig, Tls
from gateway.launch.envoy import EnvoySettings
from gateway.launch.stack import Stack, StackSettings

ARGS = argparse.Namespace(otlp_endpoint=None, embedded=False, sax_root="/r")


@contextmanager
def _stack(tls: Tls | None) -> Iterator[Stack]:
    envoy = EnvoySettings(gateway_endpoints=(), listen_port=61688, edge=EdgeConfig(tls=tls))
    gateway = GatewaySettings(client=ClientSettings(sax_root="/r"))
    stack = Stack(StackSettings(gateway=gateway, gateway_ports=(61651,), envoy=envoy))
    try:
        yield stack
    finally:
        stack.close()  # nothing started: removes its private directory


def _tries(lines: list[str]) -> list[str]:
    return lines[lines.index("Ready. Try:") + 1 : -2]


def test_the_banner_of_a_plaintext_listener_has_no_tls_flags() -> None:
    with _stack(None) as stack:
        assert _tries(banner(ARGS, stack)) == [
            "  curl -s http://127.0.0.1:61688/listcells",
            "  .venv/bin/saxgw --gateway 127.0.0.1:61688 ls",
        ]


def test_the_banner_says_when_direct_mode_is_on() -> None:
    with _stack(None) as stack:
        assert not any(line.startswith("direct mode") for line in banner(ARGS, stack))
        stack.envoy = dataclasses.replace(stack.envoy, direct_dir="/d")
        assert "direct mode                POST /generate straight to model servers" in banner(
            ARGS, stack
        )


@pytest.mark.parametrize("mtls", [False, True])
def test_the_banner_of_a_tls_listener_names_the_flags_it_wants(mtls: bool) -> None:
    # saxgw without a TLS flag speaks plaintext: the banner's `ls` failed against TLS.
    ca = Path("/etc/saxgw/ca.crt") if mtls else None
    tls = Tls(cert_file=Path("/etc/saxgw/tls.crt"), key_file=Path("/k"), client_ca_file=ca)
    with _stack(tls) as stack:
        if mtls:
            assert _tries(banner(ARGS, stack)) == [
                "  (CA.pem: the CA that signed tls.cert_file; CERT.pem, KEY.pem: a client "
                "certificate signed by tls.client_ca_file, and its key)",
                "  curl -s --cacert CA.pem --cert CERT.pem --key KEY.pem "
                "https://127.0.0.1:61688/listcells",
                "  .venv/bin/saxgw --gateway 127.0.0.1:61688 --ca-cert CA.pem "
                "--client-cert CERT.pem --client-key KEY.pem ls",
            ]
        else:
            assert _tries(banner(ARGS, stack)) == [
                "  (CA.pem: the CA that signed tls.cert_file)",
                "  curl -s --cacert CA.pem https://127.0.0.1:61688/listcells",
                "  .venv/bin/saxgw --gateway 127.0.0.1:61688 --ca-cert CA.pem ls",
            ]


def test_the_banner_names_the_saxgw_that_runs_it_and_the_stacks_own_docs(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Installed from the wheel (a venv of its own, a container, pipx), the banner still said
    # `.venv/bin/saxgw ...`, which was not there, and sent the reader to README.md and
    # docs/api.md, files of a clone the installed user does not have.
    bin_dir = tmp_path / "venv" / "bin"
    bin_dir.mkdir(parents=True)
    python = bin_dir / "python"
    monkeypatch.setattr(sys, "executable", str(python))
    monkeypatch.setenv("PATH", "/nonexistent")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    def tries() -> list[str]:
        with _stack(None) as stack:
            lines = banner(ARGS, stack)
        return lines[lines.index("Ready. Try:") + 2 : -1]

    # Run as `python -m gateway.cli` from an interpreter without the script beside it.
    monkeypatch.chdir(elsewhere)
    assert tries() == [
        f"  {python} -m gateway.cli --gateway 127.0.0.1:61688 ls",
        "  every route, to try in a browser: http://127.0.0.1:61688/docs",
    ]
    script = bin_dir / "saxgw"
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    assert tries()[0] == f"  {script} --gateway 127.0.0.1:61688 ls"  # not on PATH
    monkeypatch.chdir(tmp_path)
    assert tries()[0] == "  venv/bin/saxgw --gateway 127.0.0.1:61688 ls"  # `make up`'s
    monkeypatch.setenv("PATH", f"/nonexistent:{bin_dir}")
    assert tries()[0] == "  saxgw --gateway 127.0.0.1:61688 ls"  # the saxgw on PATH


class _Waiting:
    """A stack whose /healthz stays 503, a supervisor with nothing to restart, and a stop
    event that never waits and is set after ``ticks`` checks: `_supervise`'s minute of
    waiting in no time."""

    http_url = "http://127.0.0.1:61688"

    def __init__(self, ticks: int) -> None:
        self.ticks = ticks

    def wait_healthy(self, timeout: float) -> bool:
        return False

    def tick(self) -> None:
        pass

    def is_set(self) -> bool:
        self.ticks -= 1
        return self.ticks < 0

    def wait(self, timeout: float) -> bool:
        return False


@pytest.mark.parametrize(
    ("log_dir", "where"),
    [(None, "the logs above"), ("/var/log/saxgw", "the logs in /var/log/saxgw")],
)
def test_still_waiting_points_where_the_logs_are(
    capsys: pytest.CaptureFixture[str], log_dir: str | None, where: str
) -> None:
    # With --log-dir nothing is above the line: the children's logs are files in that folder.
    waiting = _Waiting(ticks=70)
    args = argparse.Namespace(log_dir=log_dir, embedded=False, sax_root="gs://b/sax-root")
    _supervise(args, waiting, waiting, waiting)  # type: ignore[arg-type]
    # The root is named: `serve` may have taken it from SAX_ROOT, which no command line shows.
    assert capsys.readouterr().err.splitlines() == [
        "saxgw: still waiting for the gateway to reach the Sax cell under SAX_ROOT"
        f" gs://b/sax-root (http://127.0.0.1:61688/healthz is 503); see {where}"
    ]


# `saxgw up`'s main thread waits in `stop.event.wait`; Python runs a signal's handler between
# any two of its bytecodes. This calls the real SIGTERM handler at every line the wait runs,
# as a signal landing there would.
_SIGNAL_AT_EVERY_LINE = """
import signal, sys
from gateway.cli._running import StopSignals

stop = StopSignals()
handler = signal.getsignal(signal.SIGTERM)

def at_every_line(frame, event, arg):
    handler(signal.SIGTERM, frame)
    return at_every_line

sys.settrace(at_every_line)
stopped = stop.event.wait(5)
sys.settrace(None)
print(stopped)
"""


def test_a_stop_signal_is_heard_wherever_the_wait_is() -> None:
    # With a threading.Event, a signal that came while Event.wait held its lock (it does
    # while it runs Python code) deadlocked saxgw up on that lock in its handler's Event.set:
    # it ignored that SIGTERM, or Ctrl-C, and every later one, until SIGKILL.
    program = [sys.executable, "-c", _SIGNAL_AT_EVERY_LINE]
    try:
        done = subprocess.run(program, capture_output=True, text=True, timeout=20, check=False)
    except subprocess.TimeoutExpired:
        pytest.fail("the stop signal's handler deadlocked the waiting main thread")
    assert (done.returncode, done.stdout, done.stderr) == (0, "True\n", "")


def test_a_big_cells_restored_models_are_named_ten_to_a_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # The ready line named every model: a restart of a big cell printed 96 names, ~3 KB, on
    # one line (the line for models that do not serve named ten already).
    ready = [(f"/sax/test/m{i:03d}", 1, 1) for i in range(96)]
    _report_restored(Restored(ready=ready, failed=[], waiting=[]), "/sax/test")
    named = ", ".join(f"/sax/test/m{i:03d} (1/1)" for i in range(NAMED_AT_MOST))
    line = f"saxgw: restored models ready: {named} and {96 - NAMED_AT_MOST} more\n"
    assert capsys.readouterr().out == line


def test_a_stdout_whose_reader_left_does_not_stop_the_stack(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # `saxgw up | head -1`, a pager quit, a terminal closed: the banner's (or the restored
    # models') print raised BrokenPipeError out of the supervising loop, and saxgw stopped
    # the whole stack and exited 1 with a traceback. Its stdout only informs; it serves on.
    read, write = os.pipe()
    os.close(read)
    with open(write, "w") as gone:
        monkeypatch.setattr(sys, "stdout", gone)
        with _stack(None) as stack:
            _print_banner(ARGS, stack)
        _report_restored(Restored(ready=[("/sax/test/a", 1, 1)], failed=[], waiting=[]), "c")
        print("and the flush at exit", flush=True)  # goes nowhere, quietly


def test_the_banner_and_restored_lines_are_json_records_when_the_logs_are(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # `saxgw up|serve --log-format json` (or auto, off a terminal) printed them as text on
    # stdout, where Envoy's JSON access log goes without --log-dir: a JSON log pipeline
    # reading it met some 14 lines that did not parse at every start.
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    monkeypatch.setattr(logging.getLogger(), "handlers", [handler])
    with _stack(None) as stack:
        _print_banner(ARGS, stack)
        shown = banner(ARGS, stack)
    _report_restored(Restored(ready=[("/sax/test/a", 1, 1)], failed=[], waiting=[]), "c")
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(r["level"], r["logger"], r["message"]) for r in records] == [
        ("INFO", "saxgw", "\n".join(shown)),
        ("INFO", "saxgw", "restored models ready: /sax/test/a (1/1)"),
    ]


_HANGUP_UNDER_NOHUP = """
import os, signal, time
from gateway.cli._running import StopSignals

signal.signal(signal.SIGHUP, signal.SIG_IGN)  # as nohup starts it
stop = StopSignals()
os.kill(os.getpid(), signal.SIGHUP)
time.sleep(0.2)
os.kill(os.getpid(), signal.SIGTERM)
print(stop.event.wait(5), stop.hangup, signal.getsignal(signal.SIGHUP) == signal.SIG_IGN)
"""


def test_a_hangup_nohup_ignores_stays_ignored() -> None:
    # `nohup saxgw up &` then logging out: saxgw put its own handler over the SIG_IGN nohup
    # had set, and stopped the stack at the hangup nohup was there to keep from it.
    program = [sys.executable, "-c", _HANGUP_UNDER_NOHUP]
    done = subprocess.run(program, capture_output=True, text=True, timeout=20, check=False)
    assert (done.returncode, done.stdout, done.stderr) == (0, "True False True\n", "")
