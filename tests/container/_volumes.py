"""A pod's volumes as kubelet makes them, and the mounts that put them in a container
(tests/container/_pod.py): an emptyDir is a folder here that the pod's containers share (for
medium: Memory, a tmpfs volume of the engine, so that whatever happens the engine can remove
it); a ConfigMap or Secret is its keys written as files, mounted read-only; fsGroup owns them."""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from tests.container._kube import (
    LABEL,
    Cluster,
    NotEmulated,
    PodFailed,
    Spec,
    docker,
    only,
    quantity,
)


@dataclass(frozen=True)
class Volume:
    kind: str  # emptyDir, configMap or secret
    folder: Path  # here (unused for a tmpfs)
    tmpfs: str | None = None  # the engine's volume, for medium: Memory


def make(volume: Spec, folder: Path, cluster: Cluster, pod: str, fs_group: int | None) -> Volume:
    """Makes a volume of pod ``pod`` in ``folder`` (which must not exist)."""
    name = volume["name"]
    only(volume, {"name", "emptyDir", "configMap", "secret"}, f"volume {name}")
    [kind] = set(volume) - {"name"}
    source = volume[kind]
    folder.mkdir(parents=True)
    if kind == "emptyDir":
        only(source, {"medium", "sizeLimit"}, f"volume {name}")
        if source.get("medium", "") not in ("", "Memory"):
            raise NotEmulated(f"volume {name}: medium {source['medium']}")
        if source.get("medium") == "Memory":  # a tmpfs as large as the sizeLimit
            # kubelet's mode for an emptyDir; with fsGroup, that group owns it (setgid)
            options = ["mode=0777"] if fs_group is None else ["mode=2777", f"gid={fs_group}"]
            if "sizeLimit" in source:
                options.append(f"size={int(quantity(source['sizeLimit']))}")
            tmpfs = docker(
                "volume", "create", "--label", f"{LABEL}={pod}", "--driver", "local",
                "--opt", "type=tmpfs", "--opt", "device=tmpfs", "--opt", f"o={','.join(options)}",
            )  # fmt: skip
            return Volume(kind, folder, tmpfs)
        folder.chmod(0o777)  # kubelet's mode for an emptyDir
    else:
        key = "name" if kind == "configMap" else "secretName"
        only(source, {key, "items", "defaultMode", "optional"}, f"volume {name}")
        data = cluster.data("ConfigMap" if kind == "configMap" else "Secret", source[key])
        if data is None and not source.get("optional"):
            raise PodFailed(f"volume {name}: {kind} {source[key]} not found")
        files = data or {}
        if "items" in source:
            for item in source["items"]:
                only(item, {"key", "path"}, f"volume {name} item")
            files = {item["path"]: files[item["key"]] for item in source["items"]}
        _write_atomically(folder, files, source.get("defaultMode", 0o644))
    if fs_group is not None:
        _own(folder, fs_group, writable=kind == "emptyDir")
    return Volume(kind, folder)


def mounts(container: Spec, volumes: Mapping[str, Volume]) -> list[str]:
    """Docker's --mount flags for the container's volumeMounts."""
    flags = []
    for mount in container.get("volumeMounts", []):
        only(mount, {"name", "mountPath", "subPath", "readOnly"}, f"{container['name']} mount")
        volume = volumes[mount["name"]]
        readonly = mount.get("readOnly", False) or volume.kind != "emptyDir"
        options = f"target={mount['mountPath']}{',readonly' if readonly else ''}"
        if volume.tmpfs is not None:
            if "subPath" in mount:
                raise NotEmulated(f"{container['name']}: a subPath of a medium: Memory emptyDir")
            flags.append(f"--mount=type=volume,source={volume.tmpfs},{options}")
            continue
        source = volume.folder / mount.get("subPath", "")
        if volume.kind == "emptyDir":
            source.mkdir(exist_ok=True)  # kubelet makes a missing subPath in an emptyDir
        # Through the atomic writer's links, as kubelet resolves a subPath, and within it.
        source = source.resolve(strict=True)
        assert source.is_relative_to(volume.folder.resolve()), mount
        flags.append(f"--mount=type=bind,source={source},{options}")
    return flags


def _write_atomically(folder: Path, files: Mapping[str, bytes], mode: int) -> None:
    """A ConfigMap's or Secret's files as kubelet's atomic writer lays them out: in a
    timestamped folder, which the ..data link points at, and a link per key through it."""
    stamp = folder / time.strftime("..%Y_%m_%d_%H_%M_%S.0000")
    stamp.mkdir()
    for path, content in files.items():
        (stamp / path).parent.mkdir(parents=True, exist_ok=True)
        (stamp / path).write_bytes(content)
        (stamp / path).chmod(mode)
    (folder / "..data").symlink_to(stamp.name)
    for top in {Path(path).parts[0] for path in files}:
        (folder / top).symlink_to(f"..data/{top}")


def _own(folder: Path, group: int, *, writable: bool) -> None:
    """fsGroup: kubelet gives the volume's files to the group (setgid folders), readable by it,
    and writable by it unless the volume is read-only."""
    bits = 0o660 if writable else 0o440
    for path in [folder, *folder.rglob("*")]:
        os.chown(path, -1, group, follow_symlinks=False)
        if not path.is_symlink():
            extra = 0o2110 if path.is_dir() else 0
            path.chmod(path.stat().st_mode | bits | extra)
