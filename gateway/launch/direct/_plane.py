"""The control plane: lists every cell's models through the Sax client, and whenever what
Envoy should route directly changes, rewrites the CDS file, then the RDS file (the new
clusters are there before a route names them; a route goes before its cluster).

One process per stack (`saxgw up` starts it beside the gateways: a worker among several
would have to be chosen and would take the writer down with its calls); started again, it
writes everything from scratch."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Sequence

from gateway.client import Client, ClientSettings, SaxError
from gateway.common.failurelog import FailureLog
from gateway.edge import EdgeConfig
from gateway.launch.direct._files import DirectFiles
from gateway.launch.direct._listings import CellListings
from gateway.launch.direct._resources import (
    Model,
    cluster,
    direct_models,
    route_table,
)

log = logging.getLogger(__name__)
#: A failed listing of the cells is logged when it starts, then once a minute while it lasts,
#: and once when it ends (each cell's own listing too: `CellListings`).
_LISTING = "listing"

#: Seconds between two listings: how long a publish, an unpublish, a replica moving or an
#: ACL set takes at most to reach Envoy (docs/config.md).
REFRESH_S = 0.5
#: Seconds between two listings of SAX_ROOT's cells (a listing of a bucket, on gs://).
CELLS_EVERY_S = 10.0
#: Seconds Envoy is given to take new clusters before a route names them.
_CLUSTERS_FIRST_S = 0.2
#: Seconds the cluster of a model that no longer goes direct (unpublished, given an ACL, its
#: replicas gone a moment while they start again) stays after its route: a call routed
#: before holds the cluster through its backed-off retries (_resources.RETRIES, 9 s at
#: most), which failed at once ("no healthy upstream") once the cluster was taken away 0.2 s
#: after its route, while a replica started again would have answered them.
CLUSTERS_LINGER_S = 10.0


class Plane:
    """Writes ``files`` for ``edge`` from what ``client`` lists; ``deadline``: the gateways'
    default deadline of a unary call (``--default-timeout``)."""

    def __init__(
        self, client: Client, files: DirectFiles, edge: EdgeConfig, deadline: float
    ) -> None:
        self._client, self._files, self._edge, self._deadline = client, files, edge, deadline
        self._base = files.read_base()
        self._written: Sequence[Model] | None = None
        self._inodes: tuple[int, int] | None = None
        self._written_logged: Sequence[Model] | None = None
        self._lingering: dict[str, tuple[Model, float]] = {}  # clusters kept after routes
        self._cells: list[str] = []
        self._cells_at = -math.inf
        self._listings = CellListings(client)
        self._failures = FailureLog(log)

    async def _models(self) -> list[Model]:
        """Every cell's models; a cell whose admin does not answer counts with the models it
        last listed, so that it keeps its routes and the other cells' changes still reach
        Envoy (one cell down used to fail the whole listing: a model given an ACL in another
        cell went on going direct, unchecked, for as long as it was down), without waiting
        for it (`CellListings`)."""
        if not self._cells or time.monotonic() - self._cells_at > CELLS_EVERY_S:
            self._cells = await self._client.list_cells()
            self._cells_at = time.monotonic()
        return await self._listings.models(self._cells)

    async def refresh(self) -> None:
        """Lists the cells once; writes the files if what goes direct changed (or a file
        is gone, or is not the one it wrote, or a cluster's lingering ended). An admin that
        does not answer leaves its cell's routes as they are: the replicas it last reported
        go on serving, as they do for the gateways."""
        try:
            models = direct_models(await self._models(), self._edge)
        except SaxError as exc:  # SAX_ROOT's cells could not be listed
            message = f"direct mode: listing the cells failed, routes kept: {exc}"
            self._failures.failed((_LISTING, "cells"), message)
            return
        self._failures.succeeded((_LISTING, "cells"), "direct mode: listing the cells")
        lingered = any(until <= time.monotonic() for _, until in self._lingering.values())
        if models == self._written and self._intact() and not lingered:
            return
        await self._write(models)
        if models != self._written_logged:
            log.info("direct mode: %d model(s) routed directly", len(models))
            self._written_logged = list(models)

    def _intact(self) -> bool:
        """Whether both files are still the ones this plane last wrote."""
        return self._inodes is not None and self._files.written() == self._inodes

    async def _write(self, models: Sequence[Model]) -> None:
        now = time.monotonic()
        ids = {m.model_id for m in models}
        coming = ids - {m.model_id for m in self._written or ()}
        for m in self._written or ():
            if m.model_id not in ids and m.model_id not in self._lingering:
                self._lingering[m.model_id] = (m, now + CLUSTERS_LINGER_S)
        self._lingering = {
            model_id: (m, until)
            for model_id, (m, until) in self._lingering.items()
            if model_id not in ids and until > now
        }
        clusters = [cluster(m, self._edge) for m in models]
        clusters += [cluster(m, self._edge) for m, _ in self._lingering.values()]
        # The routes name models only: replicas moving (each model server started again) or
        # a lingering cluster's end change the clusters alone, and Envoy parsed the whole
        # route table again for nothing (1.1 MB at 500 models).
        same_routes = [m.model_id for m in models] == [m.model_id for m in self._written or ()]
        if same_routes and self._intact():
            self._files.write_clusters(clusters)
            self._written, self._inodes = list(models), self._files.written()
            return
        table = route_table(self._base, models, self._edge, self._deadline)
        if coming:
            # New clusters first: a route to a cluster Envoy does not have yet fails.
            self._files.write_clusters(clusters)
            await asyncio.sleep(_CLUSTERS_FIRST_S)
        self._files.write_routes(table)
        if not coming:
            # Then the clusters (replicas moved, a lingering ended): after the routes, so
            # that none is taken away under its route.
            await asyncio.sleep(_CLUSTERS_FIRST_S)
            self._files.write_clusters(clusters)
        self._written = list(models)
        self._inodes = self._files.written()

    async def run(self, every: float = REFRESH_S) -> None:
        try:
            while True:
                await self.refresh()
                self._files.beat()
                await asyncio.sleep(every)
        finally:
            self._listings.close()


async def serve(
    settings: ClientSettings, files: DirectFiles, edge: EdgeConfig, deadline: float
) -> None:
    """Runs the control plane until cancelled."""
    client = Client(settings)
    try:
        await Plane(client, files, edge, deadline).run()
    finally:
        await client.close()
