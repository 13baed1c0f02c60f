"""Admin commands, as saxutil names them: ls, publish, unpublish, update, update_checkpoint,
stats, watch, wait, getacl and setacl."""

from __future__ import annotations

import argparse
import random
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import partial
from typing import TypedDict

import grpc
from saxgateway.v1 import gateway_pb2 as pb

from gateway.cli._common import Commands, Incomplete, Session
from gateway.cli._inputs import UsageError, pair
from gateway.cli._listing import every_model
from gateway.cli._output import (
    csv_table,
    ended_on_hangup,
    json_text,
    table,
    to_dict,
    to_json,
)
from gateway.cli._table import ID, arg, command, register_all
from gateway.common.flags import replicas
from gateway.common.logs import printable
from gateway.common.names import ACL_METHODS

NAME = arg("id", nargs="?", metavar="ID", help="/sax (all cells), a cell (/sax/test) or a model ID")


def is_root(name: str) -> bool:
    """Whether ``name`` is /sax, which `saxutil ls /sax` lists the cells of."""
    return name.strip("/") == "sax"


def is_cell(name: str) -> bool:
    """Whether ``name`` names a cell (/sax/test) rather than a model (/sax/test/lm)."""
    return len(name.strip("/").split("/")) == 2


def _name(model_id: str) -> str:
    """A model's name within its cell ("lm" of /sax/test/lm), as saxutil's tables show it;
    all of what follows the cell (an admin's state may hold /sax/test/x/../y, not model y)."""
    return model_id.split("/", 3)[-1]


def _render(headers: Sequence[str], rows: Iterable[Sequence[object]], csv: bool) -> str:
    """A table with saxutil's columns, without its borders: headers upper-cased (its table
    writer's) or, with ``csv``, as saxutil's ``-csv`` writes them (as spelled)."""
    if csv:
        return csv_table(headers, rows)
    return table([h.upper() for h in headers], rows)


def cell_table(cells: Sequence[str], csv: bool = False) -> str:
    """The cells, numbered and by bare name, as `saxutil ls /sax` lists them."""
    return _render(("#", "Cell"), [(i, _name(c)) for i, c in enumerate(cells)], csv)


def model_table(models: Sequence[pb.ModelInfo], csv: bool = False, methods: bool = False) -> str:
    """A cell's models, numbered and by name within the cell, as `saxutil ls /sax/CELL`
    lists them (ListModels sorts them by ID, as saxutil does); with ``methods`` (saxutil's
    ``-details``, given explicitly), each model's data methods too."""
    if methods:
        rows = [(i, _name(m.model), ", ".join(m.methods)) for i, m in enumerate(models)]
        return _render(("#", "Model ID", "Methods"), rows, csv)
    return _render(("#", "Model ID"), [(i, _name(m.model)) for i, m in enumerate(models)], csv)


# saxutil's headers.
_DETAIL = (
    "Model",
    "Model Path",
    "Checkpoint Path",
    "# of Replicas",
    "(Selected) ReplicaAddress",
    "Methods",
)


def model_detail(
    model: pb.ModelInfo,
    pick: Callable[[Sequence[str]], str] = random.choice,
    csv: bool = False,
    details: bool = True,
    acls: bool = True,
) -> str:
    """One model: saxutil's row (its replica count is the serving one, and it shows one
    address ``pick``ed from them), its method ACLs, then what the gateway knows beyond
    saxutil's row; ``details`` and ``acls`` (saxutil's ``-details``, ``-acls``) leave the
    model's tables or the ACLs' out."""
    addresses = list(model.addresses)
    row = (
        _name(model.model),
        model.model_path,
        model.checkpoint,
        model.active_replicas,
        pick(addresses) if addresses else "",
        ", ".join(model.methods),
    )
    # The load error sits beside the requested count it explains: 0 of N serve because of it.
    extra = (
        model.max_replicas,
        ", ".join(f"{k}={v}" for k, v in sorted(model.overrides.items())),
        model.load_error,
    )
    tables = [
        _render(_DETAIL, [row], csv) if details else "",
        method_acl_table(model.method_acls, csv) if acls else "",
        _render(("Requested Replicas", "Overrides", "Load Error"), [extra], csv) if details else "",
    ]
    # saxutil's -csv prints its tables one after the other, with no blank line between.
    return ("\n" if csv else "\n\n").join(t for t in tables if t)


