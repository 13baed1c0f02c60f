"""The process that listens on a port is found while it opens and closes other files. Before,
one file closed between listing a process's descriptors and reading one of them hid the whole
process: `listener_pid` answered None for a busy Envoy (a fault test's flake), and `saxgw up`
named "another process" as the holder of its port."""

from __future__ import annotations

import subprocess
import sys
import time

from gateway.launch.ports import holder, listener_pid

# A child that listens, says its port, then closes and opens files as fast as it can, on 64
# descriptors numbered below the listener's (read first, as Envoy's connections can be).
CHURN = """
import os, socket
spares = [os.open("/dev/null", os.O_RDONLY) for _ in range(64)]
server = socket.create_server(("127.0.0.1", 0))
print(server.getsockname()[1], flush=True)
while True:
    for fd in spares:
        os.close(fd)
        os.open("/dev/null", os.O_RDONLY)  # the lowest free number: fd again
"""
LOOKUPS = 40  # before the fix about 1 in 5 missed it: 40 make a miss all but certain


def test_a_listener_that_keeps_opening_files_is_found_every_time() -> None:
    argv = [sys.executable, "-c", CHURN]
    with subprocess.Popen(argv, stdout=subprocess.PIPE, text=True) as child:
        try:
            assert child.stdout is not None
            port = int(child.stdout.readline())
            time.sleep(0.2)  # its loop is running
            found = [listener_pid(port) for _ in range(LOOKUPS)]
            assert found == [child.pid] * LOOKUPS
            assert (holder(port) or "").startswith(f"pid {child.pid} (")
        finally:
            child.kill()
