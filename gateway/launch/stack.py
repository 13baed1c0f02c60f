"""The whole stack as child processes: embedded cell (optional), gateway(s), Envoy.

`saxgw up` and `saxgw serve` run it; the end-to-end tests start it the same way on free ports.

    gateway = GatewaySettings(client=ClientSettings(sax_root="/tmp/root"))
    with Stack(StackSettings(gateway=gateway, cell=CellSettings(sax_root="/tmp/root"))) as stack:
        httpx.get(stack.http_url + "/")

Each child's command line comes from its own role's one function (``cell_argv``,
``gateway_argv``, ``ops_argv``), so a flag is spelt in one place.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import sys
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from types import TracebackType

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gateway.cell import CellSettings, cell_argv
from gateway.common import slottable
from gateway.common.interpreter import module_argv
from gateway.common.listen import bracketed
from gateway.common.logs import LogFormat, resolved
from gateway.common.loopback import is_loopback
from gateway.common.private import write_private
from gateway.common.stacktoken import STACK_TOKEN_HEADER, STACK_TOKEN_VARIABLE, new_token
from gateway.config import DEFAULT_GATEWAY_PORT, GatewaySettings, SharedSlots
from gateway.configfile import ConfigFile, load_config, write_snapshot
from gateway.launch.direct import DirectFiles
from gateway.launch.envoy import (
    EnvoySettings,
    envoy_binary,
    envoy_concurrency_flags,
    render,
    within_open_files,
)
from gateway.launch.probes import Probe, grpc_health_probe, heartbeat_probe, http_probe
from gateway.launch.processes import (
    ProcessGroup,
    StartupError,
    StopFlag,
    Stopping,
    children_ignore,
    make_log_dir,
    port_open,
)
from gateway.launch.stackdir import OWNER_FILE, KeptFiles, room_for_files, stack_dir
from gateway.launch.tuning import (
    envoy_open_files,
    grpc_env,
    raise_open_files_limit,
)
from gateway.ops import LIVE_PATH, OpsSettings, readiness
from gateway.ops.args import ops_argv
from gateway.restartconfig import RestartSettings
from gateway.service.args import gateway_argv
from gateway.service.telemetry_args import HEADERS_VARIABLE, headers_variable

log = logging.getLogger(__name__)

#: Seconds direct mode's control plane may go without finishing a listing of the cells (each
#: admin call it makes has the client's 10 s deadline) before the watchdog counts it silent.
DIRECT_STALE_AFTER_S = 30.0

#: `StackSettings.drain_delay` unless told otherwise: long enough for a load balancer whose
#: health checks come every few seconds to see /healthz fail.
DRAIN_DELAY_S = 5.0


@dataclass(frozen=True, kw_only=True)
class StackSettings:
    """What to start, and on which ports: each process's own settings, composed."""

    gateway: GatewaySettings
    """Settings of every gateway process (``port`` aside: see ``gateway_ports``)."""
    config: ConfigFile | None = None
    """The ``--config`` file as the caller read it (``gateway.config_file``'s); None: the
    stack reads ``gateway.config_file`` itself, once. Either way every gateway process, one
    restarted included, runs with this one reading (a snapshot in the stack's private
    directory), never the file as it is later."""
    cell: CellSettings | None = None
    """The embedded Sax cell to start (its ports fixed); None fronts an existing cell found
    through the gateway's SAX_ROOT."""
    gateway_ports: Sequence[int] = (DEFAULT_GATEWAY_PORT,)
    """One gateway process per port; Envoy balances across them."""
    envoy: EnvoySettings | None = None
    """Envoy's settings; ``gateway_endpoints`` is filled in from ``gateway_ports``."""
    log_dir: str | None = None
    """Where each child writes its log; None lets children write to our stderr."""
    startup_timeout: float = 60.0
    restart: RestartSettings = field(default_factory=RestartSettings)
    """How `saxgw up`'s supervisor restarts a child that died, and kills one that hangs
    (the config file's ``supervisor:``)."""
    ops_port: int | None = None
    """Port of the ops server (``/metrics`` of every gateway process and Envoy); None: none."""
    ops_address: str = "127.0.0.1"
    drain_delay: float = DRAIN_DELAY_S
    """Seconds the gateways go on serving at a stop once /healthz has turned 503, before they
    stop taking calls: a load balancer meanwhile sends new connections elsewhere, and each
    client connection gets its GOAWAY (HTTP/1.1: ``Connection: close``) with a reply. Only off
    loopback, where Envoy's admin takes /healthcheck/fail (`_fail_health`)."""
    gateway_env: Mapping[str, str] = field(default_factory=grpc_env)
    """Environment of each gateway process on top of ours: grpc's tuning (launch/tuning.py),
    which grpc reads when the process imports it."""

    @property
    def sax_root(self) -> str:
        """The SAX_ROOT the gateways use (the embedded cell's too)."""
        return self.gateway.sax_root