def method_acl_table(acls: Mapping[str, str], csv: bool = False) -> str:
    """A model's data method ACLs by method name, as `saxutil ls MODEL` prints them after
    the model's row (the header alone when it has none)."""
    return _render(("Method", "ACL"), sorted(acls.items()), csv)


#: On stderr after an empty listing of every cell: a gateway in front of a root that holds no
#: cell printed empty tables and nothing else (exit 0), as if the cell had no models.
NO_CELLS = (
    "saxgw: the gateway's SAX_ROOT holds no Sax cell (no sax/<cell>/location.proto): start a "
    "cell there, or give the gateway the SAX_ROOT of a running one (its log names the root)"
)


@command(
    "ls",
    "[ID] [--csv] [--[no-]details] [--[no-]acls]",
    "list all cells, all models in a cell, or a particular model",
    NAME,
    arg("--csv", action="store_true", help="print the tables as saxutil's -csv does"),
    arg(
        "--details",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="a model's tables (on unless --no-details); for a cell, each model's methods "
        "(off unless given, as saxutil's -details)",
    ),
    arg(
        "--acls",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="a model's method ACLs (saxutil's -acls)",
    ),
)
def ls(session: Session, args: argparse.Namespace) -> None:
    details = args.details is not False
    if not (details or args.acls) and not (args.id is None or is_root(args.id) or is_cell(args.id)):
        raise UsageError("--no-details and --no-acls leave nothing to print; drop one")
    if args.id is None or is_root(args.id):
        cells = session.call(session.stub.ListCells, pb.ListCellsRequest())
        session.emit(cells, cell_table(cells.cells, args.csv))
        if not cells.cells:
            print(NO_CELLS, file=sys.stderr)
    elif is_cell(args.id):
        # A page at a time: a big cell's whole listing can pass the message limit.
        listed = every_model(partial(session.call, session.stub.ListModels), args.id)
        session.emit(listed, model_table(list(listed.models), args.csv, args.details is True))
    else:
        session.show(
            session.stub.GetModel,
            pb.GetModelRequest(model=args.id),
            lambda got: model_detail(got.model, csv=args.csv, details=details, acls=args.acls),
        )


@command(
    "publish",
    "ID MODEL_PATH CHECKPOINT REPLICAS [k=v ...]",
    "publish a model",
    arg("id", help="model ID, e.g. /sax/test/lm2b"),
    arg("model_path"),
    arg("checkpoint", help='"None" for random weights'),
    arg("replicas", type=replicas),
    arg("overrides", metavar="k=v", type=pair, nargs="*", default=[], help="overrides"),
)
def publish(session: Session, args: argparse.Namespace) -> None:
    request = pb.PublishModelRequest(**_definition(args), replicas=args.replicas)
    session.show(session.stub.PublishModel, request, lambda done: _placed("published", done))


class _Definition(TypedDict):
    """What publish and update both take from their arguments."""

    model: str
    model_path: str
    checkpoint: str
    overrides: dict[str, str]


def _definition(args: argparse.Namespace) -> _Definition:
    return {
        "model": args.id,
        "model_path": args.model_path,
        "checkpoint": args.checkpoint,
        "overrides": dict(args.overrides),
    }


def _placed(verb: str, done: pb.PublishModelResponse | pb.UpdateModelResponse) -> str:
    return (
        f"{verb} {done.model}: {done.path}, checkpoint {done.checkpoint}, "
        f"{done.replicas} replica(s)"
    )


def _updated(done: pb.UpdateModelResponse) -> str:
    overrides = " ".join(f"{k}={v}" for k, v in sorted(done.overrides.items())) or "none"
    return f"{_placed('updated', done)}, overrides {overrides}"


@command("unpublish", "ID", "unpublish a model", ID)
def unpublish(session: Session, args: argparse.Namespace) -> None:
    request = pb.UnpublishModelRequest(model=args.id)
    session.show(session.stub.UnpublishModel, request, lambda done: f"unpublished {done.model}")


