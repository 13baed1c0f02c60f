"""The layers inside ``gateway/`` show in the imports: roles import downward only.

    cli ──> launch ──> service ──> client ──┐
                  └──> cell ────────────────┴──> common (names, status errors, storage)

The static check reads every module's imports (function-level ones included); the subprocess
checks prove it at run time: importing a role loads nothing from the roles it may not use.
Also: nothing named ``sax`` shadows upstream's client module, and Sax's generated code carries
upstream's descriptor file names, so it can share a process with upstream's own Python code.
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest
from google.protobuf import descriptor_pb2, descriptor_pool

import gateway

_ROOT = Path(gateway.__file__).parent

# Role -> the roles it may import (itself always). "root" is gateway/__init__.py and the
# re-export modules kept at old paths (gateway.naming, gateway.storage).
_ALLOWED: dict[str, set[str]] = {
    "common": set(),
    "client": {"common"},
    "cell": {"common"},
    "config": {"common", "client"},
    "service": {"common", "client", "config"},
    "edge": {"common", "client", "config"},
    "file": {"common", "client", "config", "edge"},
    "launch": {"common", "client", "cell", "service", "config", "edge", "file", "ops"},
    "ops": {"common"},
    "cli": {"common", "client", "cell", "service", "config", "launch", "edge", "file", "ops"},
    "root": {"common"},
}
_ROOT_MODULES = {"gateway", "gateway.naming", "gateway.storage"}
# The config role: the settings tree and the --config file's models: and supervisor: sections.
_CONFIG_MODULES = {"gateway.config", "gateway.modelconfig", "gateway.restartconfig"}
# The file role: the one --config loader, above every part whose sections it validates.
_FILE_MODULES = {"gateway.configfile"}


def _role(module: str) -> str:
    if module in _ROOT_MODULES:
        return "root"
    if module in _CONFIG_MODULES:
        return "config"
    if module in _FILE_MODULES:
        return "file"
    return module.split(".")[1]


def _modules() -> list[tuple[str, Path]]:
    found = []
    for path in sorted(_ROOT.rglob("*.py")):
        parts = path.relative_to(_ROOT.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found.append((".".join(parts), path))
    return found


def _gateway_imports(module: str, path: Path) -> set[str]:
    imported: set[str] = set()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                imported.add(f"{base}.{node.module}" if node.module else base)
            elif node.module:
                imported.add(node.module)
    return {name for name in imported if name == "gateway" or name.startswith("gateway.")}


def test_every_module_belongs_to_a_known_role() -> None:
    assert {_role(module) for module, _ in _modules()} <= set(_ALLOWED)


def test_roles_import_downward_only() -> None:
    wrong = []
    for module, path in _modules():
        role = _role(module)
        for target in _gateway_imports(module, path):
            if target == "gateway":  # the package itself: __version__ only
                continue
            target_role = _role(target)
            if target_role != role and target_role not in _ALLOWED[role]:
                wrong.append(f"{module} ({role}) imports {target} ({target_role})")
    assert wrong == []


def _loaded_after_import(modules: list[str]) -> list[str]:
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        "print('\\n'.join(sorted(m for m in sys.modules if m.startswith('gateway'))))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True, timeout=120
    )
    return done.stdout.split()


def _all_in(package: str) -> list[str]:
    root = importlib.import_module(package)
    names = [package]
    for info in pkgutil.walk_packages(root.__path__, prefix=f"{package}."):
        if not info.name.rpartition(".")[2].startswith("__main__"):
            names.append(info.name)
    return names


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [
        ("gateway.common", ("client", "cell", "service", "launch", "cli", "config")),
        ("gateway.client", ("cell", "service", "launch", "cli", "config")),
        ("gateway.cell", ("client", "service", "launch", "cli", "config")),
        ("gateway.service", ("cell", "launch", "cli")),
    ],
)
def test_importing_a_role_loads_no_forbidden_role(package: str, forbidden: tuple[str, ...]) -> None:
    loaded = _loaded_after_import(_all_in(package))
    assert package in loaded
    assert [m for m in loaded if m.split(".")[1:2] and m.split(".")[1] in forbidden] == []


def test_cell_admin_loads_no_client_module() -> None:
    # The issue's own check, word for word in spirit: the admin server alone.
    loaded = _loaded_after_import(["gateway.cell.admin", "gateway.cell.admin.server"])
    assert "gateway.cell.admin.server" in loaded
    assert [m for m in loaded if m.startswith("gateway.client")] == []


def test_nothing_named_sax_is_importable() -> None:
    # Upstream's client module is `sax`; nothing of ours may shadow it.
    done = subprocess.run(
        [sys.executable, "-c", "import sax"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1
    assert "ModuleNotFoundError: No module named 'sax'" in done.stderr


_SAX_PROTOS = ("admin", "audio", "common", "custom", "lm", "modelet", "multimodal", "vision")


@pytest.mark.parametrize("name", _SAX_PROTOS)
def test_generated_sax_code_has_upstreams_descriptor_names(name: str) -> None:
    module = importlib.import_module(f"saxml.protobuf.{name}_pb2")
    assert module.DESCRIPTOR.name == f"saxml/protobuf/{name}.proto"
    assert module.DESCRIPTOR.package.split(".")[0] == "sax"  # upstream: sax, sax.server.*
    for dependency in module.DESCRIPTOR.dependencies:
        assert dependency.name.startswith(("saxml/protobuf/", "google/protobuf/"))


def test_upstream_registering_the_same_file_coexists_but_another_name_would_not() -> None:
    # Upstream's generated modules register `saxml/protobuf/common.proto` in the default pool.
    # Registering our identical file again is accepted; the same symbols under another file
    # name (what a top-level `sax/common.proto` did) is the "duplicate symbol" crash.
    from saxml.protobuf import common_pb2

    proto = descriptor_pb2.FileDescriptorProto()
    common_pb2.DESCRIPTOR.CopyToProto(proto)
    pool = descriptor_pool.Default()
    again = pool.AddSerializedFile(proto.SerializeToString())
    assert again.name == "saxml/protobuf/common.proto"

    proto.name = "sax/common.proto"
    with pytest.raises(TypeError, match=r"sax\.ModelStatus"):
        pool.AddSerializedFile(proto.SerializeToString())
