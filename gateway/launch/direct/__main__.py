"""``python -m gateway.launch.direct``: direct mode's control plane (`saxgw up` starts it)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
from pathlib import Path

from gateway.client import ClientSettings
from gateway.common.logs import configure
from gateway.configfile import read_snapshot
from gateway.launch.direct._files import DirectFiles
from gateway.launch.direct._plane import serve


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sax-root", required=True)
    parser.add_argument("--gcs-endpoint")
    parser.add_argument("--config", required=True, help="the stack's config snapshot")
    parser.add_argument("--dir", type=Path, required=True, help="Envoy's xDS files")
    parser.add_argument("--default-timeout", type=float, required=True)
    parser.add_argument("--log-format", default="auto")
    args = parser.parse_args()
    configure(args.log_format, logging.INFO)
    settings = ClientSettings(sax_root=args.sax_root, gcs_endpoint=args.gcs_endpoint)
    edge = read_snapshot(args.config).edge
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C in a terminal: the stack stops
        asyncio.run(serve(settings, DirectFiles(args.dir), edge, args.default_timeout))


if __name__ == "__main__":
    main()