@command(
    "update",
    "ID [--model-path P] [--checkpoint C] [--replicas N] [--clear-overrides] [k=v ...]",
    "update a model (a new checkpoint or overrides reloads it)",
    ID,
    arg(
        "--model-path",
        default="",
        help="must stay the same: Sax refuses a new path (unpublish, then publish it) "
        "(default: the published one)",
    ),
    arg(
        "--checkpoint",
        default="",
        help="a new checkpoint, which reloads the model (default: the published one)",
    ),
    arg("--replicas", type=replicas, help="(default: the published number)"),
    arg("--clear-overrides", action="store_true", help="remove every override (unless k=v given)"),
    arg(
        "overrides",
        metavar="k=v",
        type=pair,
        nargs="*",
        default=[],
        help="new overrides, replacing all",
    ),
)
def update(session: Session, args: argparse.Namespace) -> None:
    request = pb.UpdateModelRequest(**_definition(args), clear_overrides=args.clear_overrides)
    if args.replicas is not None:
        request.replicas = args.replicas
    session.show(session.stub.UpdateModel, request, _updated)


@command(
    "update_checkpoint",
    "ID CHECKPOINT",
    "reload a model from a new checkpoint, as saxutil's update_checkpoint",
    ID,
    arg("checkpoint"),
)
def update_checkpoint(session: Session, args: argparse.Namespace) -> None:
    # An update that names only the checkpoint: path, overrides and replicas stay.
    request = pb.UpdateModelRequest(model=args.id, checkpoint=args.checkpoint)
    session.show(session.stub.UpdateModel, request, _updated)


@command(
    "stats",
    "[ID]",
    "show model-server types and replicas of cells or a model",
    arg("id", nargs="?", metavar="ID", help="a cell or a model; default (or /sax): all cells"),
)
def stats(session: Session, args: argparse.Namespace) -> None:
    if args.id is not None and not is_root(args.id):  # /sax: every cell, as `ls /sax` lists
        results = [(args.id, session.call(session.stub.GetStats, pb.GetStatsRequest(name=args.id)))]
        failed: dict[str, grpc.RpcError] = {}
    else:
        # Every cell: one whose admin is gone (a leftover directory) must not hide the others.
        cells = session.call(session.stub.ListCells, pb.ListCellsRequest())
        if not cells.cells:  # no cell answers: as when each one listed fails, exit 1
            _show_stats(session, [], {})
            print(NO_CELLS, file=sys.stderr)
            raise Incomplete
        results, failed = [], {}
        for name in cells.cells:
            try:
                results.append(
                    (name, session.call(session.stub.GetStats, pb.GetStatsRequest(name=name)))
                )
            except grpc.RpcError as exc:
                failed[name] = exc
    _show_stats(session, results, failed)
    for name, error in failed.items():
        if session.json:  # errors as JSON too, one line each, as `report` prints them
            shown = {"name": name, "code": error.code().value[0], "message": error.details()}
            print(json_text(shown, sys.stderr), file=sys.stderr)
        else:
            # Escaped, as every other line that repeats what servers say: a cell's admin
            # answering in its own words set the terminal's title and forged lines here.
            said = printable(error.details() or "")
            print(f"saxgw: {printable(name)}: {error.code().name}: {said}", file=sys.stderr)
    if failed:
        raise Incomplete


def _show_stats(
    session: Session,
    results: list[tuple[str, pb.GetStatsResponse]],
    failed: dict[str, grpc.RpcError],
) -> None:
    if session.json:
        by_name: dict[str, object] = {name: to_dict(stats) for name, stats in results}
        by_name |= {  # shaped as the HTTP API's errors (and saxgw's own with --json)
            name: {"error": {"code": exc.code().value[0], "message": exc.details() or ""}}
            for name, exc in failed.items()
        }
        session.out.write(json_text(dict(sorted(by_name.items())), session.out, indent=2) + "\n")
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


