"""The gateway's part of the config file: model ACL groups, model lists, concurrency."""

from __future__ import annotations

from types import MappingProxyType

from gateway.config import AccessSettings
from gateway.edge._envoy import IDENTITY_HEADER
from gateway.edge._schema import EdgeConfig


def access_settings(config: EdgeConfig) -> AccessSettings:
    """What each gateway process enforces, from the file every process reads at start."""
    clients = config.clients
    return AccessSettings(
        identity_header=IDENTITY_HEADER,
        groups=config.groups,
        acl_cache_seconds=config.acl_cache_seconds,
        client_models=MappingProxyType(
            {c: p.models for c, p in clients.items() if p.models is not None}
        ),
        client_max_concurrent=MappingProxyType(
            {c: p.max_concurrent for c, p in clients.items() if p.max_concurrent is not None}
        ),
        default_max_concurrent=config.quotas.max_concurrent,
        model=config.quotas.model,
        models=config.quotas.models,
        known_clients=frozenset(
            {k.client for k in config.api_keys}
            | {c.client for c in config.certificate_clients}
            | set(clients)
            | {c for members in config.groups.values() for c in members}
        ),
    )
