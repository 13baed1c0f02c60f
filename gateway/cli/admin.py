"""Admin commands, as saxutil names them: ls, publish, unpublish, update, stats, watch, wait,
getacl and setacl."""

from __future__ import annotations

import argparse
import json
import time

from saxgateway.v1 import gateway_pb2 as pb

from gateway.cli._common import (
    Commands,
    Session,
    add_command,
    fields,
    pair,
    table,
    to_dict,
    to_json,
)


def register(commands: Commands) -> None:
    """Adds the admin commands."""
    ls = add_command(
        commands, "ls", "[ID]", "list all cells, all models in a cell, or a particular model", _ls
    )
    ls.add_argument("id", nargs="?", metavar="ID", help="a cell (/sax/test) or a model ID")

    publish = add_command(
        commands,
        "publish",
        "ID MODEL_PATH CHECKPOINT REPLICAS [k=v ...]",
        "publish a model",
        _publish,
    )
    publish.add_argument("id", metavar="ID", help="model ID, e.g. /sax/test/lm2b")
    publish.add_argument("model_path", metavar="MODEL_PATH")
    publish.add_argument("checkpoint", metavar="CHECKPOINT", help='"None" for random weights')
    publish.add_argument("replicas", metavar="REPLICAS", type=int)
    publish.add_argument("overrides", metavar="k=v", type=pair, nargs="*", help="overrides")

    unpublish = add_command(commands, "unpublish", "ID", "unpublish a model", _unpublish)
    unpublish.add_argument("id", metavar="ID")

    update = add_command(
        commands,
        "update",
        "ID [--model-path P] [--checkpoint C] [--replicas N] [--clear-overrides] [k=v ...]",
        "update a model (a new path, checkpoint or overrides reloads it)",
        _update,
    )
    update.add_argument("id", metavar="ID")
    update.add_argument("--model-path", default="")
    update.add_argument("--checkpoint", default="")
    update.add_argument("--replicas", type=int)
    update.add_argument(
        "--clear-overrides", action="store_true", help="remove every override (unless k=v given)"
    )
    update.add_argument(
        "overrides", metavar="k=v", type=pair, nargs="*", help="new overrides, replacing all"
    )

    stats = add_command(
        commands,
        "stats",
        "[ID]",
        "show model-server types and replicas of cells or a model",
        _stats,
    )
    stats.add_argument("id", nargs="?", metavar="ID", help="a cell or a model; default: all cells")

    watch = add_command(
        commands, "watch", "ID", "print a model's serving addresses as they change", _watch
    )
    watch.add_argument("id", metavar="ID")

    wait = add_command(
        commands, "wait", "ID [REPLICAS]", "wait until a model has ready replicas", _wait
    )
    wait.add_argument("id", metavar="ID")
    wait.add_argument("replicas", metavar="REPLICAS", type=int, nargs="?", default=1)

    getacl = add_command(commands, "getacl", "ID", "show the ACL of a cell or model", _getacl)
    getacl.add_argument("id", metavar="ID")

    setacl = add_command(commands, "setacl", "ID ACL", "set the ACL of a cell or model", _setacl)
    setacl.add_argument("id", metavar="ID")
    setacl.add_argument("acl", metavar="ACL", help='the new ACL; "" clears it')


def is_cell(name: str) -> bool:
    """Whether ``name`` names a cell (/sax/test) rather than a model (/sax/test/lm)."""
    return len(name.strip("/").split("/")) == 2


def model_table(models: list[pb.ModelInfo]) -> str:
    """A cell's models, one row each."""
    rows = [
        (m.model, m.model_path, m.checkpoint, f"{m.active_replicas}/{m.max_replicas}")
        for m in models
    ]
    return table(("MODEL ID", "MODEL PATH", "CHECKPOINT", "REPLICAS"), rows)


def model_detail(model: pb.ModelInfo) -> str:
    """One model, a field per line, as `saxutil ls ID` shows it."""
    return fields(
        [
            ("MODEL ID", model.model),
            ("MODEL PATH", model.model_path),
            ("CHECKPOINT", model.checkpoint),
            ("REPLICAS", f"{model.active_replicas} active of {model.max_replicas} requested"),
            ("ADDRESSES", ", ".join(model.addresses) or "(none yet)"),
            ("METHODS", ", ".join(model.methods)),
            ("OVERRIDES", ", ".join(f"{k}={v}" for k, v in sorted(model.overrides.items()))),
        ]
    )


