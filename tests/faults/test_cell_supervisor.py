"""`python -m gateway.cell` keeps its admin and model servers running: through restarts that
fail, and after another admin took the cell over from its hung admin."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import grpc
from saxml.protobuf import admin_pb2, admin_pb2_grpc

from gateway.cell._files import parse_location
from gateway.launch.ports import listener_pid
from gateway.launch.processes import free_port
from tests._grpc import sync_channel


def _until(condition: Callable[[], bool], timeout: float, what: str, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"waited {timeout:.0f} s for {what}:\n{log.read_text()}"
        time.sleep(0.1)


def _cell(root: Path, log: Path, admin_port: int, server_port: int) -> subprocess.Popen[str]:
    """`python -m gateway.cell` with one model server, once both listen."""
    command = [sys.executable, "-m", "gateway.cell", f"--sax-root={root}", "--log-format=text"]
    command += [f"--admin-port={admin_port}", f"--model-server-ports={server_port}"]
    with log.open("w") as stderr:
        cell = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=stderr, text=True)
    assert cell.stdout is not None
    for line in cell.stdout:
        if line.startswith("model-server "):
            return cell
    raise AssertionError(f"the cell ended before it served:\n{log.read_text()}")


def _models(address: str) -> list[str]:
    with sync_channel(address) as channel:
        listed = admin_pb2_grpc.AdminStub(channel).List(admin_pb2.ListRequest(), timeout=5)
    return sorted(m.model.model_id for m in listed.published_models)


def test_an_admin_that_another_took_over_from_stops_and_comes_back(tmp_path: Path) -> None:
    # The cell's admin hangs (SIGSTOP, a host cut off); another admin starts elsewhere and
    # takes the cell over (location.proto names it), then dies; the first one resumes.
    # Before, it served on as if nothing had happened: location.proto named the dead admin
    # for good (every admin call UNAVAILABLE, model servers joining nobody), and the cell's
    # supervisor, which saw its admin alive, never restarted it. Now it notices the takeover
    # and stops; restarted, it finds the other admin dead, takes the cell back, with what
    # the other one saved.
    root, log = tmp_path / "root", tmp_path / "cell.log"
    admin_port, server_port, other_port = free_port(), free_port(), free_port()
    location = root / "sax" / "test" / "location.proto"
    cell = _cell(root, log, admin_port, server_port)
    other: subprocess.Popen[bytes] | None = None
    first = listener_pid(admin_port)
    assert first is not None
    try:
        os.kill(first, signal.SIGSTOP)
        command = [sys.executable, "-m", "gateway.cell.admin", f"--sax-root={root}"]
        with (tmp_path / "other.log").open("w") as stderr:
            other = subprocess.Popen([*command, f"--port={other_port}"], stderr=stderr)
        named = f"127.0.0.1:{other_port}"
        _until(lambda: parse_location(location.read_bytes()) == named, 30, "a takeover", log)
        with sync_channel(named) as channel:
            admin_pb2_grpc.AdminStub(channel).Publish(
                admin_pb2.PublishRequest(
                    model=admin_pb2.Model(
                        model_id="/sax/test/later",
                        model_path="sax_gateway.testing.TestLM",
                        checkpoint_path="None",
                        requested_num_replicas=0,
                    )
                ),
                timeout=10,
            )
        other.kill()
        other.wait()
    finally:
        os.kill(first, signal.SIGCONT)
    try:
        mine = f"127.0.0.1:{admin_port}"
        _until(lambda: parse_location(location.read_bytes()) == mine, 60, "the cell back", log)
        _until(lambda: listener_pid(admin_port) not in (None, first), 30, "a new admin", log)
        assert _models(mine) == ["/sax/test/later"]
        assert "names another admin server, 127.0.0.1:" in log.read_text()
    finally:
        if other is not None and other.poll() is None:
            other.kill()
        cell.terminate()
        cell.communicate(timeout=30)


def _addresses(admin: str, model: str) -> list[str]:
    """Where ``model`` is served, as the admin at ``admin`` says; none while it is away."""
    try:
        with sync_channel(admin) as channel:
            listed = admin_pb2_grpc.AdminStub(channel).List(
                admin_pb2.ListRequest(model_id=model), timeout=2
            )
    except grpc.RpcError:
        return []
    return [a for m in listed.published_models for a in m.modelet_addresses]


def test_a_cell_whose_servers_all_die_together_serves_its_models_again_at_once(
    tmp_path: Path,
) -> None:
    # The admin and every model server killed at once (the OOM killer, a container's
    # processes): the restarted admin waited its adopt wait (30 s) for servers that might
    # bring its models back, though each had died with it and came back empty: every model
    # was down for 29 s, where the processes were back in 1.4 s.
    root, log = tmp_path / "root", tmp_path / "cell.log"
    admin_port, server_port = free_port(), free_port()
    admin, model = f"127.0.0.1:{admin_port}", "/sax/test/back"
    cell = _cell(root, log, admin_port, server_port)
    try:
        with sync_channel(admin) as channel:
            published = admin_pb2.Model(
                model_id=model,
                model_path="sax_gateway.testing.TestLM",
                checkpoint_path="None",
                requested_num_replicas=1,
            )
            admin_pb2_grpc.AdminStub(channel).Publish(
                admin_pb2.PublishRequest(model=published), timeout=10
            )
        _until(lambda: bool(_addresses(admin, model)), 30, "the model served", log)
        pids = [listener_pid(admin_port), listener_pid(server_port)]
        for pid in pids:
            assert pid is not None
            os.kill(pid, signal.SIGKILL)
        killed = time.monotonic()
        _until(lambda: listener_pid(admin_port) not in (None, *pids), 20, "a new admin", log)
        # Well inside the adopt wait (30 s) it no longer waits out.
        left = 20 - (time.monotonic() - killed)
        _until(lambda: bool(_addresses(admin, model)), left, "the model served again", log)
    finally:
        cell.terminate()
        cell.communicate(timeout=30)


def test_the_cell_restarts_its_admin_after_a_restart_that_failed(tmp_path: Path) -> None:
    # The admin is killed, and its restart fails: SAX_ROOT refuses its location.proto (here
    # a directory stands where the file goes; a read-only or full volume does the same).
    # Before, that failure ended the cell's supervisor with no word: once the storage was
    # mended the admin never came back, nor did a model server that died later, while the
    # cell process ran on, so `saxgw up` saw nothing to restart either.
    root, log = tmp_path / "root", tmp_path / "cell.log"
    admin_port, server_port = free_port(), free_port()
    command = [sys.executable, "-m", "gateway.cell", f"--sax-root={root}", "--log-format=text"]
    command += [f"--admin-port={admin_port}", f"--model-server-ports={server_port}"]
    with log.open("w") as stderr:
        cell = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=stderr, text=True)
    try:
        assert cell.stdout is not None
        for line in cell.stdout:
            if line.startswith("model-server "):
                break
        location = root / "sax" / "test" / "location.proto"
        admin = listener_pid(admin_port)
        assert admin is not None
        os.kill(admin, signal.SIGKILL)
        location.unlink()
        location.mkdir()  # before the restart: it waits 0.5 s first
        failed = "restarting the admin server failed: admin#2 exited before it came to listen"
        _until(lambda: failed in log.read_text(), 30, "the failed restart", log)
        # Which process, and how it ended (the line said only "exited": a kill from outside
        # and a crash read alike).
        assert f"the admin server (pid {admin}) exited with status -9; restarting" in (
            log.read_text()
        )
        location.rmdir()  # mended: the next attempt starts
        # The admin listens, then names itself in location.proto: a loaded host read the
        # file between the two once, where this asserted it at once.
        _until(
            lambda: listener_pid(admin_port) is not None and location.is_file(),
            30,
            "the admin to come back and write location.proto",
            log,
        )

        server = listener_pid(server_port)
        assert server is not None
        os.kill(server, signal.SIGKILL)
        _until(
            lambda: listener_pid(server_port) not in (None, server),
            30,
            "the model server to come back",
            log,
        )
        ended = f"model server 127.0.0.1:{server_port} (pid {server}) exited with status -9; "
        assert ended in log.read_text()
    finally:
        cell.terminate()
        cell.communicate(timeout=30)


def test_a_cell_stopped_or_killed_while_it_starts_leaves_its_servers_quiet(
    tmp_path: Path,
) -> None:
    # Ctrl-C reached every server too (one process group): each still starting (importing)
    # printed a KeyboardInterrupt traceback, and the cell exited 130. SIGTERM killed the cell
    # at once (status -15), as SIGKILL does: each server it had started then met the closed
    # pipe with a BrokenPipeError traceback (and another at exit, its server never stopped).
    admin_port, server_ports = free_port(), (free_port(), free_port())
    for stop in ("SIGTERM", "Ctrl-C", "SIGKILL"):
        root = tmp_path / stop
        command = [sys.executable, "-m", "gateway.cell", f"--sax-root={root}", "--log-format=text"]
        command += [f"--admin-port={admin_port}", "--model-servers=2"]
        command += ["--model-server-ports=" + ",".join(map(str, server_ports))]
        cell = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        assert cell.stderr is not None
        lines = []
        for line in cell.stderr:  # the model servers start once the admin listens
            lines.append(line)
            if " admin server for /sax/test listening on " in line:
                break
        if stop == "Ctrl-C":
            os.killpg(cell.pid, signal.SIGINT)  # as a terminal sends it: to the whole group
        else:
            cell.send_signal(getattr(signal, stop))
        # Until every server has closed the stderr it shares: the killed cell's servers exit
        # at their stdin's end.
        out, err = cell.communicate(timeout=30)
        log = "".join(lines) + err
        assert (stop, cell.returncode, out) == (stop, -9 if stop == "SIGKILL" else 0, ""), log
        assert "Traceback" not in log, log
        assert stop == "SIGKILL" or "stopped while starting" in log, log
        assert [p for p in (admin_port, *server_ports) if listener_pid(p) is not None] == []


def test_the_cells_address_lines_are_json_records_when_its_logs_are(tmp_path: Path) -> None:
    # `saxgw up --log-format json --log-dir` sends the cell's stdout to cell.log with its
    # logs: its address lines (`SAX_ROOT=...`, `admin ...`, `model-server ...`) were the
    # only lines there a JSON log pipeline could not read, three at every start.
    admin_port, server_port = free_port(), free_port()
    command = [sys.executable, "-m", "gateway.cell", f"--sax-root={tmp_path}", "--log-format=json"]
    command += [f"--admin-port={admin_port}", f"--model-server-ports={server_port}"]
    cell = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert cell.stdout is not None
        lines = [cell.stdout.readline() for _ in range(3)]
    finally:
        cell.terminate()
        cell.communicate(timeout=30)
    records = [json.loads(line) for line in lines]
    assert [(r["level"], r["logger"], r["message"]) for r in records] == [
        ("INFO", "gateway.cell", f"SAX_ROOT={tmp_path}"),
        ("INFO", "gateway.cell", f"admin /sax/test 127.0.0.1:{admin_port}"),
        ("INFO", "gateway.cell", f"model-server 127.0.0.1:{server_port}"),
    ]
