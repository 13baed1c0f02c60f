"""Randomized stress of a cell's admin writes through a running stack (not part of the suite).

Start a stack on ports of your own, then point this at it (a gs:// fs root: its state.proto's
gs:// URL and --gcs-endpoint):

    saxgw up --port P --admin-port A --model-server-ports M1,M2 --sax-root ROOT ...
    .venv/bin/python scripts/admin_stress.py --http 127.0.0.1:P --admin-port A \
        --state ROOT/fsroot/sax/test/state.proto --model-servers 127.0.0.1:M1,127.0.0.1:M2 \
        --seconds 60 --chaos

It unpublishes every model of /sax/test first. Then: every ACL method's ACL set at once on
one model beside updates of it (each acknowledged one must be stored); "owners", each
changing a model of its own through a random face (HTTP/JSON, gRPC, saxgw) and tracking what
the stored state may be after each answer (an acknowledged change must be in it, a refused
one must have changed nothing, an unsure one, 503/504, may go either way); "hot" writers
racing on one shared model (only their codes are checked: never 500 or UNKNOWN); data calls
on stable models and on one updated all along (none may fail); with --chaos, the admin
SIGKILLed or SIGSTOPped at random. At the end it checks state.proto, ListModels, `saxgw ls`
and the model servers' loaded models against each other. Prints DEFECT lines and a count.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import httpx
from saxgateway.v1 import gateway_pb2 as gw
from saxgateway.v1 import gateway_pb2_grpc as gw_grpc
from saxml.protobuf import admin_pb2, common_pb2, modelet_pb2, modelet_pb2_grpc

TEST_LM = "sax_gateway.testing.TestLM"
CELL = "/sax/test"
METHODS = ["lm.score", "lm.generate", "lm.generate_stream", "lm.embed", "lm.gradient"]
SAXGW = str(Path(sys.executable).parent / "saxgw")
#: Codes a refusal may have: anything else (INTERNAL, UNKNOWN, ...) is a defect.
REFUSALS = {3, 5, 6, 9, 10}  # INVALID_ARGUMENT, NOT_FOUND, ALREADY_EXISTS, FAILED_PRECOND, ABORTED
UNSURE = {4, 14}  # DEADLINE_EXCEEDED, UNAVAILABLE
HTTP_CODE = {200: 0, 400: 3, 404: 5, 409: 6, 412: 9, 503: 14, 504: 4}

Def = tuple[int, tuple[tuple[str, str], ...], str, tuple[tuple[str, str], ...]] | None
"""A model's stored definition as far as the writes go: replicas, overrides, admin ACL,
method ACLs; None: not published."""


@dataclass
class Report:
    defects: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    times: dict[str, list[float]] = field(default_factory=dict)

    def took(self, key: str, seconds: float) -> None:
        self.times.setdefault(key, []).append(seconds)

    def count(self, key: str) -> None:
        self.counts[key] = self.counts.get(key, 0) + 1

    def defect(self, text: str) -> None:
        print("DEFECT", text, flush=True)
        self.defects.append(text)


@dataclass
class Answer:
    code: int  # gRPC code
    message: str
    face: str


class Faces:
    def __init__(self, http_addr: str, timeout: float) -> None:
        self.http = httpx.AsyncClient(base_url=f"http://{http_addr}", timeout=timeout + 5)
        self.channel = grpc.aio.insecure_channel(http_addr)
        self.stub = gw_grpc.SaxGatewayStub(self.channel)
        self.addr = http_addr
        self.timeout = timeout

    async def close(self) -> None:
        await self.http.aclose()
        await self.channel.close()

    async def _http(self, path: str, body: dict[str, Any]) -> Answer:
        try:
            r = await self.http.post(
                path, json=body, headers={"grpc-timeout": f"{int(self.timeout)}S"}
            )
        except httpx.HTTPError as exc:
            return Answer(-1, f"http transport: {exc!r}", "http")
        if r.status_code == 200:
            return Answer(0, "", "http")
        try:
            j = r.json()
            code = int(j.get("code", -2))
        except Exception:
            j, code = r.text, -2
        if r.status_code not in HTTP_CODE or HTTP_CODE[r.status_code] != code:
            return Answer(-3, f"HTTP {r.status_code} body {str(j)[:300]}", "http")
        return Answer(code, str(j.get("message")), "http")

    async def _grpc(self, method: str, request: Any) -> Answer:
        try:
            await getattr(self.stub, method)(request, timeout=self.timeout)
            return Answer(0, "", "grpc")
        except grpc.aio.AioRpcError as exc:
            return Answer(exc.code().value[0], exc.details() or "", "grpc")

    async def _cli(self, *argv: str) -> Answer:
        proc = await asyncio.create_subprocess_exec(
            SAXGW,
            "--gateway",
            self.addr,
            "--json",
            "--timeout",
            str(int(self.timeout)),
            *argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        _, err = await proc.communicate()
        if proc.returncode == 0:
            return Answer(0, "", "cli")
        try:
            j = json.loads(err.decode().strip().splitlines()[-1])
            return Answer(int(j["code"]), j["message"], "cli")
        except Exception:
            return Answer(-4, f"cli exit {proc.returncode}: {err.decode()[-300:]}", "cli")

    async def publish(self, face: str, model: str, replicas: int, text: str) -> Answer:
        if face == "http":
            return await self._http(
                "/publish",
                {
                    "model": model,
                    "model_path": TEST_LM,
                    "checkpoint": "None",
                    "replicas": replicas,
                    "overrides": {"text": text},
                },
            )
        if face == "grpc":
            return await self._grpc(
                "PublishModel",
                gw.PublishModelRequest(
                    model=model,
                    model_path=TEST_LM,
                    checkpoint="None",
                    replicas=replicas,
                    overrides={"text": text},
                ),
            )
        return await self._cli("publish", model, TEST_LM, "None", str(replicas), f"text={text}")

    async def unpublish(self, face: str, model: str) -> Answer:
        if face == "http":
            return await self._http("/unpublish", {"model": model})
        if face == "grpc":
            return await self._grpc("UnpublishModel", gw.UnpublishModelRequest(model=model))
        return await self._cli("unpublish", model)

    async def update(self, face: str, model: str, replicas: int | None, text: str | None) -> Answer:
        if face == "http":
            body: dict[str, Any] = {"model": model}
            if replicas is not None:
                body["replicas"] = replicas
            if text is not None:
                body["overrides"] = {"text": text}
            return await self._http("/update", body)
        if face == "grpc":
            req = gw.UpdateModelRequest(model=model)
            if replicas is not None:
                req.replicas = replicas
            if text is not None:
                req.overrides["text"] = text
            return await self._grpc("UpdateModel", req)
        argv = ["update"]
        if replicas is not None:
            argv.append(f"-replicas={replicas}")
        argv.append(model)
        if text is not None:
            argv.append(f"text={text}")
        return await self._cli(*argv)

    async def setacl(self, face: str, model: str, method: str, acl: str) -> Answer:
        if face == "http":
            return await self._http("/setacl", {"name": model, "method": method, "acl": acl})
        if face == "grpc":
            return await self._grpc("SetAcl", gw.SetAclRequest(name=model, method=method, acl=acl))
        return await self._cli("setacl", model, *([method] if method else []), acl)


def apply(before: Def, op: tuple[Any, ...]) -> tuple[Def, int]:
    """The definition after ``op`` and the code it must get (0, or the refusal's)."""
    kind = op[0]
    if kind == "publish":
        if before is not None:
            return before, 6
        return (op[1], (("text", op[2]),), "", ()), 0
    if before is None:
        return None, 5
    if kind == "unpublish":
        return None, 0
    replicas, overrides, admin_acl, acls = before
    if kind == "update":
        if op[1] is not None:
            replicas = op[1]
        if op[2] is not None:
            overrides = (("text", op[2]),)
        return (replicas, overrides, admin_acl, acls), 0
    method, acl = op[1], op[2]
    if not method:
        return (replicas, overrides, acl, acls), 0
    d = dict(acls)
    if acl:
        d[method] = acl
    else:
        d.pop(method, None)
    return (replicas, overrides, admin_acl, tuple(sorted(d.items()))), 0


def random_op(rng: random.Random, n: int) -> tuple[Any, ...]:
    kind = rng.choice(["publish", "publish", "unpublish", "update", "update", "setacl", "setacl"])
    if kind == "publish":
        return ("publish", rng.choice([0, 0, 1, 2]), f"t{n}")
    if kind == "unpublish":
        return ("unpublish",)
    if kind == "update":
        return ("update", rng.choice([None, 0, 1, 2]), rng.choice([None, f"u{n}"]))
    return ("setacl", rng.choice(["", *METHODS]), rng.choice(["", f"acl/g{n}"]))


async def send(faces: Faces, face: str, model: str, op: tuple[Any, ...]) -> Answer:
    if op[0] == "publish":
        return await faces.publish(face, model, op[1], op[2])
    if op[0] == "unpublish":
        return await faces.unpublish(face, model)
    if op[0] == "update":
        return await faces.update(face, model, op[1], op[2])
    return await faces.setacl(face, model, op[1], op[2])


async def owner(
    faces: Faces,
    model: str,
    rng: random.Random,
    until: float,
    report: Report,
    possible: dict[str, set[Def]],
) -> None:
    """One model, one writer: what it may be is known after every answer."""
    states: set[Def] = {None}
    n = 0
    history: list[str] = []
    while time.monotonic() < until:
        n += 1
        op = random_op(rng, n)
        face = rng.choice(["http", "http", "grpc", "grpc", "cli"])
        t0 = time.monotonic()
        ans = await send(faces, face, model, op)
        took = time.monotonic() - t0
        outcomes = {s: apply(s, op) for s in states}
        history.append(
            f"{time.strftime('%H:%M:%S')} {face} {op} -> {ans.code} {ans.message[:120]!r}"
            f" ({took:.1f}s)"
        )
        defects = len(report.defects)
        report.count(f"{op[0]}:{ans.code}")
        report.took(f"{face} {op[0]}", took)
        if ans.code == 0:
            ok = {after for after, want in outcomes.values() if want == 0}
            if not ok:
                report.defect(
                    f"{model} {face} {op} acknowledged, but from {states} it must be refused"
                    f" {[w for _, w in outcomes.values()]}"
                )
                ok = {after for after, _ in outcomes.values()}
            states = ok
        elif ans.code in REFUSALS:
            fits = {s for s, (after, want) in outcomes.items() if want == ans.code}
            if ans.code == 10:
                fits = set(states)
            if not fits:
                report.defect(
                    f"{model} {face} {op} refused {ans.code} {ans.message!r}, but from {states}"
                    f" it must get {[w for _, w in outcomes.values()]} ({took:.1f}s)"
                )
                fits = set(states)
            states = fits
        elif ans.code in UNSURE:
            states = states | {after for after, _ in outcomes.values()}
        else:
            report.defect(
                f"{model} {face} {op}: bad answer {ans.code} {ans.message[:300]!r} ({took:.1f}s)"
            )
            states = states | {after for after, _ in outcomes.values()}
        if len(report.defects) > defects:
            print("  history of", model, *history[-6:], sep="\n    ", flush=True)
        if len(states) > 8:  # keep it bounded: a fresh ListModels resolves it
            states = set(list(states)[:8])
    possible[model] = states


async def hot(
    faces: Faces,
    model: str,
    rng: random.Random,
    until: float,
    report: Report,
) -> None:
    """One of many writers on one model: only the codes are checked."""
    n = 0
    while time.monotonic() < until:
        n += 1
        op = random_op(rng, n)
        face = rng.choice(["http", "grpc", "grpc", "cli"])
        t0 = time.monotonic()
        ans = await send(faces, face, model, op)
        report.count(f"hot {op[0]}:{ans.code}")
        if ans.code not in REFUSALS | UNSURE | {0}:
            report.defect(
                f"hot {model} {face} {op}: bad answer {ans.code} {ans.message[:300]!r}"
                f" ({time.monotonic() - t0:.1f}s)"
            )


async def churn(faces: Faces, model: str, rng: random.Random, until: float, report: Report) -> None:
    """Updates a model that stays published: its replicas (1 or 2) and overrides."""
    n = 0
    while time.monotonic() < until:
        n += 1
        face = rng.choice(["http", "grpc"])
        ans = await faces.update(face, model, rng.choice([None, 1, 2]), rng.choice([None, f"c{n}"]))
        report.count(f"churn update:{ans.code}")
        if ans.code not in (0, 4, 14):
            report.defect(f"churn {model} {face}: {ans.code} {ans.message[:300]!r}")


async def data(faces: Faces, model: str, face: str, until: float, report: Report) -> None:
    seen_ok = False
    while time.monotonic() < until:
        t0 = time.monotonic()
        if face == "http":
            try:
                r = await faces.http.post("/generate", json={"model": model, "query": "hi"})
                code = r.status_code
                body = r.text[:200]
            except httpx.HTTPError as exc:
                code, body = -1, repr(exc)
        else:
            try:
                await faces.stub.Generate(gw.GenerateRequest(model=model, query="hi"), timeout=30)
                code, body = 200, ""
            except grpc.aio.AioRpcError as exc:
                code, body = exc.code().value[0], exc.details() or ""
        report.count(f"data {face}:{code}")
        if code == 200:
            seen_ok = True
        elif seen_ok and code in (404, 5):
            report.defect(
                f"data {model} ({face}) flipped to not found after serving: {body}"
                f" ({time.monotonic() - t0:.1f}s)"
            )
        elif code not in (200,):
            report.defect(f"data {model} ({face}) {code}: {body} ({time.monotonic() - t0:.1f}s)")
        await asyncio.sleep(0.02)


def admin_pid(port: int) -> int | None:
    out = subprocess.run(
        ["ss", "-ltnpH", f"sport = :{port}"], capture_output=True, text=True
    ).stdout
    for part in out.split("pid=")[1:]:
        return int(part.split(",")[0])
    return None


async def chaos(port: int, rng: random.Random, until: float, report: Report) -> None:
    while time.monotonic() < until:
        await asyncio.sleep(rng.uniform(1.0, 4.0))
        pid = admin_pid(port)
        if pid is None:
            continue
        if rng.random() < 0.6:
            print(f"chaos: SIGKILL admin {pid}", flush=True)
            os.kill(pid, signal.SIGKILL)
            report.count("chaos kill")
        else:
            pause = rng.uniform(0.3, 8.0)
            print(f"chaos: SIGSTOP admin {pid} for {pause:.1f}s", flush=True)
            os.kill(pid, signal.SIGSTOP)
            await asyncio.sleep(pause)
            os.kill(pid, signal.SIGCONT)
            report.count("chaos stop")


def definition(m: admin_pb2.Model) -> Def:
    return (
        m.requested_num_replicas,
        tuple(sorted(m.overrides.items())),
        m.admin_acl,
        tuple(sorted(m.acls.items.items())),
    )


async def final_checks(
    faces: Faces, args: argparse.Namespace, possible: dict[str, set[Def]], report: Report
) -> None:
    # Wait for the admin to answer again.
    for _ in range(120):
        r = await faces.http.get("/listall", params={"sax_cell": CELL})
        if r.status_code == 200:
            break
        await asyncio.sleep(0.5)
    listed = {m["model"]: m for m in r.json().get("models", [])} if r.status_code == 200 else {}
    if args.state.startswith("gs://"):
        from gateway.common.storage import open_storage

        root, _, name = args.state.rpartition("/sax/")
        raw = open_storage(root, gcs_endpoint=args.gcs_endpoint).read_sync("sax/" + name) or b""
    else:
        raw = Path(args.state).read_bytes()
    state = admin_pb2.State.FromString(raw)
    stored = {m.model_id: m for m in state.models}
    for model, states in possible.items():
        got = definition(stored[model]) if model in stored else None
        if got not in states:
            report.defect(f"stored {model} = {got}, but the answers allow only {states}")
        if (model in listed) != (model in stored):
            report.defect(
                f"ListModels {'has' if model in listed else 'lacks'} {model}; state.proto"
                f" {'has' if model in stored else 'lacks'} it"
            )
    ls = subprocess.run(
        [SAXGW, "--gateway", args.http, "--json", "ls", CELL], capture_output=True, text=True
    )
    try:
        ls_ids = {m.get("model") for m in json.loads(ls.stdout).get("models", [])}
    except Exception:
        ls_ids = set()
        report.defect(f"saxgw ls: {ls.returncode} {ls.stdout[:200]} {ls.stderr[:300]}")
    if ls_ids and ls_ids != set(stored):
        report.defect(f"saxgw ls {sorted(ls_ids ^ set(stored))} differ from state.proto")
    if set(listed) != set(stored):
        report.defect(f"ListModels and state.proto differ in {sorted(set(listed) ^ set(stored))}")
    # Model servers converge to the stored state.
    deadline = time.monotonic() + args.converge
    while True:
        problems = []
        loaded: dict[str, int] = {}
        for addr in args.model_servers.split(","):
            async with grpc.aio.insecure_channel(addr) as ch:
                st = await modelet_pb2_grpc.ModeletStub(ch).GetStatus(
                    modelet_pb2.GetStatusRequest(), timeout=5
                )
            for status in st.models:
                key = status.model_key
                if status.model_status == common_pb2.LOADED:
                    loaded[key] = loaded.get(key, 0) + 1
                    if key not in stored:
                        problems.append(f"{addr} serves {key}, which is not published")
        servers = len(args.model_servers.split(","))
        for mid, m in stored.items():
            want = min(m.requested_num_replicas, servers)
            if loaded.get(mid, 0) != want:
                problems.append(f"{mid}: {loaded.get(mid, 0)} replicas loaded, {want} wanted")
        if not problems or time.monotonic() > deadline:
            break
        await asyncio.sleep(1)
    for p in problems:
        report.defect(f"after {args.converge}s: {p}")


async def acl_burst(faces: Faces, model: str, rng: random.Random, report: Report) -> None:
    """Every ACL method's ACL set at once, on one model, beside updates of it: each
    acknowledged one must be stored (they touch different fields)."""
    from gateway.common.names import ACL_METHODS

    await faces.unpublish("http", model)
    ans = await faces.publish("http", model, 0, "burst")
    assert ans.code == 0, ans
    methods = sorted(ACL_METHODS)
    sets = [
        faces.setacl(rng.choice(["http", "grpc", "cli"]), model, m, f"acl/{m}") for m in methods
    ]
    sets.append(faces.setacl("grpc", model, "", "acl/admins"))
    updates = [faces.update(rng.choice(["http", "grpc"]), model, None, f"b{i}") for i in range(10)]
    answers = await asyncio.gather(*sets, *updates)
    for what, ans in zip(
        [*methods, "admin", *[f"update{i}" for i in range(10)]], answers, strict=True
    ):
        report.count(f"burst {what.split('.')[0]}:{ans.code}")
        if ans.code not in (0, 4, 14):
            report.defect(f"burst {what}: {ans.code} {ans.message[:300]!r}")
    acks = {m: a.code == 0 for m, a in zip(methods, answers[: len(methods)], strict=True)}
    await asyncio.sleep(0.5)
    r = await faces.http.get("/getacl", params={"name": model})
    got = r.json() if r.status_code == 200 else {}
    print("burst getacl:", r.status_code, str(got)[:300])
    method_acls = got.get("method_acls", {}) if isinstance(got, dict) else {}
    for m, acked in acks.items():
        if acked and method_acls.get(m) != f"acl/{m}":
            report.defect(f"burst: setacl {m} acknowledged but getacl says {method_acls.get(m)!r}")
    updated = [f"b{i}" for i, a in enumerate(answers[len(sets) :]) if a.code == 0]
    r = await faces.http.get(f"/v1{model}")
    text = r.json()["model"]["overrides"].get("text") if r.status_code == 200 else None
    if updated and text not in updated:
        report.defect(f"burst: overrides text {text!r} is none of the acknowledged {updated}")


async def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--http", required=True)
    p.add_argument("--state", required=True)
    p.add_argument("--admin-port", type=int, required=True)
    p.add_argument("--model-servers", required=True)
    p.add_argument("--seconds", type=float, default=30)
    p.add_argument("--owners", type=int, default=12)
    p.add_argument("--hot", type=int, default=20)
    p.add_argument("--chaos", action="store_true")
    p.add_argument("--seed", type=int, default=int(time.time()))
    p.add_argument("--timeout", type=float, default=20)
    p.add_argument("--converge", type=float, default=40)
    p.add_argument("--prefix", default="st")
    p.add_argument("--gcs-endpoint")
    args = p.parse_args()
    print("seed", args.seed, flush=True)
    rng = random.Random(args.seed)
    faces = Faces(args.http, args.timeout)
    report = Report()
    listed = await faces.http.get("/listall", params={"sax_cell": CELL})
    for m in listed.json().get("models", []):  # start from an empty cell
        await faces.unpublish("grpc", m["model"])
    await acl_burst(faces, f"{CELL}/{args.prefix}-burst", random.Random(rng.random()), report)
    stable = [f"{CELL}/{args.prefix}-stable{i}" for i in range(2)]
    churned = f"{CELL}/{args.prefix}-churned"
    stable.append(churned)
    for model in stable:
        a = await faces.publish("http", model, 1, "stable")
        assert a.code in (0, 6), a
        r = await faces.http.post("/wait_for_ready", json={"model": model, "timeout": "30s"})
        assert r.status_code == 200, r.text
    until = time.monotonic() + args.seconds
    possible: dict[str, set[Def]] = {}
    owners = [f"{CELL}/{args.prefix}-own{i}" for i in range(args.owners)]
    for model in owners:  # start from nothing
        await faces.unpublish("http", model)
    hot_model = f"{CELL}/{args.prefix}-hot"
    tasks = [owner(faces, m, random.Random(rng.random()), until, report, possible) for m in owners]
    tasks += [
        hot(faces, hot_model, random.Random(rng.random()), until, report) for _ in range(args.hot)
    ]
    tasks += [data(faces, m, face, until, report) for m in stable for face in ("http", "grpc")]
    tasks.append(churn(faces, churned, random.Random(rng.random()), until, report))
    if args.chaos:
        tasks.append(chaos(args.admin_port, random.Random(rng.random()), until - 3, report))
    await asyncio.gather(*tasks)
    await final_checks(faces, args, possible, report)
    await faces.close()
    print(json.dumps(dict(sorted(report.counts.items())), indent=None))
    for key, ts in sorted(report.times.items()):
        ts.sort()
        print(f"{key}: n={len(ts)} p50={ts[len(ts) // 2]:.2f}s max={ts[-1]:.2f}s")
    print(f"{len(report.defects)} defects", flush=True)


if __name__ == "__main__":
    asyncio.run(main())
