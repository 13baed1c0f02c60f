"""Changes to a published model: read it, change it, Update it with the result.

Sax's Update takes the whole model, so two changes that read it at once would each write back
what the other changed. Changes of one model through one client wait for each other; through
several clients (gateway processes), the Update carries the revision it was computed from:
the embedded admin refuses it (ABORTED) if another change came in between, and it is made
again from a fresh read. An upstream admin ignores the revision: there, as with upstream's
saxutil, the last writer wins::

    await changes.apply(model, lambda m: setattr(m, "admin_acl", "team"), deadline)
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable

from saxml.protobuf import admin_pb2

from gateway import naming
from gateway.client._admin import LIST, UPDATE, CellAdmin, backoff_delays
from gateway.common.deadline import Deadline
from gateway.common.errors import (
    AbortedError,
    DeadlineExceededError,
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
)
from gateway.common.revision import EXPECT_KEY, revision


async def list_one(
    admin: CellAdmin, model: naming.ModelId, deadline: Deadline
) -> admin_pb2.PublishedModel:
    """The model as ``admin`` lists it; NOT_FOUND if it is not published."""
    request = admin_pb2.ListRequest(model_id=model.id)
    response = await admin.call(LIST, request, deadline=deadline)
    found: list[admin_pb2.PublishedModel] = [
        m for m in response.published_models if m.model.model_id == model.id
    ]
    if len(found) != 1:
        raise NotFoundError(f"model {model} is not published")
    return found[0]


class ModelChanges:
    """A client's changes to published models, one at a time per model."""

    def __init__(
        self,
        *,
        admin_for: Callable[[naming.CellId], CellAdmin],
        forget: Callable[[str], None],
    ) -> None:
        """``forget`` drops what the client knows of a model (but its replicas), after each
        Update of it."""
        self._admin_for = admin_for
        self._forget = forget
        # One change of a model at a time (held while one runs: the entry then goes away).
        self._updating: weakref.WeakValueDictionary[str, asyncio.Lock] = (
            weakref.WeakValueDictionary()
        )

    async def apply(
        self,
        model: naming.ModelId,
        change: Callable[[admin_pb2.Model], None],
        deadline: Deadline,
    ) -> admin_pb2.PublishedModel:
        """Reads the model, applies ``change`` to it, and Updates it with the result, which it
        returns (with the serving addresses read)."""
        lock = self._updating.get(model.id)
        if lock is None:
            lock = self._updating[model.id] = asyncio.Lock()
        try:
            async with asyncio.timeout(deadline.timeout(f"update of {model.id}")):
                await lock.acquire()
        except TimeoutError:
            raise DeadlineExceededError(
                f"update of {model.id} exceeded its deadline waiting for another update of it"
            ) from None
        try:
            delays = backoff_delays()
            while True:
                published = await list_one(self._admin_for(model.cell), model, deadline)
                current = published.model
                expect = revision(current)
                change(current)
                try:
                    await self._update(model, current, deadline, expect=expect)
                    return published
                except AbortedError:
                    delay = next(delays)
                    if not deadline.allows(delay):
                        raise
                    await asyncio.sleep(delay)  # another writer's change came first
        finally:
            lock.release()

    async def _update(
        self,
        model: naming.ModelId,
        definition: admin_pb2.Model,
        deadline: Deadline,
        *,
        expect: str,
    ) -> None:
        request = admin_pb2.UpdateRequest(model=definition)
        try:
            await self._admin_for(model.cell).call(
                UPDATE, request, deadline=deadline, metadata=((EXPECT_KEY, expect),)
            )
        except InvalidArgumentError as exc:
            # An upstream admin refuses some changes ("checkpoint path can't be changed") as
            # InvalidArgument: the request is fine, the cell does not allow it.
            # Its message ends in the code's name, as upstream's do: the new code's, then.
            if "can't be changed" not in exc.message:
                raise
            message = exc.message.removesuffix(": InvalidArgument")
            raise FailedPreconditionError(f"{message}: FailedPrecondition") from exc
        finally:
            self._forget(model.id)
