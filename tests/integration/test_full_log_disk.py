"""Processes whose log cannot be written serve all the same. Under `saxgw up --log-dir`, a
child's stdout and stderr are its log file; /dev/full, whose every write fails with ENOSPC,
stands in for that file on a full disk. Without --log-dir they are `saxgw up`'s stderr, whose
reader may have gone (`2>&1 | tee`, tee killed): a pipe closed at its far end. Each process
below exited with status 1 at the line that says it listens (an OSError from its flush), and
the supervisor restarted it into the same failure: a stack started with a full log disk
never served, and one whose gateway was restarted on either answered 503 for good."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gateway.launch.processes import free_port
from tests._wait import wait_until


@contextmanager
def _logging_nowhere(log: str, *argv: str) -> Iterator[subprocess.Popen[bytes]]:
    """``python -m argv`` whose stdout and stderr are ``log``: "full" (/dev/full) or "gone"
    (a pipe whose reader has closed it)."""
    if log == "full":
        with open("/dev/full", "wb") as full:
            proc = subprocess.Popen(
                [sys.executable, "-m", *argv], stdout=full, stderr=full, stdin=subprocess.DEVNULL
            )
    else:
        read, write = os.pipe()
        os.close(read)
        proc = subprocess.Popen(
            [sys.executable, "-m", *argv], stdout=write, stderr=write, stdin=subprocess.DEVNULL
        )
        os.close(write)
    try:
        yield proc
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.mark.parametrize("log", ["full", "gone"])
def test_a_gateway_serves_whose_log_cannot_be_written(tmp_path: Path, log: str) -> None:
    port = free_port()
    argv = ("gateway.cli", "gateway", f"--port={port}", f"--sax-root={tmp_path}", "--no-metrics")
    with (
        _logging_nowhere(log, *argv) as proc,
        grpc.insecure_channel(f"127.0.0.1:{port}") as channel,
    ):
        health = health_pb2_grpc.HealthStub(channel)

        def answers() -> bool:
            assert proc.poll() is None, f"the gateway exited with status {proc.returncode}"
            try:
                reply = health.Check(health_pb2.HealthCheckRequest(), timeout=2)
            except grpc.RpcError:
                return False
            # Not SERVING: this SAX_ROOT has no cell, whose admin would answer.
            return bool(reply.status == health_pb2.HealthCheckResponse.NOT_SERVING)

        wait_until("the gateway answers", answers, within=60)


@pytest.mark.parametrize("log", ["full", "gone"])
def test_an_ops_server_serves_whose_log_cannot_be_written(tmp_path: Path, log: str) -> None:
    port = free_port()
    argv = ("gateway.cli", "ops", f"--port={port}", f"--metrics-dir={tmp_path}")
    with _logging_nowhere(log, *argv) as proc:

        def live() -> bool:
            assert proc.poll() is None, f"the ops server exited with status {proc.returncode}"
            try:
                return httpx.get(f"http://127.0.0.1:{port}/livez", timeout=2).text == "ok\n"
            except httpx.TransportError:
                return False

        wait_until("the ops server answers", live, within=60)
        assert httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).status_code == 200
