"""gateway.common.names: Sax cell and model IDs, model paths and checkpoints."""

from __future__ import annotations

import pytest

from gateway.common import names as naming
from gateway.common.errors import InvalidArgumentError


def test_parse_model_id_returns_typed_parts() -> None:
    model = naming.parse_model_id("/sax/test/lm-2b_v1")
    assert model == naming.ModelId(naming.CellId("test"), "lm-2b_v1")
    assert model.id == str(model) == "/sax/test/lm-2b_v1"
    assert model.cell.id == "/sax/test"


def test_a_model_id_is_parsed_once_while_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each data call parses its model's ID (gateway/service/_fields.model_id): the last
    `_PARSED_MODEL_IDS` that parsed are kept; errors are not, and name their own field."""
    cells: list[str] = []

    def counted(cell_id: str, *, field: str = "cell") -> naming.CellId:
        cells.append(cell_id)
        return parse_cell(cell_id, field=field)

    parse_cell = naming.parse_cell_id
    monkeypatch.setattr(naming, "parse_cell_id", counted)  # no other test names this cell
    first = naming.parse_model_id("/sax/kept/lm")
    assert naming.parse_model_id("/sax/kept/lm") is first
    assert first == naming.ModelId(naming.CellId("kept"), "lm")
    assert cells == ["/sax/kept"]
    for field in ("model", "model_id"):
        with pytest.raises(InvalidArgumentError) as info:
            naming.parse_model_id("/sax/Kept/lm", field=field)
        assert info.value.field_violations == ((field, info.value.message),)
        assert "cell name 'Kept'" in info.value.message
    assert cells == ["/sax/kept", "/sax/Kept", "/sax/Kept"]


def test_parse_cell_id_returns_typed_cell() -> None:
    assert naming.parse_cell_id("/sax/test") == naming.CellId("test")


@pytest.mark.parametrize(
    ("model_id", "bad_part"),
    [
        ("", "should have the form"),
        ("foo", "should have the form"),
        ("/sax/test/", "model name ''"),
        ("/sax/test/Foo", "model name 'Foo'"),
        ("/sax/test/1foo", "model name '1foo'"),
        ("/sax/test/foo.bar", "model name 'foo.bar'"),
        ("/sax/test/foo\n", "model name 'foo\\n'"),
        ("/sax/Test/foo", "cell name 'Test'"),
        ("/sax//foo", "cell name ''"),
        ("/sux/test/foo", "cell ID '/sux/test'"),
        ("sax/test/foo", "cell ID 'sax/test'"),
        ("/sax/a/b/c", "cell ID '/sax/a/b'"),
    ],
)
def test_parse_model_id_invalid_names_the_bad_part(model_id: str, bad_part: str) -> None:
    with pytest.raises(InvalidArgumentError) as info:
        naming.parse_model_id(model_id, field="model_id")
    assert bad_part in info.value.message
    assert info.value.field_violations == (("model_id", info.value.message),)


@pytest.mark.parametrize("name", ["a", "abc", "a1", "a-b", "a_b", "abc-1_2"])
def test_is_valid_name_accepts_upstream_pattern(name: str) -> None:
    assert naming.is_valid_name(name)


@pytest.mark.parametrize("name", ["", "1a", "-a", "_a", "A", "aB", "a.b", "a/b", "a b", "é"])
def test_is_valid_name_rejects_others(name: str) -> None:
    assert not naming.is_valid_name(name)


def test_a_server_address_is_host_port_as_grpc_reads_nothing_else_into_it() -> None:
    good = [
        "10.0.0.2:10001",
        "[::1]:1",
        "ms-0.cell.internal:65535",
        "localhost:8",
        "h.:1",
        "cell_ms_1:10001",
    ]
    assert all(naming.is_server_address(a) for a in good)
    # grpc dials each of these somewhere: 443, port 34463, a socket, dns://, or nowhere.
    bad = [
        "",
        " ",
        "127.0.0.1",
        "127.0.0.1:99999",
        "h:0",
        "h:" + "1" * 5000,
        "unix:/x",
        "unix:12",
        "dns:53",
        "http://h:1",
        "[::1",
        "[h]:1",
        "::1:1",
        "h :1",
        "h:1 ",
        "h:\u0663",
    ]
    assert not any(naming.is_server_address(a) for a in bad)


def test_parse_cell_or_model_id_prefers_cell() -> None:
    assert naming.parse_cell_or_model_id("/sax/test") == naming.CellId("test")
    assert naming.parse_cell_or_model_id("/sax/test/m") == naming.parse_model_id("/sax/test/m")
    with pytest.raises(InvalidArgumentError, match="neither a cell ID nor a model ID"):
        naming.parse_cell_or_model_id("/sax")


def test_model_path_and_checkpoint_follow_upstream_patterns() -> None:
    naming.check_model_path("saxml.server.pax.lm.params.lm_cloud.LmCloudSpmd2BTest")
    naming.check_checkpoint("gs://bucket/ckpt/checkpoint_00001000")
    naming.check_checkpoint("None")
    with pytest.raises(InvalidArgumentError, match="model path '1bad' must match"):
        naming.check_model_path("1bad")
    with pytest.raises(InvalidArgumentError, match="checkpoint path 'a b' must match"):
        naming.check_checkpoint("a b")


@pytest.mark.parametrize("checkpoint", ["ckpt/\u00e9", "ckpt_\u0663", "\uff47s://wide"])
def test_checkpoint_classes_are_ascii_as_in_go(checkpoint: str) -> None:
    # Upstream's \d and \w are Go RE2's, ASCII only; Python's match any Unicode letter or
    # digit, and the embedded cell accepted checkpoints that a real cell refuses.
    with pytest.raises(InvalidArgumentError, match=r"checkpoint path .* must match"):
        naming.check_checkpoint(checkpoint)


def test_old_module_paths_still_import_the_same_objects() -> None:
    from gateway import naming as old_naming
    from gateway import storage as old_storage
    from gateway.client import errors as old_errors
    from gateway.common import errors, storage

    assert old_naming.parse_model_id is naming.parse_model_id
    assert old_storage.open_storage is storage.open_storage
    assert old_errors.SaxError is errors.SaxError
    assert old_errors.from_grpc_error is errors.from_grpc_error
