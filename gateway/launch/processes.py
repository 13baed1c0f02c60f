"""Child processes started together and stopped together, in reverse order."""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import random
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Literal

from gateway.common.interpreter import module_argv
from gateway.common.listen import host_and_port
from gateway.launch.logdir import hold_again

log = logging.getLogger(__name__)

# Every child is exec'd through this (same pid), which has the kernel kill it if we die.
_DIE_WITH_PARENT = tuple(module_argv("gateway.launch.diewithparent"))


class StartupError(RuntimeError):
    """A child process (``name``: its log is ``NAME.log`` in a log directory) exited or did
    not become ready in time."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(message)
        self.name = name


_EPHEMERAL_RANGE = "/proc/sys/net/ipv4/ip_local_port_range"
_handed_out: set[int] = set()


def _port_candidates() -> range:
    """Ports outside the kernel's ephemeral range. ``bind(0)`` picks from that range, and so
    does every outgoing connection: a port found free that way can become some client's local
    port before our server binds it ("Address already in use"). Below the range, only servers
    that chose the port themselves can take it."""
    try:
        low, high = (int(n) for n in Path(_EPHEMERAL_RANGE).read_text().split())
    except (OSError, ValueError):
        return range(0)
    if low - 1 >= 20000:
        return range(20000, low)
    if high + 1 <= 60000:
        return range(high + 1, 65536)
    return range(0)


def _bindable(host: str, port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now, outside the ephemeral range where it can, and
    never the same port twice in one process (the caller binds it later, not now)."""
    candidates = _port_candidates()
    for _ in range(200 if candidates else 0):
        port = random.choice(candidates)
        if port not in _handed_out and _bindable(host, port):
            _handed_out.add(port)
            return port
    while True:
        with socket.socket() as sock:
            sock.bind((host, 0))
            port = int(sock.getsockname()[1])
        if port not in _handed_out:
            _handed_out.add(port)
            return port


def port_open(address: str) -> bool:
    """Whether something accepts TCP connections at ``host:port`` (``[::1]:port`` too)."""
    with contextlib.suppress(OSError), socket.create_connection(host_and_port(address), 0.5):
        return True
    return False


class StopFlag:
    """A stop asked for by a signal handler (Ctrl-C, SIGTERM), and a wait for it.

    Not a `threading.Event`: a handler runs in the main thread, between any two of its
    bytecodes, and `Event.set` takes the lock that `Event.wait` holds while it runs Python
    code. A signal that came then deadlocked the main thread on its own lock: `saxgw up`
    ignored that signal and every later one (the handler blocked again), until SIGKILL. Here
    `set` is an assignment, and `wait` polls it."""

    _POLL_S = 0.05

    def __init__(self) -> None:
        self._set = False

    def set(self) -> None:
        self._set = True

    def is_set(self) -> bool:
        return self._set

    def wait(self, timeout: float) -> bool:
        """Returns once set (within ``_POLL_S``) or after ``timeout`` seconds: whether set."""
        deadline = time.monotonic() + timeout
        while not self._set and (left := deadline - time.monotonic()) > 0:
            time.sleep(min(left, self._POLL_S))
        return self._set


class LogError(OSError):
    """A child's log cannot be opened for writing (a read-only or full --log-dir, a
    directory where the file should be)."""


#: The most a --log-dir and its logs are opened to: others may read them, never write. Under
#: `umask 000` (some CI runners and images) they were 0777 and 0666, so any user of the
#: machine could rewrite a stack's logs, or swap one for a link to a file of the stack's
#: user, which the next child to start appended its lines (callers' paths among them) to.
#: A stricter umask narrows them further.
LOG_DIR_MODE = 0o755
LOG_MODE = 0o644


def make_log_dir(directory: str | Path) -> bool:
    """Creates ``directory`` and its missing parents, each at most ``LOG_DIR_MODE``: whether
    it was missing."""
    missing: list[Path] = []
    here = Path(directory)
    while not here.exists() and here != here.parent:
        missing.append(here)
        here = here.parent
    for new in reversed(missing):
        with contextlib.suppress(FileExistsError):  # another stack made it meanwhile
            os.mkdir(new, LOG_DIR_MODE)
    if not Path(directory).is_dir():  # a file in its place: said here, not at a log's open
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(directory))
    return bool(missing)


