"""The edge: the ``--config`` file and what it makes of Envoy (docs/config.md, docs/security.md).

config = load_config(Path("saxgw.yaml"))
access = access_settings(config)          # for the gateway processes
values = edge_values(config, secrets_dir)  # for Envoy's template
"""

from gateway.edge._access import access_settings
from gateway.edge._envoy import IDENTITY_HEADER
from gateway.edge._listener import edge_values
from gateway.edge._load import ConfigError, load_config, parse_config
from gateway.edge._schema import (
    ApiKey,
    CertificateClient,
    ClientPolicy,
    EdgeConfig,
    JwtIssuer,
    Limits,
    ModelLimit,
    Quotas,
    Rate,
    Tls,
)

__all__ = [
    "IDENTITY_HEADER",
    "ApiKey",
    "CertificateClient",
    "ClientPolicy",
    "ConfigError",
    "EdgeConfig",
    "JwtIssuer",
    "Limits",
    "ModelLimit",
    "Quotas",
    "Rate",
    "Tls",
    "access_settings",
    "edge_values",
    "load_config",
    "parse_config",
]
