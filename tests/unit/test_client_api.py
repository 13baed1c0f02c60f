"""The public surface of gateway.client: the sorted __all__, and the names the gateway uses."""

from __future__ import annotations

import inspect

import pytest

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


# Upstream's keyword names (saxml/client/python/sax.cc, py::arg), so keyword calls carry over.
UPSTREAM_KEYWORDS = {
    "LanguageModel.Generate": "text options",
    "LanguageModel.GenerateStream": "text callback options",
    "LanguageModel.Score": "prefix suffix options",
    "LanguageModel.Embed": "text options",
    "LanguageModel.Gradient": "prefix suffix options",
    "VisionModel.Classify": "image_bytes options",
    "VisionModel.TextToImage": "text options",
    "VisionModel.TextAndImageToImage": "text image_bytes options",
    "VisionModel.ImageToImage": "text options",
    "VisionModel.Embed": "image options",
    "VisionModel.Detect": "image_bytes text boxes options",
    "VisionModel.ImageToText": "image_bytes text options",
    "VisionModel.VideoToText": "image_frames text options",
    "VisionModel.VideoToToken": "image_frames options",
    "VisionModel.TokenToVideo": "tokens options",
    "AudioModel.Recognize": "audio_bytes options",
    "CustomModel.Custom": "request method_name options",
    "CustomModel.CustomNoException": "request method_name options",
    "MultimodalModel.Generate": "request options",
    "MultimodalModel.Score": "request options",
    "MultimodalModel.Embed": "request options",
    "Model.MM": "",
    "Publish": "id model_path checkpoint_path num_replicas overrides options",
    "Unpublish": "id options",
    "Update": "id model_path checkpoint_path num_replicas options",
    "List": "id options",
    "ListDetail": "id options",
    "ListAll": "id options",
    "Stats": "id options",
    "WaitForReady": "id num_replicas options",
    "GetACL": "cell_or_model_id method_id options",
    "SetACL": "cell_or_model_id acl method_id options",
}


@pytest.mark.parametrize(("name", "keywords"), UPSTREAM_KEYWORDS.items())
def test_facade_takes_upstreams_keyword_names(name: str, keywords: str) -> None:
    target: object = sax
    for part in name.split("."):
        target = getattr(target, part)
    assert callable(target)
    parameters = [p for p in inspect.signature(target).parameters if p != "self"]
    assert parameters == keywords.split()
