"""What the admin writes back to state.proto beside the models it serves: the file may come
from another writer (a newer Sax, with fields this admin does not know; an older one, with the
deprecated ``last_generation``; another cell's state copied here), and nothing it holds is
lost by a save::

    stored, served = Stored.read(state, cell="/sax/test", url="/root/fsroot/sax/test/state.proto")
    stored.state(specs)  # the sax.State to save, with ``specs`` the models served now
"""

from __future__ import annotations

import logging

from saxml.protobuf import admin_pb2

from gateway.cell.admin.validation import unservable
from gateway.common import limits as lim

_log = logging.getLogger("gateway.cell.admin")


class Stored:
    def __init__(self) -> None:
        # The file's fields beside its models, as read.
        self._beside_models = admin_pb2.State()
        #: Its entries this admin cannot serve (another cell's model, an invalid ID, an
        #: earlier copy of a model stored twice): written back as read, never served.
        self.unserved: list[admin_pb2.Model] = []

    @classmethod
    def read(
        cls, state: admin_pb2.State, *, cell: str, url: str
    ) -> tuple[Stored, list[admin_pb2.Model]]:
        """The file's contents ``state`` as kept, and the models to serve; logs a WARNING
        naming each entry not served (``url`` names the file)."""
        stored, served = cls(), []
        stored._beside_models.CopyFrom(state)
        stored._beside_models.ClearField("models")
        for spec, why in zip(state.models, unservable(state.models, cell), strict=True):
            if why is None:
                served.append(spec)
                continue
            stored.unserved.append(spec)
            _log.warning(
                "%s holds %s (%s), which this admin does not serve; it is kept there as it is",
                url,
                lim.quote(spec.model_id),
                why,
            )
        return stored, served

    def without(self, model_id: str) -> list[admin_pb2.Model]:
        """The entries not served once ``model_id`` is unpublished: its earlier copies go too,
        or they would be served again at a restart."""
        return [spec for spec in self.unserved if spec.model_id != model_id]

    def state(
        self, specs: list[admin_pb2.Model], unserved: list[admin_pb2.Model] | None = None
    ) -> admin_pb2.State:
        """The sax.State to save when ``specs`` are served (``unserved``: the entries not
        served, if they change)."""
        state = admin_pb2.State()
        state.CopyFrom(self._beside_models)
        # First: of a model stored twice, the copy served stays the last one.
        state.models.extend(self.unserved if unserved is None else unserved)
        state.models.extend(sorted(specs, key=lambda spec: spec.model_id))
        return state
