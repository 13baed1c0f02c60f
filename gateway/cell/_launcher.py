"""`EmbeddedCell`: an admin server and N model servers, each its own OS process.

    settings = CellSettings(sax_root=str(tmp_path / "root"), num_model_servers=2,
                            poll_interval=0.2, server_dead_after=1.0)
    async with EmbeddedCell(settings) as cell:
        cell.admin_address, [s.address for s in cell.model_servers]
        cell.model_servers[0].kill()            # SIGKILL: the admin moves its replicas
        await cell.restart_admin(kill=True)     # kill -9 and restart on the same port

Processes, not tasks, so that a test can `kill -9` a server and so that servers do not share a
GIL with the test (or the benchmark). The children tell the launcher what they do through
event lines on stdout (see `_process`); their logs go straight to this process's stderr.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections import Counter
from collections.abc import Callable
from typing import Self

from gateway.cell._args import settings_to_argv
from gateway.cell._errors import CellStartError
from gateway.cell.modelserver.loaded import KEPT_CANCELLATIONS, Cancellation
from gateway.cell.settings import CellSettings
from gateway.common.closing import AsyncClosing
from gateway.common.interpreter import module_argv
from gateway.common.logs import LogFormat

_log = logging.getLogger("gateway.cell")

#: Seconds a stopped server gets to exit before it is killed.
STOP_TIMEOUT = 5.0


class _ServerProcess:
    """One child server process and the events it reported."""

    def __init__(self, *, module: str, argv: list[str], name: str) -> None:
        self._module = module
        self._argv = argv
        self.name = name
        self.address = ""
        self.joins = 0
        # The last KEPT_CANCELLATIONS, as the model server keeps them: kept all, every stream
        # a caller left grew `saxgw up`'s cell process by ~200 bytes for good. Counted by
        # model in full, for the waits.
        self.cancellations: list[Cancellation] = []
        self.cancelled: Counter[str] = Counter()
        self._process: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()
        self.exited = False

    @property
    def pid(self) -> int:
        if self._process is None:
            raise RuntimeError(f"{self.name} is not started")
        return self._process.pid

    async def exit_note(self) -> str:
        """``(pid N) exited with status S`` for a log line, as `saxgw up`'s supervisor says of
        its children (-9: SIGKILL); the status waits up to a second for its exit, since its
        output may close before it exits."""
        if self._process is None:
            return "exited"
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(1.0):  # not wait_for, as in `wait_until`
                await self._process.wait()
        status = self._process.returncode
        said = "" if status is None else f" with status {status}"
        return f"(pid {self._process.pid}) exited{said}"

    async def start(self, *, timeout: float) -> None:
        self._process = await asyncio.create_subprocess_exec(
            *module_argv(self._module),
            *self._argv,
            "--exit-on-stdin-eof",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            # Ctrl-C in a terminal reaches only the launcher, which stops its servers in
            # order: it reached each server too, a KeyboardInterrupt traceback in each that
            # was still starting (importing).
            start_new_session=True,
        )
        self._reader = asyncio.create_task(self._read_events(), name=f"{self.name} events")
        await self.wait_until(lambda: bool(self.address), timeout=timeout, what="to listen")

    async def _read_events(self) -> None:
        assert self._process is not None and self._process.stdout is not None
        async for raw in self._process.stdout:
            kind, _, rest = raw.decode(errors="replace").strip().partition(" ")
            if kind == "listening":
                self.address = rest
            elif kind == "joined":
                self.joins += 1
            elif kind == "cancelled":
                fields = dict(item.split("=", 1) for item in rest.split())
                self.cancellations.append(
                    Cancellation(
                        model_key=fields["model"],
                        at=float(fields["at"]),
                        tokens_sent=int(fields["tokens_sent"]),
                    )
                )
                del self.cancellations[:-KEPT_CANCELLATIONS]
                self.cancelled[fields["model"]] += 1
            self._notify()
        self.exited = True
        self._notify()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait_until(self, condition: Callable[[], bool], *, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if self.exited:
                # Its own stderr (the launcher's, or its --log-dir file) said why, once.
                raise CellStartError(f"{self.name} exited before it came {what}")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"{self.name} did not come {what} within {timeout} s")
            # Not wait_for: in Python 3.11 it drops a cancellation that comes with the news
            # (tests/unit/test_cell_cancel.py), and a stopped cell's supervisor ran on.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await self._changed.wait()

    def _signal(self, sig: signal.Signals) -> None:
        """Sends ``sig`` unless the exit was reported. Not `Process.send_signal`: it calls
        Popen.send_signal, whose poll() reaps a child that has exited but whose exit asyncio's
        child watcher has not yet collected (a server that failed to start, stopped at once);
        the watcher then logs "Unknown child process pid N, will report returncode 255". A
        signal to an exited child that is not yet reaped does nothing, and its pid is not
        reused before the watcher reaps it."""
        if self._process is not None and self._process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._process.pid, sig)

    def kill(self) -> None:
        self._signal(signal.SIGKILL)

    async def stop(self, *, timeout: float = STOP_TIMEOUT) -> None:
        """SIGTERM, then SIGKILL after `timeout`; waits for the exit either way."""
        if self._process is None:
            return
        if self._process.returncode is None:
            self._signal(signal.SIGTERM)
            self._signal(signal.SIGCONT)  # a stopped server acts on SIGTERM once continued
            try:
                async with asyncio.timeout(timeout):  # not wait_for, as in `wait_until`
                    await self._process.wait()
            except TimeoutError:
                _log.warning("%s did not stop within %s s; killing it", self.name, timeout)
                self.kill()
        await self._process.wait()
        if self._process.stdin is not None:
            self._process.stdin.close()
        if self._reader is not None:
            await self._reader


class ModelServerHandle:
    """A model server of an EmbeddedCell."""

    def __init__(self, process: _ServerProcess) -> None:
        self._process = process

    @property
    def address(self) -> str:
        return self._process.address

    @property
    def pid(self) -> int:
        return self._process.pid

    @property
    def running(self) -> bool:
        return not self._process.exited

    async def exit_note(self) -> str:
        """How it ended, for a log line (`_ServerProcess.exit_note`)."""
        return await self._process.exit_note()

    @property
    def joins(self) -> int:
        """How many times it has joined an admin."""
        return self._process.joins

    def cancellations(self, model_key: str | None = None) -> list[Cancellation]:
        """GenerateStream calls the server saw cancelled (`at` is time.time()), the last
        `KEPT_CANCELLATIONS` of them."""
        return [
            c for c in self._process.cancellations if model_key is None or c.model_key == model_key
        ]

    async def wait_for_cancellation(self, model_key: str, *, timeout: float = 5.0) -> Cancellation:
        count = self._process.cancelled[model_key]
        await self._process.wait_until(
            lambda: self._process.cancelled[model_key] > count,
            timeout=timeout,
            what=f"to report a cancelled stream of {model_key}",
        )
        return self.cancellations(model_key)[-1]

    async def wait_for_joins(self, count: int, *, timeout: float = 30.0) -> None:
        """Waits until it has joined an admin `count` times in all."""
        await self._process.wait_until(
            lambda: self._process.joins >= count, timeout=timeout, what=f"to join {count} times"
        )

    async def stop(self) -> None:
        """Stops it gracefully (SIGTERM)."""
        await self._process.stop()

    def kill(self) -> None:
        """Kills it at once (SIGKILL), as a crash would."""
        self._process.kill()


class EmbeddedCell(AsyncClosing):
    """An async context manager running a whole Sax cell; see the module docstring."""

    def __init__(
        self,
        settings: CellSettings,
        *,
        log_level: str = "INFO",
        log_format: LogFormat = "text",
        startup_timeout: float = 30.0,
    ) -> None:
        self.settings = settings
        self.sax_root = settings.sax_root
        self.cell = settings.cell
        self._argv = [
            *settings_to_argv(settings),
            f"--log-level={log_level}",
            f"--log-format={log_format}",
        ]
        self._timeout = startup_timeout
        self._admin: _ServerProcess | None = None
        self._admin_port = settings.admin_port
        self._incarnation = 0
        self.model_servers: list[ModelServerHandle] = []

    def _started_admin(self) -> _ServerProcess:
        if self._admin is None:
            raise RuntimeError("the cell is not started")
        return self._admin

    @property
    def admin_address(self) -> str:
        return self._started_admin().address

    @property
    def admin_pid(self) -> int:
        return self._started_admin().pid

    async def __aenter__(self) -> Self:
        try:
            await self._start_admin()
            ports = [
                self.settings.model_server_port(i) for i in range(self.settings.num_model_servers)
            ]
            await asyncio.gather(*(self.add_model_server(port=port) for port in ports))
        except BaseException:
            await self.close()
            raise
        return self

    async def close(self) -> None:
        """Stops the admin and every model server, all at once: each stops its side of
        their exchange first (the admin its polls, a model server its joins), so a clean
        stop logs no server lost. Model servers first, the admin polled them while they
        drained and logged each one as dropped: two WARNINGs at every Ctrl-C."""
        admin = [self._admin.stop()] if self._admin is not None else []
        await asyncio.gather(*admin, *(server.stop() for server in self.model_servers))

    async def _start_admin(self, *, servers_running: bool = False) -> None:
        self._incarnation += 1
        argv = [*self._argv, f"--port={self._admin_port}"]
        if not servers_running:
            # No model server of ours runs that could bring a restored model back: they start
            # after it (at the cell's start), or died with the old admin and come back empty
            # (killed together). Placing replicas at once saves the wait: 27 s after `saxgw
            # up`, and 29 s with every model down after the cell's processes were killed.
            argv.append("--adopt-wait=0")
        admin = _ServerProcess(
            module="gateway.cell.admin",
            argv=argv,
            name=f"admin#{self._incarnation}",
        )
        self._admin = admin
        await admin.start(timeout=self._timeout)
        # A restarted admin must come back where clients and model servers expect it.
        self._admin_port = int(admin.address.rsplit(":", 1)[1])

    async def add_model_server(self, *, port: int = 0) -> ModelServerHandle:
        """Starts one more model server; returns once it has joined the admin."""
        process = _ServerProcess(
            module="gateway.cell.modelserver",
            argv=[*self._argv, f"--port={port}"],
            name=f"model server #{len(self.model_servers) + 1}",
        )
        handle = ModelServerHandle(process)
        self.model_servers.append(handle)
        await process.start(timeout=self._timeout)
        await handle.wait_for_joins(1, timeout=self._timeout)
        return handle

    @property
    def admin_running(self) -> bool:
        return self._admin is not None and not self._admin.exited

    async def admin_exit_note(self) -> str:
        """How the admin ended, for a log line (`_ServerProcess.exit_note`)."""
        return "exited" if self._admin is None else await self._admin.exit_note()

    async def restart_model_server(self, handle: ModelServerHandle) -> None:
        """Starts a dead model server again on its old port; returns once it listens (it
        joins the admin by itself)."""
        old = handle._process
        await old.stop()
        port = int(old.address.rsplit(":", 1)[1]) if old.address else 0
        process = _ServerProcess(
            module="gateway.cell.modelserver", argv=[*self._argv, f"--port={port}"], name=old.name
        )
        process.joins = old.joins
        handle._process = process
        await process.start(timeout=self._timeout)

    async def restart_admin(self, *, kill: bool = True, wait_for_joins: bool = True) -> None:
        """Kills (SIGKILL) or stops the admin and starts a new one on the same port; returns
        once every running model server has joined the new one (unless told not to wait)."""
        if self._admin is not None:
            if kill:
                self._admin.kill()
            await self._admin.stop()
        running = [(server, server.joins) for server in self.model_servers if server.running]
        await self._start_admin(servers_running=bool(running))
        if not wait_for_joins:
            return
        # Their next heartbeat Join (each location_watch_interval) re-joins them.
        timeout = self._timeout + 2 * self.settings.server_dead_after
        await asyncio.gather(
            *(server.wait_for_joins(joins + 1, timeout=timeout) for server, joins in running)
        )
