"""A cell's whole listing, read a page at a time, for `saxgw ls CELL` and `saxgw up`.

listed = every_model(partial(stub.ListModels, timeout=5), "/sax/test")
"""

from __future__ import annotations

from collections.abc import Callable

from saxgateway.v1 import gateway_pb2

#: Models a ListModels page asks for; a page also ends before the gateway's message limit.
PAGE_SIZE = 500


def every_model(
    list_models: Callable[[gateway_pb2.ListModelsRequest], gateway_pb2.ListModelsResponse],
    cell: str,
) -> gateway_pb2.ListModelsResponse:
    """Every model of ``cell``, asked of ``list_models`` (a gateway's ListModels) a page at a
    time, as one reply: a big cell's whole listing can pass the message limit, and then none
    of it could be read (a gateway that does not page answers the first page with them all)."""
    listed = gateway_pb2.ListModelsResponse()
    token = ""
    while True:
        page = list_models(
            gateway_pb2.ListModelsRequest(sax_cell=cell, page_size=PAGE_SIZE, page_token=token)
        )
        listed.sax_cell = page.sax_cell  # as the gateway spells it
        listed.models.extend(page.models)
        if not (token := page.next_page_token):
            return listed
