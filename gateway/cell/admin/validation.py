"""Request validation, following upstream's rules, with INVALID_ARGUMENT on failure."""

from __future__ import annotations

from collections.abc import Sequence

import grpc
from saxml.protobuf import admin_pb2

from gateway.cell._errors import cell_error, invalid_argument
from gateway.cell.models import check_overrides
from gateway.common import limits as lim
from gateway.common.errors import SaxError
from gateway.common.names import (
    check_acl_method,
    check_checkpoint,
    check_model_path,
    outside_cell,
    parse_model_id,
)


def check_model_in_cell(model_id: str, cell: str) -> None:
    if parse_model_id(model_id).cell.id != cell:
        raise invalid_argument(outside_cell(model_id, cell))


def check_model(
    model: admin_pb2.Model, cell: str, *, previous: admin_pb2.Model | None = None
) -> None:
    """Checks a publish, or (``previous``: the definition it replaces) an update. An update is
    checked for what it changes only: what it leaves as it was was taken when it was stored,
    maybe by upstream's admin or an earlier version of this one, whose rules differ (an ACL on
    a method upstream's validator lists, an override key the stand-ins refuse since); checked
    again, it left the model's replicas and ACLs unchangeable."""
    check_model_in_cell(model.model_id, cell)
    old = admin_pb2.Model() if previous is None else previous
    if previous is None or model.model_path != old.model_path:
        check_model_path(model.model_path)
        _bounded("model path", model.model_path, lim.MAX_MODEL_PATH_CHARS)
    if previous is None or model.checkpoint_path != old.checkpoint_path:
        check_checkpoint(model.checkpoint_path)
        _bounded("checkpoint", model.checkpoint_path, lim.MAX_CHECKPOINT_CHARS)
    if previous is None or model.requested_num_replicas != old.requested_num_replicas:
        _check_replicas(model.requested_num_replicas)
    if previous is None or dict(model.overrides) != dict(old.overrides):
        _check_overrides(model)
    if previous is None or model.admin_acl != old.admin_acl:
        _bounded("ACL", model.admin_acl, lim.MAX_ACL_CHARS)
    for method, acl in model.acls.items.items():
        if previous is None or old.acls.items.get(method) != acl:
            check_acl_method(method)
            _bounded("ACL", acl, lim.MAX_ACL_CHARS)


def _bounded(what: str, value: str, limit: int) -> None:
    """Sane sizes: what is published is saved in state.proto and sent to every server."""
    if reason := lim.too_long(value, limit):
        raise invalid_argument(f"{what} {lim.quote(value)}: {reason}")


def _check_replicas(replicas: int) -> None:
    if replicas < 0:
        raise invalid_argument(f"number of replicas {replicas} must be non-negative")
    if replicas > lim.MAX_REPLICAS:
        raise invalid_argument(
            f"number of replicas {replicas} is over the limit of {lim.MAX_REPLICAS}"
        )


def _check_overrides(model: admin_pb2.Model) -> None:
    if len(model.overrides) > lim.MAX_OVERRIDES:
        raise invalid_argument(
            f"{len(model.overrides)} overrides is over the limit of {lim.MAX_OVERRIDES}"
        )
    for key, value in model.overrides.items():
        if len(key) > lim.MAX_OVERRIDE_KEY_CHARS or len(value) > lim.MAX_OVERRIDE_VALUE_CHARS:
            raise invalid_argument(f"override {lim.quote(key)} is too long")
    check_overrides(model.model_path, model.overrides)


def check_update(previous: admin_pb2.Model, change: admin_pb2.Model, cell: str) -> None:
    # The checkpoint and overrides may change (the model is reloaded); its path may not, as
    # upstream's validator rules (a real cell refuses it), nor what names the deployment.
    if change.model_path != previous.model_path:
        raise invalid_argument("invalid model update: model path can't be changed")
    if change.uuid and change.uuid != previous.uuid:
        raise cell_error(
            grpc.StatusCode.FAILED_PRECONDITION,
            "uuid can't be changed: it names this deployment of the model",
        )
    check_model(change, cell, previous=previous)


def unservable(models: Sequence[admin_pb2.Model], cell: str) -> list[str | None]:
    """For each entry of a state.proto, why the admin of ``cell`` cannot serve it (None: it
    can). A model stored twice is served from its last entry, as upstream's admin restores it."""
    last = {model.model_id: i for i, model in enumerate(models)}
    reasons: list[str | None] = []
    for i, model in enumerate(models):
        try:
            check_model_in_cell(model.model_id, cell)
        except SaxError as exc:
            reasons.append(exc.message)
            continue
        reasons.append(None if last[model.model_id] == i else "a later entry of it is served")
    return reasons


def check_watch(request: admin_pb2.WatchLocRequest) -> None:
    parse_model_id(request.model_id)
    if request.seqno < 0:
        raise invalid_argument(f"WatchLoc seqno {request.seqno} must be non-negative")


def check_join(request: admin_pb2.JoinRequest, theirs: str | None, cell: str) -> None:
    """``theirs``: the cell the model server says it serves (None: it did not say)."""
    if not request.address:
        raise invalid_argument("JoinRequest.address cannot be empty")
    if theirs is not None and theirs != cell:
        # Worded as a model of another cell is refused, so `cell_of_refusal` reads it too.
        raise invalid_argument(
            f"model server {lim.quote(request.address)} of cell {lim.quote(theirs)} must be within"
            f" Sax cell {cell!r} to join this admin"
        )
    if not request.HasField("model_server"):
        raise invalid_argument("JoinRequest.model_server is missing")