def _open_log(name: str, path: str) -> BinaryIO:
    """``path`` opened to append to, its directory made again if it was removed."""
    try:
        if make_log_dir(Path(path).parent):
            hold_again(Path(path).parent)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, LOG_MODE)
        return os.fdopen(fd, "ab")
    except OSError as exc:
        raise LogError(f"cannot write the log of {name}, {path}: {exc.strerror}") from exc


#: How often `ProcessGroup.stop` looks whether a child it waits for has exited.
_STOP_POLL_S = 0.05


class Stopping(Exception):
    """The group was told to stop (``ProcessGroup.stopping``) while it waited for a child to
    start: its owner stops what it started instead of starting the rest."""


Output = Literal["log", "ours", "discard"]
"""Where a child's stdout goes. ``log``: into its log, or without one to our stderr, where the
children's logs go (a line it prints there for a person who runs it alone, "gateway gRPC
listening on ...", came before `saxgw up`'s banner on its stdout, and a stdout whose reader
had gone killed the child, and the stack with it); ``ours``: into its log, or to our stdout
(Envoy's access log, documented there); ``discard``: nowhere (the cell's address lines, which
are no log records, and which the banner repeats)."""

#: Our stderr, whatever ``sys.stderr`` is in this process now.
_STDERR_FD = 2


def _stdout(output: Output, log: BinaryIO | None) -> BinaryIO | int | None:
    if output == "discard":
        return subprocess.DEVNULL
    return log or (None if output == "ours" else _STDERR_FD)


@dataclass(frozen=True)
class ChildSpec:
    """How a child was started, so that it can be started again the same way."""

    argv: tuple[str, ...]
    env: dict[str, str] | None
    log_path: str | None
    stdout: Output = "log"
    pass_fds: tuple[int, ...] = ()


