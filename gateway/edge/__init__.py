"""The edge: the `--config` file's security sections and what they make of Envoy (docs/config.md).

edge = parse_edge(sections, base)         # gateway.configfile reads the file and calls this
access = access_settings(edge)            # for the gateway processes
values = edge_values(edge, origins, secrets_dir)  # for Envoy's template
hosts = host_values(listen_address, allowed_hosts)  # the Host names a loopback listener answers

The parts of EdgeConfig that callers build by hand are exported; _schema.py has them all.
"""

from gateway.common.loopback import is_loopback
from gateway.edge._access import access_settings
from gateway.edge._envoy import IDENTITY_HEADER, header_predicate, skip_when
from gateway.edge._hosts import allowed_host, host_values
from gateway.edge._listener import edge_values, stream_idle_timeout
from gateway.edge._load import SECTIONS, parse_edge
from gateway.edge._origins import allowed_origin
from gateway.edge._schema import CertificateClient, EdgeConfig, Limits, Rate, Tls

__all__ = [
    "IDENTITY_HEADER",
    "SECTIONS",
    "CertificateClient",
    "EdgeConfig",
    "Limits",
    "Rate",
    "Tls",
    "access_settings",
    "allowed_host",
    "allowed_origin",
    "edge_values",
    "header_predicate",
    "host_values",
    "is_loopback",
    "parse_edge",
    "skip_when",
    "stream_idle_timeout",
]