def health_answers(address: str) -> bool:
    """Whether a gateway at ``address`` answers grpc.health.v1 (SERVING or not: whether the
    cell is reachable is the stack's readiness, /healthz)."""
    with grpc.insecure_channel(address) as channel:
        try:
            health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=1)
        except grpc.RpcError:
            return False
    return True


def _reach(address: str) -> str:
    """How this machine reaches a listener on ``address``, as it goes before ``:PORT``: a
    wildcard through loopback of its family, an IPv6 address in brackets. A listener on
    ``::1`` (or on ``::``, IPv6 only to Envoy) does not answer 127.0.0.1: `saxgw up --listen
    ::1` waited for a /healthz it asked there and said the cell was unreachable."""
    if address in ("0.0.0.0", ""):
        return "127.0.0.1"
    return bracketed("::1" if address == "::" else address)


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def _fail_health(envoy: EnvoySettings) -> bool:
    """Turns Envoy's /healthz to 503 for good (as the containers' run-envoy.sh does on
    SIGTERM): whether Envoy took it. A loopback Envoy's admin refuses it (a web page could
    send it there), and Envoy may not be there to ask."""
    url = f"http://{envoy.admin_address}:{envoy.admin_port}/healthcheck/fail"
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="POST"), timeout=1) as r:
            return bool(r.status == 200)
    except OSError:
        return False


def _gateway_healthy(envoy: EnvoySettings) -> bool:
    """What /healthz reports, asked of Envoy's admin as the ops server's /readyz asks it."""
    ready, _ = readiness(f"{envoy.admin_address}:{envoy.admin_port}", timeout=1)
    return ready


# Envoy's own log lines (spdlog) as JSON objects named as the gateway's are (common/logs.py),
# so that they do not break a JSON log stream between its access log lines.
ENVOY_JSON_LOG = '{"time":"%Y-%m-%dT%T.%eZ","level":"%l","logger":"envoy.%n","message":"%j"}'
#: ... and the environment that makes their time UTC, as the Z says: spdlog writes the local
#: time (its access log's START_TIME is UTC whatever the zone).
ENVOY_JSON_ENV = {"TZ": "UTC"}


def _envoy_logging(log_format: LogFormat, log_path: str | None) -> tuple[list[str], dict[str, str]]:
    """``--log-format`` for Envoy and its environment: JSON when the gateways log JSON
    (``auto``: unless Envoy writes to a terminal, as the gateways decide)."""
    terminal = log_path is None and sys.stderr.isatty()
    if resolved(log_format, terminal=terminal) == "json":
        return ["--log-format", ENVOY_JSON_LOG], ENVOY_JSON_ENV
    return [], {}


#: Seconds a gateway may take to exit after its grace period, before it is killed.
_EXIT_AFTER_GRACE = 5.0

#: Seconds Envoy goes on once the gateways have stopped, when it traces: it sends the spans it
#: buffers every 250 ms (envoy/envoy.yaml.tmpl: layered_runtime) and drops them at exit, so
#: the spans of the calls that ended last (those the gateways' stop ended, too) were lost.
#: Three of its flushes, and room for their exports.
SPAN_FLUSH_WAIT = 0.75


