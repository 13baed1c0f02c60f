"""``saxgw gateway`` and ``saxgw ops`` that cannot listen exit with one line naming the
address, the process that holds the port (as `saxgw up` names it), and what to do: status 1,
as `saxgw up` exits for a busy port. Before, a traceback: grpc's ``RuntimeError: Failed to
bind to address``, 32 lines; the ops server's ``OSError: [Errno 98]``."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.launch.ports import holder
from gateway.launch.processes import free_port
from tests.integration._up_run import run_up


def _run(command: str, *flags: str, sax_root: Path) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "gateway.cli", command, "--log-format=text", *flags]
    if command == "gateway":
        argv += ["--sax-root", str(sax_root)]
    else:  # ops: with nothing to scrape it would refuse to start (exit 2) before it listens
        argv += ["--metrics-dir", str(sax_root)]
    # Started, it would serve until killed: the timeout fails the test instead.
    return subprocess.run(argv, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("command", ["gateway", "ops"])
def test_a_busy_port_is_one_line_naming_its_holder(command: str, tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        who = holder(port)
        assert who is not None and who.startswith(f"pid {os.getpid()} (")  # this test
        done = _run(command, "--port", str(port), sax_root=tmp_path)
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr == (
        f"saxgw {command}: cannot listen on 127.0.0.1:{port}: port {port} is in use by {who}; "
        "stop it, or choose another --port\n"
    )


@pytest.mark.parametrize("command", ["gateway", "ops"])
@pytest.mark.parametrize(
    ("host", "reason"),
    [
        ("192.0.2.1", "Cannot assign requested address"),  # TEST-NET-1: no machine's address
        ("no-such-host.invalid", "Name or service not known"),
    ],
)
def test_an_address_not_of_this_machine_is_one_line(
    command: str, host: str, reason: str, tmp_path: Path
) -> None:
    port = free_port()
    done = _run(command, "--host", host, "--port", str(port), sax_root=tmp_path)
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr == (
        f"saxgw {command}: cannot listen on {host}:{port}: {reason}; give --host an address "
        "of this machine, and a --port this user may bind\n"
    )


def test_a_gateway_listens_on_an_ipv6_host(tmp_path: Path) -> None:
    # `--host ::1` went to grpc as "::1:PORT", which it could not parse: Failed to bind.
    port = free_port()  # free on 127.0.0.1, and so most likely on ::1
    argv = [sys.executable, "-m", "gateway.cli", "gateway", "--log-format=json"]
    argv += ["--host", "::1", "--port", str(port), "--sax-root", str(tmp_path)]
    with subprocess.Popen(argv, stdout=subprocess.PIPE, text=True) as proc:
        try:
            assert proc.stdout is not None
            assert f"gateway gRPC listening on [::1]:{port}" in proc.stdout.readline()
            with socket.create_connection(("::1", port), timeout=10):
                pass
        finally:
            proc.terminate()
    assert proc.returncode == 0


def test_a_gateway_refuses_a_sax_root_that_is_a_file(tmp_path: Path) -> None:
    # As `saxgw up` and `serve` refuse it (one check, gateway/common/flags.py). Before, it
    # started: `saxgw ls` listed no cells and exited 0, and a cell's calls were UNAVAILABLE
    # after 5 s each, "no Sax cell under SAX_ROOT" logged at every retry.
    a_file = tmp_path / "file"
    a_file.write_text("")
    done = _run("gateway", "--port", str(free_port()), sax_root=a_file)
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == f"saxgw gateway: --sax-root {a_file} is not a directory\n"


def test_up_refuses_an_ipv4_mapped_listen_address_before_anything_starts(tmp_path: Path) -> None:
    # Python binds it (its IPv6 sockets take IPv4 too), so `saxgw up` started the cell and the
    # gateway, and then Envoy, whose IPv6 sockets are IPv6 only, stopped the stack: "cannot
    # bind '[::ffff:127.0.0.1]:8888': Invalid argument".
    done = run_up(tmp_path / "root", "--listen", "::ffff:127.0.0.1")
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr.splitlines()[-1] == (
        "saxgw: --listen ::ffff:7f00:1 is an IPv4-mapped IPv6 address, which Envoy cannot "
        "listen on: give the IPv4 address itself (127.0.0.1)"
    )


@pytest.mark.parametrize("limit", [16, 24, 63])
def test_up_refuses_an_open_file_limit_too_low_to_run_before_anything_starts(
    tmp_path: Path, limit: int
) -> None:
    # At 16 a gateway crashed at start (SIGSEGV, in grpc), at 24 it spun on "File descriptor
    # limit reached" until the start timed out; below 64, Envoy took a handful of clients at
    # most. prlimit sets the hard limit too, which a process may raise again only
    # with CAP_SYS_RESOURCE (saxgw tries): root's is dropped here, as a container's is.
    wrapper = ["prlimit", f"--nofile={limit}:{limit}", "--"]
    if os.geteuid() == 0:
        wrapper = ["setpriv", "--bounding-set", "-sys_resource", "--", *wrapper]
    done = run_up(tmp_path / "root", wrapper=wrapper)
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr == (
        f"saxgw: the open-file limit is {limit} (`ulimit -n`, and its hard limit, `ulimit -Hn`):"
        " a stack needs at least 64, and one per client connection beyond that; raise it "
        "(`ulimit -n 4096`, or a container's nofile ulimit)\n"
    )
    assert not (tmp_path / "root").exists()


def test_up_refuses_a_path_that_is_not_utf8_before_anything_starts(tmp_path: Path) -> None:
    # The cell failed to start with a traceback: UnicodeEncodeError, "surrogates not allowed".
    latin1 = Path(os.fsdecode(bytes(tmp_path / "lat") + b"\xe9n"))
    done = run_up(tmp_path / "root", f"--sax-root={latin1}/root")  # the last one counts
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr.splitlines()[-1] == (
        f"saxgw: --sax-root {tmp_path}/lat\\xe9n/root is not valid UTF-8: give a path whose "
        "name is UTF-8 text"
    )
    assert not latin1.exists() and not (tmp_path / "fs-root").exists()
