"""What a gcs-cell pod stands in front of, for tests/container/test_k8s_gcs_pod.py: stand-ins for
Cloud Storage and a TPU/GPU Sax cell, in a network namespace of their own (a sandbox container's,
OUTSIDE_IP on its loopback). ``attach`` links that namespace to the pod's with a veth pair, as a
CNI plugin joins a pod to the network beyond it, before the pod's containers start: the gateway
in the pod reaches both over a real link, from the pod's IP, as it would reach Cloud Storage and
a cell's VMs. The host's network takes no part (nothing to clash with, nothing to clean up
there), so the cell keeps Sax's own ports.

- Cloud Storage: gcp-storage-emulator (tests/integration/test_storage_gcs.py's), in memory
  with one bucket, served by a thread of this process started inside the namespace; and in
  front of it, for the gateway, the bucket as its service account sees it with the role
  docs/deploy.md grants (roles/storage.objectViewer): reads pass, uploads are refused 403, as
  GCS refuses them (tests/_storage.py's FaultyFront).
- The cell: the embedded cell (`python -m gateway.cell`: an admin and one model server) in the
  gateway's image, with its SAX_ROOT and its admin's state in that bucket.

    outside = Outside(image)
    outside.start()
    pod.start(network=outside.attach)
    ...
    outside.stop()
"""

from __future__ import annotations

import functools
import secrets
from typing import Any

from gcp_storage_emulator.server import create_server

from gateway.cell.settings import DEFAULT_ADMIN_PORT, DEFAULT_CELL, DEFAULT_MODEL_SERVER_PORT
from tests._storage import BUCKET, FaultyFront
from tests.container._compose import poll
from tests.container._kube import LABEL, POD_IP, docker, tail
from tests.container._netns import Netns, link
from tests.container._pod import remove_pods, sandbox

OUTSIDE_IP = "198.51.100.10"  # RFC 5737 TEST-NET-2: never routed; on the outside's loopback only
GCS_PORT = 9023  # gcp-storage-emulator's own default


class Outside:
    """The stand-ins, with a name of their own (their containers' label); ``image`` is the
    gateway's image, which holds the embedded cell."""

    def __init__(self, image: str) -> None:
        self.name = f"outside-{secrets.token_hex(3)}"
        self.image = image
        self.sax_root = f"gs://{BUCKET}/sax-root"
        self.gcs_endpoint = f"http://{OUTSIDE_IP}:{GCS_PORT}"
        self.cell = DEFAULT_CELL
        self.ports = {"admin": DEFAULT_ADMIN_PORT, "model server": DEFAULT_MODEL_SERVER_PORT}
        self._net: Netns | None = None
        self._gcs: Any = None  # gcp_storage_emulator's Server
        self._viewer: FaultyFront | None = None
        self._cell: str | None = None  # the cell's container

    @property
    def viewer_endpoint(self) -> str:
        """The bucket for an object viewer: GCS's API, uploads refused (403)."""
        assert self._viewer is not None, "the stand-ins have not started"
        return self._viewer.endpoint

    @property
    def cell_args(self) -> list[str]:
        """`python -m gateway.cell`'s arguments: the cell's SAX_ROOT and state in the bucket,
        its servers listening on OUTSIDE_IP (and writing it into location.proto)."""
        return [
            "--sax-root", self.sax_root, "--fs-root", f"gs://{BUCKET}/fs-root",
            "--gcs-endpoint", self.gcs_endpoint, "--cell", self.cell, "--host", OUTSIDE_IP,
            "--admin-port", str(self.ports["admin"]),
            "--model-servers", "1", "--model-server-ports", str(self.ports["model server"]),
        ]  # fmt: skip

    def start(self) -> None:
        box = f"saxgw-ct_{self.name}"
        _, self._net = sandbox(box, self.name, self.image, OUTSIDE_IP)
        server = create_server(OUTSIDE_IP, GCS_PORT, in_memory=True, default_bucket=BUCKET)
        self._net.run(server.start)  # its serving thread starts, and listens, in the namespace
        self._gcs = server
        self._viewer = self._net.run(lambda: FaultyFront(GCS_PORT, OUTSIDE_IP))
        self._viewer.upload_status = 403
        self._cell = docker(
            "run", "--detach", "--name", f"saxgw-ct-cell_{self.name}",
            "--label", f"{LABEL}={self.name}", "--network", f"container:{box}",
            "--entrypoint", "python", self.image, "-m", "gateway.cell", *self.cell_args,
        )  # fmt: skip
        for what, port in self.ports.items():
            poll(functools.partial(self._listening, port), f"the cell's {what} to listen", 30)

    def _listening(self, port: int) -> bool:
        assert self._net is not None
        self._net.connect(OUTSIDE_IP, port, 1).close()
        return True

    def attach(self, pod: Netns) -> None:
        """Links the pod's network namespace to the stand-ins' (Pod.start's ``network``)."""
        assert self._net is not None, "the stand-ins have not started"
        link(pod, POD_IP, self._net, OUTSIDE_IP)

    def logs(self, lines: int = 30) -> str:
        return "" if self._cell is None else tail("the outside's cell", self._cell, lines)

    def running(self) -> bool:
        """Whether the cell's container still runs."""
        assert self._cell is not None
        return docker("inspect", "--format", "{{.State.Running}}", self._cell) == "true"

    def stop(self) -> None:
        """Removes everything of the stand-ins, whatever state they are in."""
        remove_pods(self.name)
        if self._viewer is not None:
            self._viewer.close()
        if self._gcs is not None:
            self._gcs.stop()
        if self._net is not None:
            self._net.close()
