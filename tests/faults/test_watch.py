"""A watch of a model's addresses (`saxgw watch`, WatchAddresses) across an admin restart."""

from __future__ import annotations

import grpc
import httpx
import pytest
from saxgateway.v1 import gateway_pb2 as pb
from saxgateway.v1 import gateway_pb2_grpc

from tests._grpc import sync_channel
from tests.faults.conftest import Faults, publish


@pytest.mark.parametrize("through", ["another gateway", "the same gateway"])
def test_a_watch_ends_with_the_empty_set_when_the_restarted_admin_unpublishes(
    faults: Faults, http: httpx.Client, through: str
) -> None:
    # A restarted admin knows no model server at first, so for RESTART_HOLD_S (30 s) the
    # gateway does not apply an empty set: the servers are likely still serving. The empty
    # set of an unpublish in that window was held back too, and the watch went from both
    # replicas straight to NOT_FOUND: `saxgw watch` printed no "- ADDRESS" line for them.
    # (Through the same gateway, the unpublish also made it forget the model's table, and
    # the watch's new table was answered NOT_FOUND at once.)
    model = "/sax/test/watchrestart-" + through.split()[-2]
    publish(http, model, replicas=2)
    ports = faults.stack.settings.gateway_ports
    watching = f"127.0.0.1:{ports[0]}"
    changing = f"127.0.0.1:{ports[1 if through == 'another gateway' else 0]}"
    with sync_channel(watching) as channel, sync_channel(changing) as other:
        watch = gateway_pb2_grpc.SaxGatewayStub(channel).WatchAddresses(
            pb.WatchAddressesRequest(model=model), timeout=60
        )
        sets = [list(next(watch).addresses)]
        while len(sets[-1]) < 2:
            sets.append(list(next(watch).addresses))
        old = faults.kill(faults.admin_port)
        faults.wait_until(
            lambda: faults.pid(faults.admin_port) != old, 30, "the cell to restart its admin"
        )
        stub = gateway_pb2_grpc.SaxGatewayStub(other)
        stub.UnpublishModel(pb.UnpublishModelRequest(model=model), timeout=30)
        code = grpc.StatusCode.OK
        try:
            for update in watch:
                sets.append(["error"] if update.HasField("error") else list(update.addresses))
        except grpc.RpcError as exc:
            code = exc.code()
    assert code == grpc.StatusCode.NOT_FOUND
    assert sets[-2:] == [[], ["error"]], sets
