"""`saxgw` against a stack that wants credentials: the key it sends (``--api-key`` or
``SAXGW_API_KEY``) is who it is to Envoy's roles and to the gateway's model ACLs, on unary
calls and streams alike, as for any HTTP or gRPC client."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.e2e._published import TEST_LM, published
from tests.e2e.security.conftest import OPS_KEY, TEAM_A_KEY, TEAM_B_KEY, SecureStack

pytestmark = pytest.mark.e2e

OPS = {"Authorization": f"Bearer {OPS_KEY}"}


def _saxgw(
    secure: SecureStack, *args: str, key: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "SAXGW_API_KEY"}
    if key is not None:
        env["SAXGW_API_KEY"] = key
    argv = [sys.executable, "-m", "gateway.cli", "--gateway", secure.stack.grpc_address, *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=30, env=env)


def test_saxgw_sends_its_key_to_set_and_obey_method_acls(secure: SecureStack) -> None:
    model = "/sax/test/sec-b-cli-key"
    with published(secure.stack, model, TEST_LM, {"text": "ok"}, headers=OPS):
        anonymous = _saxgw(secure, "getacl", model)
        assert (anonymous.returncode, anonymous.stdout) == (1, "")
        assert anonymous.stderr.startswith("saxgw: UNAUTHENTICATED: ")
        assert anonymous.stderr.endswith(
            "hint: the gateway wants an API key or JWT: set SAXGW_API_KEY (or pass --api-key) "
            "to one it accepts\n"
        )
        # The environment's key, or the flag's: the admin role may set a method's ACL.
        set_ = _saxgw(secure, "setacl", model, "lm.generate_stream", "acl/readers", key=OPS_KEY)
        assert (set_.returncode, set_.stderr) == (0, "")
        assert set_.stdout == f"{model} lm.generate_stream: ACL set to 'acl/readers'\n"
        got = _saxgw(secure, "--api-key", TEAM_B_KEY, "getacl", model, "lm.generate_stream")
        assert (got.returncode, got.stdout, got.stderr) == (0, "acl/readers\n", "")
        # A stream carries the key too: team-b is refused by the ACL, team-a (readers) served.
        refused = _saxgw(secure, "lm.generate", model, "q", "--stream", key=TEAM_B_KEY)
        assert refused.returncode == 1 and refused.stdout.strip() == ""
        assert refused.stderr.startswith(
            f"saxgw: PERMISSION_DENIED: lm.generate_stream on {model} is limited to "
            "acl/readers; client team-b is not in it\n"
        )
        served = _saxgw(secure, "lm.generate", model, "q", "--stream", key=TEAM_A_KEY)
        assert (served.returncode, served.stdout, served.stderr) == (0, "ok\n", "")
