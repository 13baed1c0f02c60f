"""A started stack until Ctrl-C (or SIGTERM, or SIGHUP): its supervisor's ticks, the banner
once it is healthy, and the line that says the models restored from an earlier run serve again.

Its own lines on stderr (``saxgw: ...``) are JSON records when the logs are JSON (`say`)."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import shlex
import shutil
import signal
import sys
from pathlib import Path
from types import FrameType

from gateway.cli._restored import Restored, RestoredModels
from gateway.common.limits import first_named
from gateway.common.logs import JsonFormatter
from gateway.common.stdout import discard_stdout
from gateway.config import calls_grace
from gateway.launch.processes import StopFlag
from gateway.launch.stack import Stack
from gateway.launch.supervisor import Supervisor

_log = logging.getLogger("saxgw")

HANGUP = (
    "saxgw: SIGHUP: stopping, as on SIGTERM. The config is read once at start: "
    "start saxgw again to apply a change"
)


def _written(text: str, level: int) -> str:
    """``text`` as it is, or, when the logs are JSON (``--log-format json``, or ``auto`` off
    a terminal), as one JSON record of the logger ``saxgw`` (without the ``saxgw: ``
    prefix), so that each stream the stack writes stays JSON lines."""
    formatter = next((h.formatter for h in logging.getLogger().handlers if h.formatter), None)
    if not isinstance(formatter, JsonFormatter):
        return text
    message = text.removeprefix("saxgw: ")
    return formatter.format(_log.makeRecord(_log.name, level, "", 0, message, (), None))


def say(line: str, level: int = logging.INFO) -> None:
    """Writes one of `saxgw up|serve`'s own lines (``saxgw: ...``) to stderr (`_written`).
    A stderr gone (its terminal closed) does not keep the stack from stopping."""
    with contextlib.suppress(OSError):
        print(_written(line, level), file=sys.stderr, flush=True)


def show(text: str) -> None:
    """Prints one of `saxgw up|serve`'s lines for stdout (the banner, the restored models;
    `_written`: with JSON logs one record each, since Envoy's access log shares stdout
    without --log-dir). Its reader may go (`saxgw up | head -1`, a pager quit, a terminal
    closed): the stack serves on, as it does without stderr (`say`); the BrokenPipeError
    stopped it."""
    try:
        print(_written(text, logging.INFO), flush=True)
    except OSError:
        discard_stdout()


class StopSignals:
    """Set by SIGINT (Ctrl-C), SIGTERM or SIGHUP: each stops the stack gracefully. SIGHUP's
    default killed `saxgw` at once when its terminal closed (status 129; the children killed
    with it, streams cut without their last event, the private directory with Envoy's config
    left behind); and it does not reload the config, as some servers' does (`hangup`).
    Under `nohup`, which starts it with SIGHUP ignored, it stays ignored.

    A second one during the stop (Ctrl-C again: the user will not wait for the streams to
    drain), or SIGQUIT (Ctrl-\\) at any time, sets ``hurry``: what is still running is
    killed at once, the private directory still removed, and `saxgw` exits 128 + that
    signal's number, as a shell reports a command the signal ended. Before, only SIGKILL
    ended a stop early, and SIGQUIT's default killed `saxgw` alone; both left the private
    directory (Envoy's config, API keys in it) behind."""

    def __init__(self) -> None:
        self.event = StopFlag()  # no threading.Event: a handler must take no lock
        self.hurry = StopFlag()
        self.hangup = False
        self.hurried_by = 0
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
            # A hangup ignored when we start is one `nohup` (or a service manager) asked us
            # to ignore: the terminal may close under a stack meant to outlive it. SIGINT and
            # SIGQUIT, which a shell ignores for its background jobs, stay ours: a script's
            # `kill -INT` must still stop `saxgw up &`.
            if sig != signal.SIGHUP or signal.getsignal(sig) != signal.SIG_IGN:
                signal.signal(sig, self._received)

    def _received(self, signum: int, _frame: FrameType | None) -> None:
        if (self.event.is_set() or signum == signal.SIGQUIT) and not self.hurry.is_set():
            self.hurried_by = signum
            self.hurry.set()
        self.hangup = self.hangup or signum == signal.SIGHUP
        self.event.set()

    def status(self, status: int) -> int:
        """`saxgw`'s exit status, ``status`` unless a second signal hurried the stop."""
        return 128 + self.hurried_by if self.hurry.is_set() else status


def serve_until_stopped(args: argparse.Namespace, stack: Stack, stop: StopSignals) -> int:
    """Prints the banner once health passes (and when restored models are ready), restarts
    a child that exits or hangs; returns when a stop signal came."""
    supervisor = Supervisor(
        stack.group,
        stack.settings.restart,
        report=lambda line: say(line, logging.WARNING),
        probes=stack.probes(),
    )
    try:
        _supervise(args, stack, stop.event, supervisor)
    finally:
        supervisor.close()
    if stop.hangup:
        say(HANGUP)
    say(stopping(stack, stop))
    return 0


def stopping(stack: Stack, stop: StopSignals) -> str:
    """The line that says the stop began, and how long it may take: someone who pressed
    Ctrl-C with a stream open saw nothing happen for up to the grace period, and did not
    know that a second Ctrl-C would end it at once."""
    if stop.hurry.is_set():
        return "saxgw: stopping at once..."
    # The gateways fail calls still running a moment before the grace period ends, so that
    # streams can say so: the line promised the whole period.
    grace = calls_grace(stack.settings.gateway.grace_period)
    if drain := stack.drain_delay:
        return (
            f"saxgw: stopping... (new connections go elsewhere for {drain:g} s, then calls in "
            f"flight get up to {grace:g} s; Ctrl-C again stops at once)"
        )
    return f"saxgw: stopping... (calls in flight get up to {grace:g} s; Ctrl-C again stops at once)"


def _supervise(
    args: argparse.Namespace, stack: Stack, stop: StopFlag, supervisor: Supervisor
) -> None:
    banner = False
    restored: RestoredModels | None = None
    waited = 0.0
    while not stop.is_set():
        supervisor.tick()  # a child that died or hung is restarted; the others keep serving
        # One /healthz a second until the banner: each is a line of Envoy's access log, and
        # a cell that is down must not flood it (polling every 50 ms wrote ~20 lines a second).
        if not banner and stack.wait_healthy(timeout=0):
            _print_banner(args, stack)
            banner = True
            if args.embedded:
                restored = RestoredModels(
                    stack.gateway_addresses[0],
                    args.cell,
                    patience=restored_patience(stack),
                    metadata=stack.token_metadata,
                )
        elif not banner:
            waited += 1.0
            stop.wait(0.5)
            if waited == 60:
                # With --log-dir the children's logs are in files there, not above this line.
                logs = f"in {args.log_dir}" if args.log_dir else "above"
                # The root, since `serve` may have taken it from the environment: the command
                # line the operator sees names none.
                say(
                    f"saxgw: still waiting for the gateway to reach the Sax cell under SAX_ROOT "
                    f"{args.sax_root} ({stack.http_url}/healthz is 503); see the logs {logs}",
                    logging.WARNING,
                )
        if restored is not None and (standing := restored.poll()) is not None:
            _report_restored(standing, args.cell)
            if standing.final:
                restored = None
        stop.wait(0.5)


#: Beyond the cell's adopt wait, how long restored models may take to be placed and loaded
#: before `saxgw up` names those that do not serve.
RESTORED_MARGIN_S = 60.0
#: Models a line names at most; a big cell's hundreds would make one line of kilobytes.
NAMED_AT_MOST = 10


def restored_patience(stack: Stack) -> float:
    """How long `saxgw up` waits for restored models to serve or fail to load: the cell's
    wait for their old servers to re-join, and a minute to place and load them."""
    cell = stack.settings.cell
    if cell is None:
        return RESTORED_MARGIN_S
    adopt = cell.server_dead_after if cell.adopt_wait is None else cell.adopt_wait
    return adopt + RESTORED_MARGIN_S


def _report_restored(standing: Restored, cell: str) -> None:
    """Says which restored models serve, which failed to load (with the load error), and
    which did neither in time. A model that failed to load never serves: waiting for it,
    `saxgw up` asked the gateway twice a second for good (each an anonymous ListModels in the
    metrics, and a trace), and never said which model it waited for, nor why; one that no
    model server could take kept it asking for good too, of every such model each time."""
    if ready := [f"{m} ({a}/{w})" for m, a, w in standing.ready]:
        show(f"saxgw: restored models ready: {_named(ready)}")
    for model, error in standing.failed:
        say(f"saxgw: restored model {model} does not serve: {error}", logging.WARNING)
    if waiting := standing.waiting:
        say(
            f"saxgw: {len(waiting)} restored models do not serve yet, and no load error came "
            f"back: {_named(waiting)}. No model server has taken them (the servers are full, or "
            f"none serves their model path: `saxgw stats {cell}`), or they still load "
            "(`saxgw ls` shows when they serve)",
            logging.WARNING,
        )


def _named(items: list[str]) -> str:
    return first_named(items, NAMED_AT_MOST)


def _print_banner(args: argparse.Namespace, stack: Stack) -> None:
    show("\n".join(banner(args, stack)))


def _tls_flags(stack: Stack) -> tuple[str, str, str | None]:
    """What curl and saxgw need to reach a TLS listener (the CA that signed its certificate;
    a client certificate for mTLS), as placeholders, and a line that says what they stand
    for; ("", "", None) without TLS."""
    tls = stack.envoy.edge.tls
    if tls is None:
        return "", "", None
    curl, saxgw = " --cacert CA.pem", " --ca-cert CA.pem"
    note = "  (CA.pem: the CA that signed tls.cert_file)"
    if tls.client_ca_file is not None:
        curl += " --cert CERT.pem --key KEY.pem"
        saxgw += " --client-cert CERT.pem --client-key KEY.pem"
        note = (
            "  (CA.pem: the CA that signed tls.cert_file; CERT.pem, KEY.pem: a client "
            "certificate signed by tls.client_ca_file, and its key)"
        )
    return curl, saxgw, note


def saxgw_command() -> str:
    """How the reader runs this saxgw again: `saxgw` when the PATH finds this one; else the
    script pip put beside this interpreter (as `make up` runs it: .venv/bin/saxgw, relative
    to the current directory when under it), else this interpreter with -m. A hard-coded
    .venv/bin/saxgw named nothing for a saxgw installed from its wheel."""
    if not sys.executable:  # an embedding that cannot say which interpreter it is
        return "saxgw"
    script = Path(sys.executable).with_name("saxgw")
    if not script.is_file():
        return f"{shlex.quote(sys.executable)} -m gateway.cli"
    on_path = shutil.which("saxgw")
    if on_path is not None and os.path.samefile(on_path, script):
        return "saxgw"
    with contextlib.suppress(ValueError):
        script = script.relative_to(Path.cwd())
    return shlex.quote(str(script))


def banner(args: argparse.Namespace, stack: Stack) -> list[str]:
    """What `saxgw up|serve` prints once the stack is healthy: where each part listens and
    commands to try, with the flags a TLS listener wants (without them, saxgw spoke
    plaintext to it and failed)."""
    curl, saxgw, note = _tls_flags(stack)
    lines = [f"HTTP/JSON, gRPC, grpc-web  {stack.http_url}  (Envoy; /healthz)"]
    lines += [f"gateway gRPC               {a}" for a in stack.gateway_addresses]
    if stack.metrics_url:
        lines.append(f"Prometheus metrics         {stack.metrics_url}  (gateway + Envoy)")
    if args.otlp_endpoint:
        lines.append(f"traces (OTLP/gRPC)         {args.otlp_endpoint}")
    if args.embedded:
        admin = f"Sax admin ({args.cell})"
        lines.append(f"{admin:<27}127.0.0.1:{args.admin_port}")
        lines += [f"Sax model server           127.0.0.1:{p}" for p in args.model_server_ports]
    lines.append(f"SAX_ROOT                   {args.sax_root}")
    if stack.envoy.direct_dir:  # docs/config.md#direct: what goes direct, and what does not
        lines.append("direct mode                POST /generate straight to model servers")
    lines.append("Ready. Try:")
    if note:
        lines.append(note)
    if stack.envoy.edge.authenticated:  # else the two lines below are 401
        lines.append("  (with a key or JWT of --config: export SAXGW_API_KEY=...)")
        lines.append(
            f'  curl -s{curl} -H "Authorization: Bearer $SAXGW_API_KEY" {stack.http_url}/listcells'
        )
    else:
        lines.append(f"  curl -s{curl} {stack.http_url}/listcells")
    # `serve` has no --cell: its cells are whatever SAX_ROOT holds.
    where = f" {args.cell}" if args.embedded else ""
    lines.append(f"  {saxgw_command()} --gateway {stack.grpc_address}{saxgw} ls{where}")
    # The stack serves its own reference: an installed saxgw has no README.md or docs/.
    lines.append(f"  every route, to try in a browser: {stack.http_url}/docs")
    lines.append("Ctrl-C stops everything.")
    return lines
