#!/usr/bin/env python3
"""Gives every GET binding of the transcoder's descriptor set a HEAD twin, in place (HTTP
wants HEAD wherever GET is; gateway/launch/_methods.py says why it is done here).

    scripts/head_bindings.py DESCRIPTOR_SET
"""

from __future__ import annotations

import sys
from pathlib import Path

from google.protobuf import descriptor_pb2

from gateway.launch._methods import add_head_bindings


def main(path: Path) -> None:
    files = descriptor_pb2.FileDescriptorSet.FromString(path.read_bytes())
    add_head_bindings(files)
    path.write_bytes(files.SerializeToString(deterministic=True))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
