"""A kubelet-lite: runs one pod of a rendered Deployment on the container engine as kubelet
would, so that the manifests' containers run as written: command, args, env, volumes, users,
probes, hooks and termination.

    pod = Pod(deployment, Cluster(objects, images), workdir)
    pod.start()                 # sandbox, volumes, init containers and sidecars, containers
    pod.wait_ready(60)
    with pod.forward(8888) as port: ...   # kubectl port-forward: 127.0.0.1:port here
    pod.terminate()             # preStop, SIGTERM, SIGKILL after terminationGracePeriodSeconds
    pod.delete()                # always: every container, mount and file of the pod

Like kubelet's pause container, a sandbox container holds the pod's namespaces: a network
namespace with loopback only (`--network none`: no bridge, nothing on the host's network, so
the pod's fixed ports clash with nothing here), its IPC namespace, and its PID namespace when
`shareProcessNamespace` says so. The pod's IP is POD_IP, a documentation address put on that
loopback: probes and forward() dial it from outside the pod, as kubelet and a Service do, so a
port that listens on 127.0.0.1 is out of their reach, as in a cluster. `start(network)` adds
what a CNI plugin would before any container runs: for the gcs-cell pod, a veth link to the
stand-ins of Cloud Storage and a cell (tests/container/_outside.py). Anything in the spec
this does not do raises NotEmulated; a missing object (a Secret) raises PodFailed, where
kubelet would hold the pod.
"""

from __future__ import annotations

import contextlib
import functools
import math
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tests.container import _volumes
from tests.container._kube import (
    CLUSTER_IP,
    LABEL,
    POD_IP,
    Cluster,
    NotEmulated,
    PodFailed,
    Spec,
    docker,
    expand,
    only,
    resources,
    tail,
)
from tests.container._netns import Netns, ip
from tests.container._probe import Prober, check, validate

_PROBES = ("livenessProbe", "readinessProbe")


def sandbox(name: str, pod: str, image: str, address: str) -> tuple[str, Netns]:
    """A container like kubelet's pause container, named ``name`` and labelled as pod
    ``pod``'s: it holds a network namespace with loopback only and ``address`` on it, and an
    IPC (and PID) namespace that other containers may join. Its ID, and its network namespace."""
    sandbox_id = docker(
        "run", "--detach", "--name", name, "--label", f"{LABEL}={pod}",
        "--network", "none", "--ipc", "shareable", "--init", "--user", "65535:65535",
        "--read-only", "--cap-drop", "ALL", "--entrypoint", "sleep", image, "infinity",
    )  # fmt: skip
    net = Netns(int(docker("inspect", "--format", "{{.State.Pid}}", sandbox_id)))
    ip(net, "address", "add", f"{address}/32", "dev", "lo")
    return sandbox_id, net


def remove_pods(name: str | None = None) -> None:
    """Every container and volume of pod ``name``, or of every pod."""
    label = f"label={LABEL}" if name is None else f"label={LABEL}={name}"
    if ids := docker("ps", "--all", "--quiet", "--filter", label).split():
        docker("rm", "--force", *ids)
    if volumes := docker("volume", "ls", "--quiet", "--filter", label).split():
        docker("volume", "rm", *volumes)


@dataclass(frozen=True)
class Exit:
    """How a container ended when the pod was deleted."""

    code: int
    seconds: float  # after the pod's deletion began
    pre_stop_failure: str | None


