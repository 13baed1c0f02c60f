"""The public surface of gateway.client: the sorted __all__, and the names the gateway uses."""

from __future__ import annotations

import inspect

import gateway.client
from gateway.client import CallOptions, Client, ClientSettings, sax


def test_all_is_sorted_and_complete() -> None:
    exported = gateway.client.__all__
    assert exported == sorted(exported)
    public = {n for n in vars(gateway.client) if not n.startswith("_")}
    modules = {"errors", "sax", "annotations"}
    assert public - modules == set(exported)


def test_client_methods_keep_their_signatures() -> None:
    params = inspect.signature(Client.lm_generate).parameters
    assert list(params) == ["self", "model_id", "text", "options"]
    params = inspect.signature(Client.publish).parameters
    assert list(params)[:6] == [
        "self",
        "model_id",
        "model_path",
        "checkpoint",
        "num_replicas",
        "overrides",
    ]
    assert params["timeout"].kind is inspect.Parameter.KEYWORD_ONLY


def test_settings_and_options_are_frozen_keyword_only() -> None:
    settings = ClientSettings(sax_root="/tmp/x")
    assert (settings.admin_timeout, settings.num_conn, settings.fail_fast) == (10.0, 3, False)
    options = CallOptions()
    assert options.extra_inputs_proto() is None
    assert CallOptions(extra_inputs={"t": 1.0}).extra_inputs_proto() is not None


def test_facade_has_upstream_names() -> None:
    for name in (
        "Options",
        "ModelOptions",
        "AdminOptions",
        "Model",
        "Publish",
        "Unpublish",
        "Update",
        "List",
        "ListDetail",
        "ListAll",
        "Stats",
        "WaitForReady",
        "GetACL",
        "SetACL",
    ):
        assert hasattr(sax, name), name
