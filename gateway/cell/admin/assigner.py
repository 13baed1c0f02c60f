"""Decides which model servers should serve which published models.

A pure function of the current picture, so it is easy to test: keep what is assigned (loaded
replicas first), drop surplus replicas, unload what is no longer published, and fill missing
replicas from servers that can serve the model path, least busy first.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ServerView:
    address: str
    servable_paths: frozenset[str]
    #: Models assigned to the server.
    wanted: frozenset[str]
    #: Assigned models the server has loaded.
    loaded: frozenset[str]


@dataclass(frozen=True)
class ModelView:
    model_id: str
    model_path: str
    replicas: int
    #: False while a restarted admin waits for servers that already have the model to re-join.
    may_add: bool = True


@dataclass(frozen=True)
class Plan:
    #: (server address, model ID) pairs.
    loads: tuple[tuple[str, str], ...]
    unloads: tuple[tuple[str, str], ...]


def assign(
    servers: list[ServerView], models: list[ModelView], *, max_models_per_server: int
) -> Plan:
    published = {model.model_id for model in models}
    by_address = {server.address: server for server in servers}
    loads: list[tuple[str, str]] = []
    unloads: list[tuple[str, str]] = []
    current: dict[str, list[str]] = {model_id: [] for model_id in published}
    busy: dict[str, int] = {}
    for server in sorted(servers, key=lambda s: s.address):
        busy[server.address] = 0
        for model_id in sorted(server.wanted):
            if model_id in published:
                current[model_id].append(server.address)
                busy[server.address] += 1
            else:
                unloads.append((server.address, model_id))

    for model in sorted(models, key=lambda m: m.model_id):
        # Loaded replicas first, so surplus is taken from those still loading or failed.
        assigned = sorted(
            current[model.model_id],
            key=lambda addr: (model.model_id not in by_address[addr].loaded, addr),
        )
        while len(assigned) > model.replicas:
            address = assigned.pop()
            unloads.append((address, model.model_id))
            busy[address] -= 1
        if not model.may_add:
            continue
        candidates = sorted(
            (
                server.address
                for server in servers
                if model.model_path in server.servable_paths
                and server.address not in assigned
                and busy[server.address] < max_models_per_server
            ),
            key=lambda addr: (busy[addr], addr),
        )
        for address in candidates[: max(0, model.replicas - len(assigned))]:
            loads.append((address, model.model_id))
            busy[address] += 1
    return Plan(loads=tuple(loads), unloads=tuple(unloads))