class Stack:
    """Starts the processes on ``__enter__`` and stops them, newest first, on ``__exit__``.

    ``stopping``, once set, ends the start where it is: ``__enter__`` returns with the
    children started so far, for ``__exit__`` to stop. ``hurry``, once set, kills at once
    what that stop still waits for."""

    def __init__(
        self,
        settings: StackSettings,
        stopping: StopFlag | None = None,
        hurry: StopFlag | None = None,
    ) -> None:
        self.settings = settings
        # A gateway gets its whole grace period to end the calls in flight (a long stream)
        # and a few seconds to exit, before the group kills it: with its own fixed 10 s, the
        # group SIGKILLed a gateway given a longer --grace-period, cutting those calls.
        self.group = ProcessGroup(
            grace=max(ProcessGroup.grace, settings.gateway.grace_period + _EXIT_AFTER_GRACE),
            stopping=stopping or StopFlag(),
            hurry=hurry or StopFlag(),
        )
        envoy = settings.envoy or EnvoySettings(gateway_endpoints=())
        endpoints = [f"127.0.0.1:{p}" for p in settings.gateway_ports]
        self._tmp = stack_dir()  # those of killed stacks are removed first
        direct = Path(self._tmp.name) / "direct" if envoy.edge.direct.generate else None
        self.envoy = dataclasses.replace(
            envoy,
            gateway_endpoints=endpoints,
            otlp_endpoint=envoy.otlp_endpoint or settings.gateway.telemetry.otlp_endpoint,
            otlp_certificate=envoy.otlp_certificate or settings.gateway.telemetry.otlp_certificate,
            otlp_headers=envoy.otlp_headers or settings.gateway.telemetry.otlp_headers,
            trace_sample_ratio=settings.gateway.telemetry.trace_sample_ratio,
            # Only where callers must authenticate: without credentials a direct call
            # skips nothing, and the gateway ports stay open to it (docs/security.md).
            stack_token=new_token() if envoy.edge.authenticated else None,
            direct_dir=None if direct is None else str(direct),
        )
        self._gateway_names = [f"gateway-{i}" for i in range(len(settings.gateway_ports))]
        self._table_fd: int | None = None  # the per-client table, open for good (`_start`)

    @property
    def drain_delay(self) -> float:
        """Seconds `close` keeps the gateways serving once /healthz is 503: none on loopback,
        whose Envoy admin refuses /healthcheck/fail (a web page could send it there), and
        where no load balancer is to be told."""
        return 0.0 if is_loopback(self.envoy.listen_address) else self.settings.drain_delay

    @property
    def http_url(self) -> str:
        """Base URL of Envoy's public listener."""
        scheme = "https" if self.envoy.edge.tls else "http"
        return f"{scheme}://{self.listener_address}"

    @property
    def grpc_address(self) -> str:
        """gRPC address of Envoy's public listener."""
        return self.listener_address

    @property
    def listener_address(self) -> str:
        """``host:port`` at which this machine reaches Envoy's public listener."""
        return f"{_reach(self.envoy.listen_address)}:{self.envoy.listen_port}"

    @property
    def metrics_url(self) -> str | None:
        """The one Prometheus scrape URL, if the ops server runs."""
        if self.settings.ops_port is None:
            return None
        return f"http://{_reach(self.settings.ops_address)}:{self.settings.ops_port}/metrics"

    @property
    def metrics_dir(self) -> Path:
        """Where the gateway processes keep their metrics for the ops server to add up."""
        return Path(self._tmp.name) / "metrics"

    @property
    def slot_table(self) -> Path:
        """The table in which several gateway processes count per-client calls and streams
        together (gateway/common/slottable.py); none with one gateway."""
        return Path(self._tmp.name) / "slots"

    @property
    def gateway_addresses(self) -> list[str]:
        """gRPC addresses of the gateway processes, behind Envoy."""
        return list(self.envoy.gateway_endpoints)

    @property
    def token_metadata(self) -> tuple[tuple[str, str], ...]:
        """What a call of ours to a gateway port sends: the stack's token, if it has one."""
        token = self.envoy.stack_token
        return () if token is None else ((STACK_TOKEN_HEADER, token),)

    def probes(self) -> dict[str, Probe]:
        """How the supervisor's watchdog asks each child whether it still answers: the
        health endpoint each already serves. Not the cell: its admin and model servers are
        its own children, which it restarts itself."""
        probes = {
            name: grpc_health_probe(address)
            for name, address in zip(self._gateway_names, self.gateway_addresses, strict=True)
        }
        probes["envoy"] = http_probe(
            f"{self.envoy.admin_address}:{self.envoy.admin_port}", "/ready"
        )
        if self.settings.ops_port is not None:
            address = f"{_reach(self.settings.ops_address)}:{self.settings.ops_port}"
            probes["ops"] = http_probe(address, LIVE_PATH)
        if self.envoy.direct_dir:
            # A plane that stops leaves Envoy's routes as they were: an ACL set since would
            # not keep a model's calls from going direct.
            heartbeat = DirectFiles(Path(self.envoy.direct_dir)).heartbeat
            probes["direct"] = heartbeat_probe(heartbeat, DIRECT_STALE_AFTER_S)
        return probes

    def _log(self, name: str) -> str | None:
        return str(Path(self.settings.log_dir) / f"{name}.log") if self.settings.log_dir else None

    def __enter__(self) -> Stack:
        if self.settings.log_dir:  # --log-dir names a folder that need not exist yet
            make_log_dir(self.settings.log_dir)
        try:
            # Every file it writes itself is in its private directory (logs: `LogError`).
            with room_for_files(self._tmp.name):
                self._start()
        except Stopping:
            pass  # told to stop while starting: its owner stops at once what did start
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Stops every process and removes the rendered config. The gateways stop first,
        while Envoy still relays what they send: each gives the calls in flight its grace
        period, and a stream that outlasts it its last message (gateway/service/_server.py).
        Stopped newest first, Envoy went first and exited at once, cutting every call in
        flight, unary ones included, with no word to their clients. Before all that, /healthz
        turns 503, so that a load balancer sends new calls elsewhere at once: it stayed 200 for
        about 3 s, until Envoy's health checks found the gateways stopping. Off loopback, the
        gateways then go on serving for ``drain_delay``: stopped at once, each client
        connection got its GOAWAY (or ``Connection: close``) with a 503, one failed call per
        connection at every stop behind a load balancer. Envoy, when it traces, goes on for
        `SPAN_FLUSH_WAIT` after the gateways, to send the spans of their last calls."""
        if "envoy" in self.group.specs and _fail_health(self.envoy):
            # The gateways report NOT_SERVING too, to the Watches open before the drain:
            # Envoy marks only replies that begin after /healthcheck/fail, so those heard
            # nothing until the gateways stopped.
            self.group.send_signal(self._gateway_names, signal.SIGUSR1)
            self.group.hurry.wait(self.drain_delay)  # a second Ctrl-C ends it
        settle = SPAN_FLUSH_WAIT if self.envoy.otlp_endpoint else 0.0
        self.group.stop(first=self._gateway_names, settle=settle)
        if self._table_fd is not None:
            os.close(self._table_fd)
            self._table_fd = None
        self._tmp.cleanup()

    def _start(self) -> None:
        s = self.settings
        timeout = s.startup_timeout
        raise_open_files_limit()  # children inherit it: Envoy holds a socket per connection
        # A gateway started again a moment before a stop, still importing, would have ended
        # at the drain's SIGUSR1 (`close`) rather than ignored it; Envoy and the gateways set
        # handlers of their own.
        children_ignore(signal.SIGUSR1)
        self.envoy = within_open_files(self.envoy, envoy_open_files())
        if s.cell is not None:
            argv = cell_argv(s.cell, log_format=s.gateway.telemetry.log_format)
            # Its address lines on stdout are for a person running it alone (the banner
            # says where it listens): they came before the banner on saxgw's stdout, and
            # were text lines in a JSON log.
            self.group.start("cell", argv, log_path=self._log("cell"), stdout="discard")
            ports = (s.cell.admin_port, *s.cell.model_server_ports)
            addresses = [f"{s.cell.host}:{p}" for p in ports]
            self.group.wait_until("cell", lambda: all(map(port_open, addresses)), timeout)
        telemetry = s.gateway.telemetry
        if telemetry.metrics:
            # The gateways share a directory for the ops server to add up; a fresh one on
            # every start, as multiprocess metrics files must not outlive their run.
            self.metrics_dir.mkdir()
            telemetry = dataclasses.replace(telemetry, metrics_dir=str(self.metrics_dir))
        if telemetry.otlp_certificate:
            # A copy in the private directory, as the config's snapshot: a gateway the
            # supervisor starts again read the file named at start, and one replaced or
            # moved since kept it from starting at all (`--otlp-certificate: cannot read`).
            roots = Path(self._tmp.name) / "collector-ca.pem"
            write_private(roots, Path(telemetry.otlp_certificate).read_text())
            telemetry = dataclasses.replace(telemetry, otlp_certificate=str(roots))
        snapshot = self._config_snapshot()
        shared = None
        if len(s.gateway_ports) > 1:
            # Per-client limits are the stack's, as Envoy's rate limits are: its gateways
            # count in one table, each in its own column (the same across its restarts).
            # Each is handed the file open, not its name: once the name was removed (a /tmp
            # cleaner), a gateway started again opened a new table while the others went on
            # in the old one, and each counted a client's calls and streams alone.
            shared = str(self.slot_table)
            slottable.create(shared, workers=len(s.gateway_ports))
            self._table_fd = os.open(shared, os.O_RDWR)
        # Always set: a token in our own environment must not reach a stack that sends none.
        env = {**s.gateway_env, STACK_TOKEN_VARIABLE: self.envoy.stack_token or ""}
        if telemetry.otlp_headers:  # in the environment: a command line is on every ps
            env[HEADERS_VARIABLE] = headers_variable(telemetry.otlp_headers)
        for worker, (name, port) in enumerate(
            zip(self._gateway_names, s.gateway_ports, strict=True)
        ):
            gateway = dataclasses.replace(
                s.gateway,
                host="127.0.0.1",
                port=port,
                telemetry=telemetry,
                shared_slots=(
                    None
                    if shared is None
                    else SharedSlots(path=shared, worker=worker, inherited=self._table_fd)
                ),
                config_snapshot=snapshot,
            )
            self.group.start(
                name,
                gateway_argv(gateway),
                env=env,
                log_path=self._log(name),
                pass_fds=() if self._table_fd is None else (self._table_fd,),
            )
            address = f"127.0.0.1:{port}"
            self.group.wait_until(name, partial(health_answers, address), timeout)
        config = Path(self._tmp.name) / "envoy.yaml"  # private: it may hold API keys
        if self.envoy.direct_dir:
            Path(self.envoy.direct_dir).mkdir(mode=0o700)
        write_private(config, render(self.envoy, secrets_dir=Path(self._tmp.name) / "secrets"))
        if self.envoy.direct_dir:
            self._start_direct(snapshot, self.envoy.direct_dir)
        log_flags, log_env = _envoy_logging(s.gateway.telemetry.log_format, self._log("envoy"))
        self.group.start(
            "envoy",
            [
                str(envoy_binary()),
                "-c",
                str(config),
                "--log-level",
                "warn",
                # Nothing here hot-restarts Envoy: with hot restart on, each Envoy left its
                # shared memory in /dev/shm for good, and needed a base ID of its own.
                "--disable-hot-restart",
                "--file-flush-interval-msec",
                "1000",  # access log lines reach the log within a second, not ten
                *envoy_concurrency_flags(self.envoy),
                *log_flags,
            ],
            env=log_env,
            log_path=self._log("envoy"),
            stdout="ours",  # its access log (docs/operations.md)
        )
        admin = f"http://{self.envoy.admin_address}:{self.envoy.admin_port}"
        self.group.wait_until("envoy", lambda: _http_ok(admin + "/ready"), timeout)
        if s.ops_port is not None:
            self._start_ops(s.ops_port, timeout)
        tmp = Path(self._tmp.name)
        kept = [tmp / OWNER_FILE, config, tmp / "secrets", tmp / "collector-ca.pem"]
        if snapshot is not None:
            kept.append(Path(snapshot))
        # Not the per-client table: the gateways, restarted ones too, count in the file
        # they are handed open, its name removed or not.
        remake: dict[Path, Callable[[], None]] = {}
        if self.envoy.direct_dir:
            # Envoy reads them at its start; the plane rewrites them. Written back as they
            # were at the start, they would route to replicas that may have moved since.
            direct = DirectFiles(Path(self.envoy.direct_dir))
            kept.append(direct.base)
            remake |= {direct.routes: direct.write_first, direct.clusters: direct.write_first}
        files = KeptFiles(tmp, keep=kept, empty=[self.metrics_dir], remake=remake)
        self.group.before_restart = partial(self._before_restart, files)

    def _before_restart(self, files: KeptFiles) -> None:
        """Writes back the files that were removed; restarts Envoy if direct mode's
        directory was among them. Envoy watches the directory it found at its start for the
        renames of the plane's files: once that one is removed, it sees no new directory of
        the same name, and the routes it had stayed for good (a model unpublished, moved or
        given an ACL since still went direct, where it was)."""
        direct = self.envoy.direct_dir
        remade = direct is not None and not Path(direct).is_dir()
        files.restore()
        envoy = dict(self.group.children).get("envoy")
        if remade and envoy is not None and envoy.poll() is None:
            log.warning(
                "direct mode's directory %s was removed: restarting Envoy (pid %d), which "
                "would not read the routes written in the new one",
                direct,
                envoy.pid,
            )
            envoy.terminate()  # the supervisor starts it again, as after any exit

    def _config_snapshot(self) -> str | None:
        """Where the gateway processes read the config from: a snapshot of it (owner-only:
        it names the clients and their rules) in the private directory. Each used to get the
        live file, which it read again on each restart: after an edit, the gateways of one
        stack decided differently, and a typo kept a restarted one from starting at all."""
        s = self.settings
        config = s.config
        if config is None and s.gateway.config_file:
            config = load_config(s.gateway.config_file)
        if config is None:
            return None
        path = Path(self._tmp.name) / "config.snapshot"
        write_snapshot(config, path)
        return str(path)

    def _start_direct(self, snapshot: str | None, directory: str) -> None:
        """Direct mode's control plane (gateway/launch/direct/): one per stack, however many
        gateways, which it leaves out of its crash domain; Envoy starts with files that send
        every call to the gateways, which it rewrites once it has listed the cells."""
        s = self.settings
        if snapshot is None:
            raise StartupError("direct", "direct mode needs the --config file that asks for it")
        argv = [
            *module_argv("gateway.launch.direct"),
            f"--sax-root={s.sax_root}",
            *(
                [f"--gcs-endpoint={s.gateway.client.gcs_endpoint}"]
                if s.gateway.client.gcs_endpoint
                else []
            ),
            f"--config={snapshot}",
            f"--dir={directory}",
            f"--default-timeout={s.gateway.default_timeout!r}",
            f"--log-format={s.gateway.telemetry.log_format}",
        ]
        self.group.start("direct", argv, log_path=self._log("direct"))

    def _start_ops(self, port: int, timeout: float) -> None:
        s = self.settings
        ops = OpsSettings(
            host=s.ops_address,
            port=port,
            metrics_dir=str(self.metrics_dir) if s.gateway.telemetry.metrics else None,
            envoy_admin=f"{self.envoy.admin_address}:{self.envoy.admin_port}",
        )
        argv = ops_argv(ops, s.gateway.telemetry.log_format)
        self.group.start("ops", argv, log_path=self._log("ops"))
        address = f"{_reach(s.ops_address)}:{port}"
        self.group.wait_until("ops", partial(port_open, address), timeout)

    def wait_healthy(self, timeout: float) -> bool:
        """Waits until Envoy's /healthz reports the gateway (and so the cell) healthy."""
        healthy = partial(_http_ok, self.http_url + "/healthz")
        if self.envoy.edge.tls:  # the public port wants TLS (maybe a client certificate)
            healthy = partial(_gateway_healthy, self.envoy)
        try:
            self.group.wait_until("envoy", healthy, timeout)
        except (StartupError, Stopping):
            return False
        return True
