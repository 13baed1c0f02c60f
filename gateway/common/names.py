"""Sax's naming rules, in one place, the way upstream Sax checks them.

A cell ID is ``/sax/<cell>`` and a model ID is ``/sax/<cell>/<model>``; both names must match
``^[a-z]+[a-z0-9-_]*$``. Parsing returns typed values and raises ``InvalidArgumentError`` with
a message naming the part that is wrong::

    model = parse_model_id("/sax/test/lm")   # ModelId(cell=CellId(name="test"), name="lm")
    model.cell.id                           # "/sax/test"

A model path (``saxml.server.lm.params.lm_cloud.LmCloudSpmd2B``) and a checkpoint path have
upstream's patterns too (``check_model_path``, ``check_checkpoint``), so that what the embedded
cell accepts, a real cell accepts.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from dataclasses import dataclass

from gateway.common.errors import InvalidArgumentError
from gateway.common.limits import MAX_ID_CHARS, quote, too_long

PREFIX = "sax"
NAME_PATTERN = "^[a-z]+[a-z0-9-_]*$"
_VALID_NAME = re.compile(r"[a-z]+[a-z0-9\-_]*")
_MODEL_PATH = re.compile(r"[a-zA-Z]+[a-zA-Z0-9_.-]*")
# re.ASCII: upstream's \d and \w are Go RE2's, which match ASCII only.
_CHECKPOINT = re.compile(r"(/|\d|\w|_|\.|-|%|:|=|\||\+)+", re.ASCII)
# A host name as DNS spells one (RFC 1123 labels; an IPv4 address is one too), with the
# underscores that container names have (compose's project_service_1), which DNS resolves.
_LABEL = r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
_HOST_NAME = re.compile(rf"{_LABEL}(?:\.{_LABEL})*\.?", re.ASCII)
# Schemes grpc reads a target's "NAME:" as, though a host could be so named.
_GRPC_SCHEMES = frozenset({"dns", "ipv4", "ipv6", "unix", "unix-abstract", "vsock", "xds"})


class _Named:
    """An ID that prints as its full ID."""

    __slots__ = ()

    @property
    def id(self) -> str:
        raise NotImplementedError

    def __str__(self) -> str:
        return self.id


@dataclass(frozen=True, slots=True)
class CellId(_Named):
    """A Sax cell, e.g. ``CellId("test")`` for ``/sax/test``."""

    name: str

    @property
    def id(self) -> str:
        """The full cell ID, ``/sax/<name>``."""
        return f"/{PREFIX}/{self.name}"


@dataclass(frozen=True, slots=True)
class ModelId(_Named):
    """A Sax model, e.g. ``/sax/test/lm``."""

    cell: CellId
    name: str

    @property
    def id(self) -> str:
        """The full model ID, ``/sax/<cell>/<name>``."""
        return f"{self.cell.id}/{self.name}"


def is_server_address(address: str) -> bool:
    """Whether ``address`` is ``HOST:PORT`` as Sax's servers name themselves (``10.0.0.2:10001``,
    ``[::1]:10001``, ``ms-0.cell.internal:10001``): a port of 1-65535 in digits. grpc dials
    much else: a scheme's target (``unix:/run/x.sock``), no port (443), a port past 65535
    (modulo 65536: 99999 is 34463, another server's), an empty one."""
    host, colon, port = address.rpartition(":")
    digits = colon and port.isascii() and port.isdigit() and len(port) <= 5
    if not (digits and 0 < int(port) < 65536):
        return False
    if host.startswith("[") and host.endswith("]"):
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            return False
        return True
    return _HOST_NAME.fullmatch(host) is not None and host.lower() not in _GRPC_SCHEMES


def is_valid_name(name: str) -> bool:
    """Whether ``name`` is a valid cell or model name."""
    # fullmatch, not match with "$": "$" would also accept a trailing newline.
    return _VALID_NAME.fullmatch(name) is not None


def parse_cell_id(cell_id: str, *, field: str = "cell") -> CellId:
    """Parses ``/sax/<cell>``; ``field`` names the argument in the error."""
    if reason := too_long(cell_id, MAX_ID_CHARS):
        raise _invalid(field, f"cell ID {quote(cell_id)}: {reason}")
    parts = cell_id.split("/")
    if len(parts) != 3 or parts[0] != "" or parts[1] != PREFIX:
        raise _invalid(
            field, f"cell ID {quote(cell_id)} should have the form /{PREFIX}/<cell name>"
        )
    if not is_valid_name(parts[2]):
        raise _invalid(field, f"cell name {quote(parts[2])} must match {NAME_PATTERN!r}")
    return CellId(parts[2])


#: How many model IDs `parse_model_id` keeps parsed. Each data call parses its model's ID
#: (~5 µs: three regular expressions and a split), and a gateway serves a handful of models
#: again and again: kept, one costs a dict lookup. Only IDs that parse are kept (an error is
#: raised afresh each time), each at most `MAX_ID_CHARS` long: a bounded ~0.3 MB at worst.
_PARSED_MODEL_IDS = 1024


@functools.lru_cache(maxsize=_PARSED_MODEL_IDS)
def parse_model_id(model_id: str, *, field: str = "model_id") -> ModelId:
    """Parses ``/sax/<cell>/<model>``; ``field`` names the argument in the error. The same
    `ModelId` (frozen) for the same ID, while it is among the last `_PARSED_MODEL_IDS`."""
    if reason := too_long(model_id, MAX_ID_CHARS):
        raise _invalid(field, f"model ID {quote(model_id)}: {reason}")
    cell_id, slash, name = model_id.rpartition("/")
    if not slash:
        raise _invalid(
            field,
            f"model ID {quote(model_id)} should have the form /{PREFIX}/<cell name>/<model name>",
        )
    # Like Sax, check the model name first, then let the cell parser judge the rest.
    if not is_valid_name(name):
        raise _invalid(field, f"model name {quote(name)} must match {NAME_PATTERN!r}")
    return ModelId(parse_cell_id(cell_id, field=field), name)


def parse_cell_or_model_id(value: str, *, field: str = "id") -> CellId | ModelId:
    """Parses either a cell ID or a model ID (cell first, as Sax does)."""
    try:
        return parse_cell_id(value, field=field)
    except InvalidArgumentError:
        pass
    try:
        return parse_model_id(value, field=field)
    except InvalidArgumentError:
        raise _invalid(field, f"{quote(value)} is neither a cell ID nor a model ID") from None


def check_model_path(model_path: str) -> None:
    """Raises ``InvalidArgumentError`` unless ``model_path`` has upstream's form."""
    if not _MODEL_PATH.fullmatch(model_path):
        raise InvalidArgumentError(
            f"model path {quote(model_path)} must match '^{_MODEL_PATH.pattern}$'"
        )


def check_checkpoint(checkpoint: str) -> None:
    """Raises ``InvalidArgumentError`` unless ``checkpoint`` has upstream's form."""
    if not _CHECKPOINT.fullmatch(checkpoint):
        raise InvalidArgumentError(
            f"checkpoint path {quote(checkpoint)} must match '^{_CHECKPOINT.pattern}$'"
            " (use the literal None for random weights)"
        )


#: The data methods a model ACL may name: every method upstream's model servers serve, by the
#: name they check ACLs under (LM, vision and multimodal services; am.recognize). Upstream's
#: admin validator lists an older set: it takes vm.text_and_image_to_text, which no server
#: serves, and refuses vm.text_and_image_to_image, vm.video_to_token, vm.token_to_video,
#: mm.generate_stream, mm.score and mm.embed, which servers serve (docs/cell.md). Custom
#: methods, named by each model, are not listed. The embedded cell and SetAcl check this set.
ACL_METHODS = frozenset(
    {
        "am.recognize",
        "lm.score",
        "lm.generate",
        "lm.generate_stream",
        "lm.embed",
        "lm.gradient",
        "mm.generate",
        "mm.generate_stream",
        "mm.score",
        "mm.embed",
        "vm.classify",
        "vm.generate",
        "vm.embed",
        "vm.detect",
        "vm.image_to_text",
        "vm.image_to_image",
        "vm.text_and_image_to_image",
        "vm.video_to_text",
        "vm.video_to_token",
        "vm.token_to_video",
    }
)


def outside_cell(model_id: str, cell: str) -> str:
    """How an admin of ``cell`` refuses a request naming ``model_id`` of another cell."""
    return f"model {model_id} must be within Sax cell {cell!r}"


# Upstream's admin says `... must be within SAX cell "/sax/x"`; the embedded one `outside_cell`.
_OUTSIDE_CELL = re.compile(r"must be within (?:SAX|Sax) cell [\"'](?P<cell>[^\"']+)[\"']")


def cell_of_refusal(details: str) -> str | None:
    """The cell an admin says it serves when it refuses a model of another one, or None."""
    found = _OUTSIDE_CELL.search(details)
    return None if found is None else found["cell"]


def check_acl_method(method: str) -> None:
    """Raises ``InvalidArgumentError`` unless a model ACL may name ``method``."""
    if method not in ACL_METHODS:
        raise InvalidArgumentError(
            f"{quote(method)} is not a valid method name for an ACL: one of "
            + ", ".join(sorted(ACL_METHODS))
        )


def _invalid(field: str, description: str) -> InvalidArgumentError:
    return InvalidArgumentError(description, field_violations=((field, description),))
