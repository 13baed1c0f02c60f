"""Direct mode (``direct: {generate: true}``): Envoy sends a unary ``POST /generate`` straight
to a model server when the gateway would not change its meaning; every other call still goes
through a gateway (docs/config.md).

    text = direct_listener(rendered, Path(direct_dir))   # Envoy's config, in direct mode
    python -m gateway.launch.direct --sax-root R --config SNAPSHOT --dir D   # its control plane

The control plane (one process per stack, `saxgw up` starts it) lists the cells' models and
writes Envoy's dynamic resources as files: the clusters (CDS) and the route table (RDS).
"""

from gateway.launch.direct._files import DirectFiles
from gateway.launch.direct._listener import direct_listener

__all__ = ["DirectFiles", "direct_listener"]
