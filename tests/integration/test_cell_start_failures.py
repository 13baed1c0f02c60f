"""A cell that cannot start (its storage refuses it, its port is taken, another admin serves
it) says why in a line, not a traceback: the admin server on its own, the embedded cell (what
`saxgw up` runs) around it, and `saxgw up` around that."""

from __future__ import annotations

import fcntl
import signal
import socket
import subprocess
import sys
from pathlib import Path

from tests.integration._up_run import run_up


def _run(module: str, sax_root: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", module, f"--sax-root={sax_root}", *flags]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


def test_an_admin_whose_sax_root_refuses_it_exits_with_one_line(tmp_path: Path) -> None:
    # It ended in a StorageError traceback, and the embedded cell in a RuntimeError one.
    (tmp_path / "sax").write_bytes(b"")  # a file where the cells' directory should be
    admin = _run("gateway.cell.admin", tmp_path, "--port=0")
    assert admin.returncode == 1
    config = tmp_path / "sax" / "test" / "config.proto"
    why = f"writing {config} failed: [Errno 20] Not a directory: '{tmp_path}/sax/test'"
    assert admin.stderr.splitlines()[-1] == f"python -m gateway.cell.admin: could not start: {why}"
    assert "Traceback" not in admin.stderr

    cell = _run("gateway.cell", tmp_path, "--admin-port=0", "--model-servers=0")
    assert cell.returncode == 1
    assert cell.stderr.splitlines()[-1] == (
        "python -m gateway.cell: admin#1 exited before it came to listen"
    )
    assert "Traceback" not in cell.stderr


def test_an_admin_that_cannot_write_its_location_exits_with_one_line(tmp_path: Path) -> None:
    # It serves by then (location.proto is written last); SAX_ROOT then refuses the file, as
    # a read-only or full volume does (here a directory stands where it goes). The line was
    # followed by a traceback: the started server, never stopped, was left to the garbage
    # collector ("Exception ignored in: <function Server.__del__ ...> ... Event loop is
    # closed"), in the log of every restart the cell attempted meanwhile.
    location = tmp_path / "sax" / "test" / "location.proto"
    location.mkdir(parents=True)
    admin = _run("gateway.cell.admin", tmp_path, "--port=0")
    assert admin.returncode == 1
    assert admin.stderr.splitlines()[-1].startswith(
        f"python -m gateway.cell.admin: could not start: writing {location} failed: "
        "[Errno 21] Is a directory"
    ), admin.stderr
    assert "Traceback" not in admin.stderr
    assert "Exception ignored" not in admin.stderr


def test_an_admin_whose_port_is_taken_exits_with_one_line(tmp_path: Path) -> None:
    # It ended in an UnavailableError traceback, as if a call had failed.
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        admin = _run("gateway.cell.admin", tmp_path, f"--port={port}")
        cell = _run("gateway.cell", tmp_path, f"--admin-port={port}", "--model-servers=0")
    assert admin.returncode == 1
    assert admin.stderr.splitlines()[-1].startswith(
        f"python -m gateway.cell.admin: cannot listen on 127.0.0.1:{port} (is another process "
        "using it? choose another port)"
    )
    assert "Traceback" not in admin.stderr
    assert cell.returncode == 1
    assert "Traceback" not in cell.stderr


def test_a_second_up_on_a_live_cells_sax_root_says_where_its_log_is(tmp_path: Path) -> None:
    # Refused rightly, but its hint read "see --log-dir for each process's log" with no
    # --log-dir given, and an asyncio warning came with it: "Unknown child process pid N,
    # will report returncode 255" (the launcher's SIGTERM to its exited admin reaped it
    # before asyncio's child watcher could; seen in 17 of 30 starts under CPU load).
    # With --log-dir, it now repeats the cause from the log instead of a hint about ports.
    sax_root = tmp_path / "sax-root"
    admin = [sys.executable, "-m", "gateway.cell.admin", f"--sax-root={sax_root}", "--port=0"]
    first = subprocess.Popen(
        [*admin, f"--fs-root={tmp_path / 'fs-root'}", "--log-level=WARNING"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert first.stdout is not None
        address = first.stdout.readline().split()[1]  # "listening ADDRESS"
        refusal = (
            f"python -m gateway.cell.admin: another admin server of /sax/test answers at "
            f"{address} (its location.proto names it): two admins of one cell overwrite each "
            "other's saved state; stop it first"
        )
        second = run_up(sax_root)
        assert (second.returncode, second.stdout) == (1, "")
        started, *rest = second.stderr.splitlines()
        assert " gateway.launch.processes INFO started cell (pid " in started
        assert rest == [
            refusal,
            "python -m gateway.cell: admin#1 exited before it came to listen",
            "saxgw: cell exited with status 1 while starting. Hint: its log is in the output "
            "above (without --log-dir, every process logs to stderr).",
        ]

        logs = tmp_path / "logs"
        third = run_up(sax_root, f"--log-dir={logs}")
        assert (third.returncode, third.stdout) == (1, "")
        # The cause, from the log's last lines, and where the rest is; no advice about ports,
        # which the hint gave whatever the cause (here another admin, not a port).
        cell_log = (logs / "cell.log").read_text().splitlines()
        assert cell_log[-2:] == [
            refusal,
            "python -m gateway.cell: admin#1 exited before it came to listen",
        ]
        tail = [f"  {line}" for line in cell_log if line.strip()][-5:]
        assert third.stderr.splitlines()[-len(tail) - 2 :] == [
            "saxgw: cell exited with status 1 while starting; its last lines:",
            *tail,
            f"Hint: the whole log is {logs}/cell.log.",
        ]
    finally:
        first.terminate()
        first.communicate(timeout=30)


def _admin(sax_root: Path, fs_root: Path) -> subprocess.Popen[str]:
    """An admin server on ``sax_root`` and ``fs_root``, on a port of its own; its first line
    on stdout is ``listening ADDRESS``."""
    flags = [f"--sax-root={sax_root}", "--port=0", f"--fs-root={fs_root}", "--log-level=WARNING"]
    command = [sys.executable, "-m", "gateway.cell.admin", *flags]
    return subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


def _held(address: str, sax_root: Path, fs_root: Path, *, hung: bool = False) -> str:
    """Why a second admin of /sax/test on ``fs_root`` does not start: the one at ``address``
    (of ``sax_root``) holds its state, answering or ``hung``."""
    how = ", and does not answer (stopped or hung)" if hung else ""
    return (
        f"python -m gateway.cell.admin: the admin server of /sax/test at {address} (SAX_ROOT "
        f"{sax_root}) keeps its state under {fs_root} too{how}: two admins of one cell "
        f"overwrite each other's saved state; {'kill' if hung else 'stop'} it first, or create "
        "the cell with an --fs-root of its own"
    )


def test_a_second_cell_of_that_name_on_the_same_fs_root_is_refused(tmp_path: Path) -> None:
    # Two `saxgw up` of /sax/test on two SAX_ROOTs given one --fs-root both started: each
    # restored the other's models, its next save dropped the other's from state.proto
    # (a restart lost them), and its start removed the other's save in progress.
    fs_root = tmp_path / "fs-root"
    first = _admin(tmp_path / "one", fs_root)
    try:
        assert first.stdout is not None
        address = first.stdout.readline().split()[1]  # "listening ADDRESS"
        second = _run("gateway.cell.admin", tmp_path / "two", "--port=0", f"--fs-root={fs_root}")
        assert second.returncode == 1
        assert second.stderr.splitlines() == [_held(address, tmp_path / "one", fs_root)]
    finally:
        first.terminate()
        first.communicate(timeout=30)
    # Once it has gone, its lock goes with it (a killed admin's too: the kernel drops it).
    again = _admin(tmp_path / "two", fs_root)
    try:
        assert again.stdout is not None
        assert again.stdout.readline().startswith("listening ")
    finally:
        again.terminate()
        again.communicate(timeout=30)


def test_a_hung_admin_of_another_sax_root_on_the_same_fs_root_is_not_taken_over(
    tmp_path: Path,
) -> None:
    # Stopped (SIGSTOP), it was taken for gone, as a hung admin of the cell's own SAX_ROOT is:
    # the second started without the lock. Resumed, the first served on (its own SAX_ROOT
    # still named it), and every 5 s each wrote its state over the other's: a publish the
    # second acknowledged was lost.
    fs_root = tmp_path / "fs-root"
    first = _admin(tmp_path / "one", fs_root)
    try:
        assert first.stdout is not None
        address = first.stdout.readline().split()[1]  # "listening ADDRESS"
        first.send_signal(signal.SIGSTOP)
        try:
            second = _run(
                "gateway.cell.admin", tmp_path / "two", "--port=0", f"--fs-root={fs_root}"
            )
        finally:
            first.send_signal(signal.SIGCONT)
        assert second.returncode == 1
        assert second.stderr.splitlines() == [_held(address, tmp_path / "one", fs_root, hung=True)]
    finally:
        first.terminate()
        first.communicate(timeout=30)


def test_a_state_locked_by_a_holder_that_wrote_no_name_is_not_taken_over(tmp_path: Path) -> None:
    # An admin started on a full disk holds the lock without its name in it. Taken for a hung
    # admin of this SAX_ROOT, it was taken over: the two wrote their states over each other's,
    # and a publish the second acknowledged was lost.
    fs_root = tmp_path / "fs-root"
    lock = fs_root / "sax" / ".test.admin.lock"
    lock.parent.mkdir(parents=True)
    with lock.open("w") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        second = _run("gateway.cell.admin", tmp_path / "two", "--port=0", f"--fs-root={fs_root}")
    assert second.returncode == 1
    assert second.stderr.splitlines() == [
        f"python -m gateway.cell.admin: the state of /sax/test under {fs_root} is locked by a "
        f"process that did not write who it is in {lock} (its disk full?): two admins of one "
        "cell overwrite each other's saved state; stop it first (`fuser` names it), or create "
        "the cell with an --fs-root of its own"
    ]
