"""Settings of an embedded Sax cell: one frozen object built at the edge and passed down.

    settings = CellSettings(sax_root="/tmp/root", num_model_servers=2, poll_interval=0.2)

Defaults mirror upstream Sax (admin polls model servers every 10 s, drops one that has not
answered for 30 s, model servers re-join every 15 minutes). Tests shrink them.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_CELL = "/sax/test"
DEFAULT_ADMIN_PORT = 10000
"""The admin port of ``python -m gateway.cell`` and ``saxgw up`` when given none."""
DEFAULT_MODEL_SERVER_PORT = 10001
"""The first model server's port of ``saxgw up`` when given none."""


@dataclass(frozen=True, kw_only=True)
class CellSettings:
    """Everything the admin server, the model servers and the launcher need to know."""

    #: Where cells publish their config.proto and location.proto (local dir or gs:// URL).
    sax_root: str
    #: The cell, "/sax/<name>".
    cell: str = DEFAULT_CELL
    #: Where the admin persists state.proto; None means "<sax_root>/fsroot". Only used when the
    #: cell is created: an existing config.proto keeps its own fs_root.
    fs_root: str | None = None
    #: Endpoint of a GCS emulator for gs:// roots (tests, local runs).
    gcs_endpoint: str | None = None
    #: Interface servers bind to and advertise.
    host: str = "127.0.0.1"
    #: Admin port; 0 picks a free one.
    admin_port: int = 0
    #: How many model servers the launcher starts.
    num_model_servers: int = 1
    #: Ports of the model servers, in order; missing entries (or 0) pick free ports.
    model_server_ports: tuple[int, ...] = ()
    #: How often the admin polls model servers (GetStatus) and reassigns replicas.
    poll_interval: float = 10.0
    #: The admin drops a model server whose GetStatus has failed for this long. A model server
    #: that has not been polled for this long re-joins, since the admin has forgotten it.
    server_dead_after: float = 30.0
    #: How long models restored from state.proto wait for the servers that had them to re-join
    #: before new replicas are placed; None: server_dead_after (a running server notices the
    #: restart when the new admin does not poll it). 0 when the model servers start afresh too.
    adopt_wait: float | None = None
    #: Model servers re-join at this period even when nothing changed.
    rejoin_interval: float = 900.0
    #: How often model servers re-read location.proto to notice a moved admin.
    location_watch_interval: float = 5.0
    #: Deadline of the admin's calls to model servers and of Join calls.
    rpc_timeout: float = 10.0
    #: A server that exits is restarted after a wait that doubles, up to this, while it keeps
    #: exiting (`gateway.cell._supervise`).
    max_restart_backoff: float = 30.0
    #: At most this many models share one model server. Upstream's default assigner places one
    #: model per server; the CPU stand-ins are small, so several fit.
    max_models_per_server: int = 16
    #: Seed of the random-weight stand-in models.
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.sax_root:
            raise ValueError("sax_root must not be empty")
        if self.num_model_servers < 0:
            raise ValueError("num_model_servers must be >= 0")
        positive = ("poll_interval", "server_dead_after", "rejoin_interval", "rpc_timeout")
        for name in (*positive, "max_restart_backoff"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0")
        if self.location_watch_interval <= 0:
            raise ValueError("location_watch_interval must be > 0")
        if self.max_models_per_server < 1:
            raise ValueError("max_models_per_server must be >= 1")

    @property
    def effective_fs_root(self) -> str:
        """The fs root written into a newly created cell's config.proto."""
        return self.fs_root or self.sax_root.rstrip("/") + "/fsroot"

    def model_server_port(self, index: int) -> int:
        """The port of the index-th model server (0: pick a free one)."""
        return self.model_server_ports[index] if index < len(self.model_server_ports) else 0