def _ls(session: Session, args: argparse.Namespace) -> None:
    if args.id is None:
        cells: pb.ListCellsResponse = session.stub.ListCells(
            pb.ListCellsRequest(), timeout=session.timeout
        )
        session.emit(cells, table(("CELL",), [(c,) for c in cells.cells]))
    elif is_cell(args.id):
        listed: pb.ListModelsResponse = session.stub.ListModels(
            pb.ListModelsRequest(sax_cell=args.id), timeout=session.timeout
        )
        session.emit(listed, model_table(list(listed.models)))
    else:
        got: pb.GetModelResponse = session.stub.GetModel(
            pb.GetModelRequest(model=args.id), timeout=session.timeout
        )
        session.emit(got, model_detail(got.model))


def _publish(session: Session, args: argparse.Namespace) -> None:
    request = pb.PublishModelRequest(
        model=args.id,
        model_path=args.model_path,
        checkpoint=args.checkpoint,
        replicas=args.replicas,
        overrides=dict(args.overrides),
    )
    done: pb.PublishModelResponse = session.stub.PublishModel(request, timeout=session.timeout)
    session.emit(
        done,
        f"published {done.model}: {done.path}, checkpoint {done.checkpoint}, "
        f"{done.replicas} replica(s)",
    )


def _unpublish(session: Session, args: argparse.Namespace) -> None:
    request = pb.UnpublishModelRequest(model=args.id)
    done: pb.UnpublishModelResponse = session.stub.UnpublishModel(request, timeout=session.timeout)
    session.emit(done, f"unpublished {done.model}")


def _update(session: Session, args: argparse.Namespace) -> None:
    request = pb.UpdateModelRequest(
        model=args.id,
        model_path=args.model_path,
        checkpoint=args.checkpoint,
        overrides=dict(args.overrides),
        clear_overrides=args.clear_overrides,
    )
    if args.replicas is not None:
        request.replicas = args.replicas
    done: pb.UpdateModelResponse = session.stub.UpdateModel(request, timeout=session.timeout)
    overrides = " ".join(f"{k}={v}" for k, v in sorted(done.overrides.items())) or "none"
    session.emit(
        done,
        f"updated {done.model}: {done.path}, checkpoint {done.checkpoint}, "
        f"{done.replicas} replica(s), overrides {overrides}",
    )


def _stats(session: Session, args: argparse.Namespace) -> None:
    if args.id is not None:
        names = [args.id]
    else:
        cells: pb.ListCellsResponse = session.stub.ListCells(
            pb.ListCellsRequest(), timeout=session.timeout
        )
        names = list(cells.cells)
    results: list[tuple[str, pb.GetStatsResponse]] = [
        (name, session.stub.GetStats(pb.GetStatsRequest(name=name), timeout=session.timeout))
        for name in names
    ]
    if session.json:
        by_name = {name: to_dict(stats) for name, stats in results}
        session.out.write(json.dumps(by_name, indent=2) + "\n")
        return
    servers = [
        (name, s.chip_type, s.chip_topology, s.replicas)
        for name, stats in results
        for s in stats.server_types
    ]
    paths = [
        (name, path, count)
        for name, stats in results
        for path, count in sorted(stats.servers_by_model_path.items())
    ]
    session.out.write(table(("NAME", "CHIP TYPE", "CHIP TOPOLOGY", "SERVERS"), servers) + "\n\n")
    session.out.write(table(("NAME", "MODEL PATH", "SERVERS"), paths) + "\n")


def _watch(session: Session, args: argparse.Namespace) -> None:
    stream = session.stub.WatchAddresses(
        pb.WatchAddressesRequest(model=args.id), timeout=session.timeout
    )
    try:
        for update in stream:
            if update.HasField("error"):
                continue  # the call's status follows and is reported as an RpcError
            if session.json:
                session.out.write(to_json(update) + "\n")
            else:
                addresses = ", ".join(update.addresses) or "(none)"
                stamp = time.strftime("%H:%M:%S")
                session.out.write(f"{stamp}  {len(update.addresses)} address(es): {addresses}\n")
            session.out.flush()
    except KeyboardInterrupt:
        stream.cancel()  # Ctrl-C is how a watch ends


def _wait(session: Session, args: argparse.Namespace) -> None:
    request = pb.WaitForReadyRequest(model=args.id, replicas=args.replicas)
    done: pb.WaitForReadyResponse = session.stub.WaitForReady(request, timeout=session.timeout)
    session.emit(done, f"{done.model}: {done.active_replicas} replica(s) ready")


def _getacl(session: Session, args: argparse.Namespace) -> None:
    got: pb.GetAclResponse = session.stub.GetAcl(
        pb.GetAclRequest(name=args.id), timeout=session.timeout
    )
    session.emit(got, got.acl or "(no ACL)")


def _setacl(session: Session, args: argparse.Namespace) -> None:
    request = pb.SetAclRequest(name=args.id, acl=args.acl)
    done: pb.SetAclResponse = session.stub.SetAcl(request, timeout=session.timeout)
    session.emit(
        done, f"{done.name}: ACL set to {done.acl!r}" if done.acl else f"{done.name}: ACL cleared"
    )