class Pod:
    """One pod of ``deployment``, with a name of its own; ``workdir`` holds its volumes."""

    def __init__(self, deployment: Spec, cluster: Cluster, workdir: Path) -> None:
        self.spec: Spec = deployment["spec"]["template"]["spec"]
        self.name = f"{deployment['metadata']['name']}-{secrets.token_hex(3)}"
        self._sandbox = f"k8s_POD_{self.name}"  # the container that holds the namespaces
        self.cluster = cluster
        self._dir = workdir
        self._ids: dict[str, str] = {}  # container name ("" for the sandbox) -> ID
        self._volumes: dict[str, _volumes.Volume] = {}
        self._probers: list[Prober] = []
        self._net: Netns | None = None
        only(
            self.spec,
            {"containers", "initContainers", "volumes", "securityContext", "serviceAccountName",
             "automountServiceAccountToken", "terminationGracePeriodSeconds",
             "shareProcessNamespace", "enableServiceLinks",
             # The scheduler's, not the kubelet's: a pod already placed has nothing to do.
             "topologySpreadConstraints"},
            "pod spec",
        )  # fmt: skip
        self._check_service_account()

    @property
    def containers(self) -> list[Spec]:
        return list(self.spec["containers"])

    @property
    def sidecars(self) -> list[Spec]:
        """Init containers that run beside the containers (restartPolicy: Always)."""
        return [c for c in self.spec.get("initContainers", []) if "restartPolicy" in c]

    @property
    def long_running(self) -> list[Spec]:
        return self.sidecars + self.containers

    @property
    def net(self) -> Netns:
        assert self._net is not None, "the pod has not started"
        return self._net

    # --- start -----------------------------------------------------------------------------

    def start(self, network: Callable[[Netns], None] | None = None) -> None:
        """Runs the pod. ``network``, if given, is what a CNI plugin does: it is handed the
        sandbox's network namespace (loopback only, POD_IP on it) before any container runs."""
        fs_group = self.spec.get("securityContext", {}).get("fsGroup")
        for volume in self.spec.get("volumes", []):
            folder = self._dir / "volumes" / volume["name"]
            made = _volumes.make(volume, folder, self.cluster, self.name, fs_group)
            self._volumes[volume["name"]] = made
        # Every container's `docker run` first: what cannot be emulated fails before anything
        # runs.
        init = self.spec.get("initContainers", [])
        runs = {c["name"]: self._docker_run(c, init=c in init) for c in init + self.containers}
        image = self.cluster.image(self.containers[0]["image"])  # any image with `sleep`
        self._ids[""], self._net = sandbox(self._sandbox, self.name, image, POD_IP)
        if network is not None:
            network(self._net)
        # In order: an init container runs to its end; a sidecar is started and left running.
        for container in init + self.containers:
            name = container["name"]
            self._ids[name] = docker(*runs[name])
            if container in init and "restartPolicy" not in container:
                if (code := int(docker("wait", self._ids[name], timeout=120))) != 0:
                    raise PodFailed(f"init container {name} exited {code}:\n{self.logs()}")
                continue
            # postStart holds the next container back, as kubelet's does; then the probes.
            hook = container.get("lifecycle", {}).get("postStart")
            if hook and (failure := self.check(container, hook, timeout=30)):
                raise PodFailed(f"{name}: postStart hook failed: {failure}")
            for kind in _PROBES:
                if probe := container.get(kind):
                    run = functools.partial(self.check, container, probe)
                    self._probers.append(Prober(name, kind, probe, run))
                    self._probers[-1].start()

    def _docker_run(self, container: Spec, *, init: bool) -> list[str]:
        name = container["name"]
        where = f"container {name}"
        only(
            container,
            {"name", "image", "command", "args", "env", "ports", "volumeMounts", "resources",
             "securityContext", "livenessProbe", "readinessProbe", "lifecycle", "restartPolicy"},
            where,
        )  # fmt: skip
        if container.get("restartPolicy", "Always") != "Always" or (
            "restartPolicy" in container and not init
        ):
            raise NotEmulated(f"{where}: restartPolicy {container['restartPolicy']}")
        for kind in set(_PROBES) & set(container):
            validate(container[kind], container, kind, hook=False)
        lifecycle = container.get("lifecycle", {})
        only(lifecycle, {"postStart", "preStop"}, f"{where} lifecycle")
        for hook in lifecycle:
            validate(lifecycle[hook], container, hook, hook=True)
        for port in container.get("ports", []):
            only(port, {"name", "containerPort", "protocol"}, f"{where} port")
            if port.get("protocol", "TCP") != "TCP":
                raise NotEmulated(f"{where}: a {port['protocol']} port")
        sandbox = f"container:{self._sandbox}"
        run = ["run", "--detach", "--name", f"k8s_{name}_{self.name}"]
        run += ["--label", f"{LABEL}={self.name}", "--network", sandbox, "--ipc", sandbox]
        if self.spec.get("shareProcessNamespace"):
            run += ["--pid", sandbox]
        run += self._security(container) + resources(container.get("resources", {}), where)
        env = self._env(container)
        run += [f"--env={key}={value}" for key, value in env.items()]
        run += _volumes.mounts(container, self._volumes)
        # command replaces the image's ENTRYPOINT (and drops its CMD); args replace CMD.
        command = [expand(word, env) for word in container.get("command", [])]
        args = [expand(word, env) for word in container.get("args", [])]
        entrypoint = ["--entrypoint", command[0]] if command else []
        return [*run, *entrypoint, self.cluster.image(container["image"]), *command[1:], *args]

    def _check_service_account(self) -> None:
        name = self.spec.get("serviceAccountName", "default")
        if (account := self.cluster.get("ServiceAccount", name)) is None:
            raise PodFailed(f"serviceaccount {name} not found")
        automount = self.spec.get("automountServiceAccountToken")
        if automount is None:
            automount = account.get("automountServiceAccountToken", True)
        if automount:
            raise NotEmulated("a service account token (automountServiceAccountToken)")

    def _security(self, container: Spec) -> list[str]:
        pod = self.spec.get("securityContext", {})
        own = container.get("securityContext", {})
        shared = {"runAsNonRoot", "runAsUser", "runAsGroup", "seccompProfile"}
        only(pod, shared | {"fsGroup", "supplementalGroups"}, "pod securityContext")
        only(
            own,
            shared | {"allowPrivilegeEscalation", "readOnlyRootFilesystem", "capabilities"},
            f"container {container['name']} securityContext",
        )
        merged = {**pod, **own}  # the container's settings win
        if "runAsUser" in merged:
            user = str(merged["runAsUser"])
        elif "runAsGroup" in merged:
            raise NotEmulated("runAsGroup without runAsUser")
        else:
            image = self.cluster.image(container["image"])
            user = docker("image", "inspect", "--format", "{{.Config.User}}", image)
            user = user.split(":")[0] or "0"
        if merged.get("runAsNonRoot") and not (user.isdigit() and int(user) != 0):
            raise PodFailed(f"container {container['name']}: runAsNonRoot, but the user is {user}")
        flags = ["--user", f"{user}:{merged['runAsGroup']}" if "runAsGroup" in merged else user]
        for group in [pod.get("fsGroup"), *pod.get("supplementalGroups", [])]:
            flags += ["--group-add", str(group)] if group is not None else []
        profile = merged.get("seccompProfile", {"type": "RuntimeDefault"})
        if profile != {"type": "RuntimeDefault"}:  # the engine's default profile
            raise NotEmulated(f"seccompProfile {profile}")
        if own.get("allowPrivilegeEscalation") is False:
            flags += ["--security-opt", "no-new-privileges"]
        if own.get("readOnlyRootFilesystem"):
            flags.append("--read-only")
        capabilities = own.get("capabilities", {})
        only(capabilities, {"add", "drop"}, "capabilities")
        flags += [f"--cap-drop={c}" for c in capabilities.get("drop", [])]
        return flags + [f"--cap-add={c}" for c in capabilities.get("add", [])]

    def _env(self, container: Spec) -> dict[str, str]:
        env = self._service_links()
        for var in container.get("env", []):
            where = f"container {container['name']} env {var['name']}"
            only(var, {"name", "value", "valueFrom"}, where)
            if "valueFrom" not in var:  # $(VAR) refers to the variables before it
                env[var["name"]] = expand(var.get("value", ""), env)
            elif (value := self._value_from(var["valueFrom"], where)) is not None:
                env[var["name"]] = value
        return env

    def _value_from(self, source: Spec, where: str) -> str | None:
        only(source, {"fieldRef", "configMapKeyRef", "secretKeyRef"}, where)
        if "fieldRef" in source:
            fields = {
                "metadata.name": self.name,
                "metadata.namespace": "default",
                "spec.serviceAccountName": self.spec.get("serviceAccountName", "default"),
                "status.podIP": POD_IP,
            }
            if (path := source["fieldRef"]["fieldPath"]) not in fields:
                raise NotEmulated(f"{where}: fieldRef {path}")
            return str(fields[path])
        [(key, ref)] = source.items()
        kind = "ConfigMap" if key == "configMapKeyRef" else "Secret"
        data = self.cluster.data(kind, ref["name"])
        if data is None or ref["key"] not in data:
            if ref.get("optional"):
                return None
            raise PodFailed(f"{where}: {kind} {ref['name']} has no key {ref['key']}")
        return data[ref["key"]].decode()

    def _service_links(self) -> dict[str, str]:
        """The variables kubelet sets for each Service of the namespace (enableServiceLinks)."""
        if self.spec.get("enableServiceLinks") is False:
            return {}
        env: dict[str, str] = {}
        kubernetes = {"metadata": {"name": "kubernetes"}, "spec": {"ports": [{"port": 443}]}}
        for service in [kubernetes, *(o for o in self.cluster.objects if o["kind"] == "Service")]:
            if service["spec"].get("clusterIP") == "None":  # headless: kubelet sets none
                continue
            prefix = service["metadata"]["name"].upper().replace("-", "_")
            ports = service["spec"]["ports"]
            env[f"{prefix}_SERVICE_HOST"] = CLUSTER_IP
            env[f"{prefix}_SERVICE_PORT"] = str(ports[0]["port"])
            env[f"{prefix}_PORT"] = f"tcp://{CLUSTER_IP}:{ports[0]['port']}"
            for port in ports:
                number = str(port["port"])
                if "name" in port:
                    env[f"{prefix}_SERVICE_PORT_{port['name'].upper()}"] = number
                at = f"{prefix}_PORT_{number}_TCP"
                env.update({at: f"tcp://{CLUSTER_IP}:{number}", f"{at}_PROTO": "tcp"})
                env.update({f"{at}_PORT": number, f"{at}_ADDR": CLUSTER_IP})
        return env

    # --- running ---------------------------------------------------------------------------

    def check(self, container: Spec, handler: Spec, timeout: float) -> str | None:
        """Runs a probe's or hook's action once, as kubelet does: None if it passed."""
        return check(handler, container, self._ids[container["name"]], self.net, timeout)

    def target_port(self, service: str, port: str) -> int:
        """Where a Service's port leads in this pod: its targetPort, or the container port of
        that name, as kube-proxy finds it."""
        found = self.cluster.get("Service", service)
        assert found is not None, service
        [target] = [
            p.get("targetPort", p["port"]) for p in found["spec"]["ports"] if p["name"] == port
        ]
        if isinstance(target, int):
            return target
        ports = [p for c in self.long_running for p in c.get("ports", [])]
        [number] = [p["containerPort"] for p in ports if p.get("name") == target]
        return int(number)

    def forward(self, port: int) -> contextlib.AbstractContextManager[int]:
        """`kubectl port-forward`: a port on 127.0.0.1 here, relayed to the pod's IP:port."""
        return self.net.forward(POD_IP, port)

    def exited(self) -> dict[str, int]:
        """The long-running containers that are not running, with their exit codes."""
        codes = {}
        for name in (c["name"] for c in self.long_running):
            state = "{{.State.Running}} {{.State.ExitCode}}"
            running, code = docker("inspect", "--format", state, self._ids[name]).split()
            if running != "true":
                codes[name] = int(code)
        return codes

    def ready(self) -> bool:
        """Every container running and every readiness probe passing."""
        readiness = [p for p in self._probers if p.kind == "readinessProbe"]
        return not self.exited() and all(p.passing for p in readiness)

    def wait_ready(self, timeout: float) -> float:
        """Seconds until the pod is Ready; PodFailed if a container exits first."""
        start = time.monotonic()
        while not self.ready():
            if exited := self.exited():
                raise PodFailed(f"exited (kubelet would restart them): {exited}\n{self.logs()}")
            if time.monotonic() - start > timeout:
                raise PodFailed(f"not Ready within {timeout} s:\n{self.logs()}")
            time.sleep(0.2)
        return time.monotonic() - start

    def container_id(self, name: str) -> str:
        return self._ids[name]

    def probes(self) -> dict[str, Prober]:
        """Every probe, by "container livenessProbe" and so on."""
        return {p.name: p for p in self._probers}

    def logs(self, lines: int = 30) -> str:
        return "\n".join(tail(name or "sandbox", cid, lines) for name, cid in self._ids.items())

    # --- stop ------------------------------------------------------------------------------

    def terminate(self) -> dict[str, Exit]:
        """What kubelet does when the pod is deleted: for every container at once, its preStop
        hook, then SIGTERM, then SIGKILL when terminationGracePeriodSeconds (from the start,
        preStop included) are up, but at least 2 s after SIGTERM. Sidecars only once every
        container has ended, the last first. Liveness probes stop; readiness probes go on."""
        start = time.monotonic()
        deadline = start + float(self.spec.get("terminationGracePeriodSeconds", 30))
        for prober in self._probers:
            if prober.kind == "livenessProbe":
                prober.stop()
        exits: dict[str, Exit] = {}

        def kill(container: Spec) -> None:
            failure = None
            cid = self._ids[container["name"]]
            hook = container.get("lifecycle", {}).get("preStop")
            if hook and container["name"] not in self.exited():  # a hook for running ones only
                failure = self.check(container, hook, timeout=deadline - time.monotonic())
            seconds = math.ceil(max(deadline - time.monotonic(), 2))
            docker("stop", "--time", str(seconds), cid, timeout=seconds + 30)
            code = int(docker("inspect", "--format", "{{.State.ExitCode}}", cid))
            exits[container["name"]] = Exit(code, time.monotonic() - start, failure)

        threads = [threading.Thread(target=kill, args=(c,)) for c in self.containers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for sidecar in reversed(self.sidecars):
            kill(sidecar)
        return exits

    def delete(self) -> None:
        """Removes everything of the pod, whatever state it is in."""
        for prober in self._probers:
            prober.stop()
        remove_pods(self.name)
        if self._net is not None:
            self._net.close()
