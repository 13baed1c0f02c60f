"""Request validation, following upstream's rules, with INVALID_ARGUMENT on failure."""

from __future__ import annotations

import grpc
from saxml.protobuf import admin_pb2

from gateway.cell._errors import cell_error, invalid_argument
from gateway.common.names import check_checkpoint, check_model_path, parse_model_id

#: Data methods an ACL may name (upstream's list).
METHODS_WITH_ACLS = frozenset(
    {
        "am.recognize",
        "lm.score",
        "lm.generate",
        "lm.generate_stream",
        "lm.embed",
        "lm.gradient",
        "mm.generate",
        "vm.classify",
        "vm.generate",
        "vm.embed",
        "vm.detect",
        "vm.image_to_text",
        "vm.image_to_image",
        "vm.text_and_image_to_text",
        "vm.video_to_text",
    }
)


def check_model_in_cell(model_id: str, cell: str) -> None:
    if parse_model_id(model_id).cell.id != cell:
        raise invalid_argument(f"model {model_id} must be within Sax cell {cell!r}")


def check_model(model: admin_pb2.Model, cell: str) -> None:
    check_model_in_cell(model.model_id, cell)
    check_model_path(model.model_path)
    check_checkpoint(model.checkpoint_path)
    if model.requested_num_replicas < 0:
        raise invalid_argument(
            f"number of replicas {model.requested_num_replicas} must be non-negative"
        )
    for method in model.acls.items:
        if method not in METHODS_WITH_ACLS:
            raise invalid_argument(f"{method} is not a valid method name for an ACL")


def check_update(previous: admin_pb2.Model, change: admin_pb2.Model) -> None:
    # Model path, checkpoint and overrides may change (the model is reloaded); what names the
    # deployment may not.
    if change.uuid and change.uuid != previous.uuid:
        raise cell_error(
            grpc.StatusCode.FAILED_PRECONDITION,
            "uuid can't be changed: it names this deployment of the model",
        )


def check_watch(request: admin_pb2.WatchLocRequest) -> None:
    parse_model_id(request.model_id)
    if request.seqno < 0:
        raise invalid_argument(f"WatchLoc seqno {request.seqno} must be non-negative")


def check_join(request: admin_pb2.JoinRequest) -> None:
    if not request.address:
        raise invalid_argument("JoinRequest.address cannot be empty")
    if not request.HasField("model_server"):
        raise invalid_argument("JoinRequest.model_server is missing")
