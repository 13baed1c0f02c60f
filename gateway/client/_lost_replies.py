"""Publish and unpublish whose answer was lost, told apart from a real conflict on the retry.

An admin may apply a change and save it, then die (or lose its connection) before its answer
arrives; the client retries UNAVAILABLE, and the retry finds the change already made:
ALREADY_EXISTS for a publish, NOT_FOUND for an unpublish. Only after such an attempt, a
publish that finds the model defined exactly as it asked, and an unpublish that finds gone
a model that was published when it began, have succeeded; any other conflict is raised as
before::

    await publish(admin, request, deadline)     # raises AlreadyExistsError for another model
"""

from __future__ import annotations

import logging

from saxml.protobuf import admin_pb2

from gateway.client._admin import LIST, PUBLISH, UNPUBLISH, Attempts, CellAdmin
from gateway.common.deadline import Deadline
from gateway.common.errors import AlreadyExistsError, NotFoundError

_log = logging.getLogger(__name__)


async def publish(admin: CellAdmin, request: admin_pb2.PublishRequest, deadline: Deadline) -> None:
    """Publishes ``request.model``; ALREADY_EXISTS unless the model is there as asked after
    an attempt whose answer was lost."""
    attempts = Attempts()
    try:
        await admin.call(PUBLISH, request, deadline=deadline, attempts=attempts)
    except AlreadyExistsError:
        if not attempts.uncertain or not await _defined_as(admin, request.model, deadline):
            raise
        _log.info("publish of %s: answer lost, but it was applied", request.model.model_id)


async def unpublish(
    admin: CellAdmin, request: admin_pb2.UnpublishRequest, deadline: Deadline
) -> None:
    """Unpublishes ``request.model_id``; NOT_FOUND unless after an attempt whose answer was
    lost (the model is gone either way, which is what was asked). It is listed first: a
    model that was not published gets its NOT_FOUND, however the attempts go (taken for a
    lost answer's, the unpublish of a model that never was succeeded)."""
    await admin.call(LIST, admin_pb2.ListRequest(model_id=request.model_id), deadline=deadline)
    attempts = Attempts()
    try:
        await admin.call(UNPUBLISH, request, deadline=deadline, attempts=attempts)
    except NotFoundError:
        if not attempts.uncertain:
            raise
        _log.info("unpublish of %s: answer lost, but it was applied", request.model_id)


async def _defined_as(admin: CellAdmin, sent: admin_pb2.Model, deadline: Deadline) -> bool:
    """Whether the admin lists ``sent.model_id`` with the definition that was sent."""
    try:
        listed = await admin.call(
            LIST, admin_pb2.ListRequest(model_id=sent.model_id), deadline=deadline
        )
    except NotFoundError:
        return False
    return any(
        found.model.model_id == sent.model_id
        and found.model.model_path == sent.model_path
        and found.model.checkpoint_path == sent.checkpoint_path
        and found.model.requested_num_replicas == sent.requested_num_replicas
        and dict(found.model.overrides) == dict(sent.overrides)
        for found in listed.published_models
    )