def children_ignore(signum: int) -> None:
    """Has the children started from now on begin with ``signum`` ignored: an ignored signal
    stays ignored across exec until the program sets a handler of its own, where a signal
    whose default action ends a process (SIGUSR1's) would end a child that has not set its
    handler yet. This process ignores it too. Python sets handlers from the main thread
    alone: from any other, nothing changes."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signum, signal.SIG_IGN)


@dataclass
class ProcessGroup:
    """Starts named children; `stop` sends SIGTERM newest first, then SIGKILL after a grace.

    Children die with this process however it ends (gateway/launch/diewithparent.py)."""

    grace: float = 10.0
    children: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)
    specs: dict[str, ChildSpec] = field(default_factory=dict)
    stopping: StopFlag = field(default_factory=StopFlag)
    """Set (by a signal handler: `saxgw up`'s Ctrl-C, SIGTERM) to end a `wait_until` at once."""
    hurry: StopFlag = field(default_factory=StopFlag)
    """Set (by a second stop signal, or SIGQUIT) to kill at once every child `stop` still
    waits for, rather than give it the rest of its grace."""
    before_restart: Callable[[], None] | None = None
    """Called before `restart` starts a child again (`Stack` writes back the files its
    children read that were removed meanwhile); an OSError it raises fails the restart."""

    def start(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: dict[str, str] | None = None,
        log_path: str | None = None,
        stdout: Output = "log",
        pass_fds: tuple[int, ...] = (),
    ) -> subprocess.Popen[bytes]:
        """Starts ``argv``; its stderr goes to ``log_path`` (or to ours), its stdout as
        ``stdout`` says (`Output`); it inherits our descriptors ``pass_fds``, as numbered
        here. The log's directory is made if it is gone (removed while the stack ran: a
        restart must not fail over it)."""
        out = _open_log(name, log_path) if log_path else None
        try:
            proc = subprocess.Popen(
                [*_DIE_WITH_PARENT, str(os.getpid()), *argv],
                stdin=subprocess.DEVNULL,
                stdout=_stdout(stdout, out),
                stderr=out,  # None: ours
                env={**os.environ, **(env or {})},
                # Ctrl-C in a terminal reaches only us; we stop the children in order.
                start_new_session=True,
                pass_fds=pass_fds,
            )
        finally:
            if out:
                out.close()
        log.info("started %s (pid %d): %s", name, proc.pid, " ".join(argv))
        self.specs[name] = ChildSpec(tuple(argv), env, log_path, stdout, pass_fds)
        self.children = [(n, p) for n, p in self.children if n != name]
        self.children.append((name, proc))
        return proc

    def restart(self, name: str) -> subprocess.Popen[bytes]:
        """Starts the (exited) child ``name`` again with its first arguments; it keeps its
        place in the stop order."""
        spec = self.specs[name]
        if self.before_restart is not None:
            self.before_restart()
        order = [n for n, _ in self.children]
        proc = self.start(
            name,
            spec.argv,
            env=spec.env,
            log_path=spec.log_path,
            stdout=spec.stdout,
            pass_fds=spec.pass_fds,
        )
        by_name = dict(self.children)
        self.children = [(n, by_name[n]) for n in order]
        return proc

    def wait_until(self, name: str, ready: Callable[[], bool], timeout: float) -> None:
        """Polls ``ready`` until it holds; fails if the child ``name`` exits first, and
        raises `Stopping` once ``stopping`` is set: a stop asked for while a child starts
        (a cell whose storage does not answer may take its whole timeout) was acted on only
        once every child had started or one had failed, and meanwhile looked ignored."""
        proc = dict(self.children)[name]
        deadline = time.monotonic() + timeout
        while not ready():
            if self.stopping.is_set():
                raise Stopping(name)
            if proc.poll() is not None:
                raise StartupError(
                    name, f"{name} exited with status {proc.returncode} while starting"
                )
            if time.monotonic() > deadline:
                raise StartupError(name, f"{name} was not ready after {timeout:.0f} s")
            self.stopping.wait(0.05)

    def exited(self) -> list[str]:
        """Names of children that are no longer running."""
        return [name for name, proc in self.children if proc.poll() is not None]

    def send_signal(self, names: Collection[str], signum: int) -> None:
        """Sends ``signum`` to each running child named in ``names``."""
        for name, proc in self.children:
            if name in names and proc.poll() is None:
                proc.send_signal(signum)

    def stop(self, first: Collection[str] = (), settle: float = 0.0) -> None:
        """Stops every child: those named in ``first`` together, then, ``settle`` seconds
        later (at once if ``hurry`` is set), the others newest first. Each gets SIGTERM, then
        SIGKILL after the grace."""
        self._stop([(n, p) for n, p in self.children if n in first])
        if first and settle > 0:
            self.hurry.wait(settle)
        for name, proc in reversed(self.children):
            if name not in first:
                self._stop([(name, proc)])
        self.children.clear()

    def _stop(self, children: Sequence[tuple[str, subprocess.Popen[bytes]]]) -> None:
        """SIGTERM to each of ``children`` at once; then waits for each, up to the grace."""
        running = [(n, p) for n, p in children if p.poll() is None]
        for _, proc in running:
            proc.send_signal(signal.SIGTERM)
            # A stopped child (SIGSTOP, a debugger) acts on SIGTERM only once continued, as
            # systemd and container runtimes know: it held the stop for the whole grace, to be
            # killed with the calls it had in flight.
            proc.send_signal(signal.SIGCONT)
        deadline = time.monotonic() + self.grace
        for name, proc in running:
            # Polled, not proc.wait(timeout): a second stop signal is heard meanwhile.
            while proc.poll() is None and (left := deadline - time.monotonic()) > 0:
                if self.hurry.wait(min(left, _STOP_POLL_S)):
                    break
            if proc.poll() is None:
                if self.hurry.is_set():
                    log.warning("told to stop at once: killing %s now", name)
                else:
                    log.warning("%s did not stop within %.0f s; killing it", name, self.grace)
                proc.kill()
            proc.wait()