def changes(before: Sequence[str] | None, now: Sequence[str]) -> list[str]:
    """What `saxutil watch` prints for an update: "Reset" and "+ ADDRESS" for each address
    at first; after that "- ADDRESS" for each one gone and "+ ADDRESS" for each new one (the
    gateway sends whole lists, saxutil gets changes: the lines are the same)."""
    if before is None:
        return ["Reset", *(f"+ {a}" for a in sorted(now))]
    gone, new = sorted(set(before) - set(now)), sorted(set(now) - set(before))
    return [*(f"- {a}" for a in gone), *(f"+ {a}" for a in new)]


@command("watch", "ID", "print a model's serving addresses as they change", ID)
def watch(session: Session, args: argparse.Namespace) -> None:
    stream = session.stub.WatchAddresses(
        pb.WatchAddressesRequest(model=args.id), timeout=session.timeout
    )
    seen: Sequence[str] | None = None
    with ended_on_hangup(stream, session.out):
        for update in stream:
            if update.HasField("error") and not session.json:
                continue  # the call's status follows and is reported as an RpcError
            if session.json:  # the in-band error too, as the HTTP stream's last event is
                session.out.write(to_json(update, out=session.out) + "\n")
            else:
                session.out.writelines(f"{line}\n" for line in changes(seen, update.addresses))
                seen = list(update.addresses)
            session.out.flush()


@command(
    "wait",
    "ID [REPLICAS]",
    "wait until a model has ready replicas",
    ID,
    arg("replicas", type=replicas, nargs="?", default=1),
)
def wait(session: Session, args: argparse.Namespace) -> None:
    request = pb.WaitForReadyRequest(model=args.id, replicas=args.replicas)
    session.show(
        session.stub.WaitForReady,
        request,
        lambda done: f"{done.model}: {done.active_replicas} replica(s) ready",
    )


ALL_METHODS = "all"
"""`saxutil getacl MODEL all`: every method's ACL, and nothing of the admin ACL."""


@command(
    "getacl",
    "ID [METHOD|all]",
    "show the ACL of a cell, or the ACLs of a model and its methods",
    ID,
    arg("method", nargs="?", help="only this data method's ACL, or every method's (all)"),
)
def getacl(session: Session, args: argparse.Namespace) -> None:
    if args.method is not None and is_cell(args.id):
        raise UsageError(f"{args.id} is a cell: only a model's data methods have ACLs")
    if args.method not in (None, ALL_METHODS, *ACL_METHODS):
        # Else a misspelt method would read "(no ACL)", as if anyone could call it.
        raise UsageError(
            f"{args.method!r} is no method a model ACL can name: one of "
            + ", ".join(sorted(ACL_METHODS))
            + f" (or {ALL_METHODS})"
        )
    session.show(
        session.stub.GetAcl, pb.GetAclRequest(name=args.id), partial(_acls, method=args.method)
    )


def _acls(got: pb.GetAclResponse, method: str | None) -> str:
    """As saxutil's getacl: the admin ACL and, here, the method table after it; with a
    METHOD, that method's ACL alone; with ``all``, the method table alone."""
    if is_cell(got.name):
        return got.acl or "(no ACL)"
    if method == ALL_METHODS:
        return method_acl_table(got.method_acls)
    if method is not None:
        return got.method_acls.get(method) or "(no ACL)"
    return f"{got.acl or '(no admin ACL)'}\n\n{method_acl_table(got.method_acls)}"


@command(
    "setacl",
    "ID [METHOD] ACL",
    "set the ACL of a cell or model, or of a model's data method",
    ID,
    arg("method", nargs="?", help="a data method of the model, e.g. lm.generate"),
    arg("acl", help='the new ACL; "" clears it'),
)
def setacl(session: Session, args: argparse.Namespace) -> None:
    request = pb.SetAclRequest(name=args.id, acl=args.acl, method=args.method or "")
    done = session.call(session.stub.SetAcl, request)
    what = f"{done.name} {done.method}" if done.method else done.name
    session.emit(done, f"{what}: ACL set to {done.acl!r}" if done.acl else f"{what}: ACL cleared")


COMMANDS = (ls, publish, unpublish, update, update_checkpoint, stats, watch, wait, getacl, setacl)


def register(commands: Commands) -> None:
    """Adds the admin commands."""
    register_all(commands, COMMANDS)
