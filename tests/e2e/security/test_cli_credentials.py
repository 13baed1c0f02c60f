"""`saxgw` against a stack that wants credentials: the key it sends (``--api-key`` or
``SAXGW_API_KEY``) is who it is to Envoy's roles and to the gateway's model ACLs, on unary
calls and streams alike, as for any HTTP or gRPC client."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.e2e.security.conftest import OPS_KEY, TEAM_A_KEY, TEAM_B_KEY, SecureStack

pytestmark = pytest.mark.e2e


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
    with secure.published(model, {"text": "ok"}):
        anonymous = _saxgw(secure, "getacl", model)
        assert (anonymous.returncode, anonymous.stdout) == (1, "")
        # Envoy's own reply: its message, not its whole JSON body, which is the status
        # message a gRPC client gets.
        assert anonymous.stderr == (
            "saxgw: UNAUTHENTICATED: Client authentication failed.\n"
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


def test_a_role_refused_by_envoy_is_reported_as_the_http_apis_error(secure: SecureStack) -> None:
    # `ls MODEL` lists addresses, which admin_only reserves for admins by default.
    model = "/sax/test/sec-cli-role"
    hint = (
        "the credentials' roles do not allow this call: publish, update, unpublish and setacl "
        "need the admin role, and so do `ls` of a cell or model, `watch` and `stats` unless the "
        "config's admin_only opens them (SAXGW_API_KEY or --api-key names the key)"
    )
    with secure.published(model, {"text": "ok"}):
        refused = _saxgw(secure, "ls", model, key=TEAM_A_KEY)
        assert (refused.returncode, refused.stdout) == (1, "")
        assert refused.stderr == f"saxgw: PERMISSION_DENIED: RBAC: access denied\nhint: {hint}\n"
        as_json = _saxgw(secure, "--json", "ls", model, key=TEAM_A_KEY)
        error = json.loads(as_json.stderr)
        [info] = error["details"]
        assert error == {  # an error body as the gateway's own, as README promises for --json
            "code": 7,
            "message": "RBAC: access denied",
            "details": [
                {
                    "@type": "type.googleapis.com/google.rpc.RequestInfo",
                    "request_id": info["request_id"],
                    "serving_data": "",
                }
            ],
            "hint": hint,
        }
        assert info["request_id"]
        assert _saxgw(secure, "ls", model, key=OPS_KEY).returncode == 0


@pytest.mark.parametrize(
    ("key", "flag", "what"),
    [
        (f"{OPS_KEY}\n", False, f"SAXGW_API_KEY holds U+000A at character {len(OPS_KEY) + 1}"),
        (f"{OPS_KEY}\r", True, f"--api-key holds U+000D at character {len(OPS_KEY) + 1}"),
        (f" {OPS_KEY}", False, "SAXGW_API_KEY holds U+0020 at character 1"),
        ("clé", True, "--api-key holds U+00E9 at character 3"),
    ],
)
def test_a_key_no_header_can_carry_is_refused_before_any_call(
    secure: SecureStack, key: str, flag: bool, what: str
) -> None:
    # A key read from a file kept its line break: grpc failed the call with "INTERNAL:
    # Invalid metadata" and the hint blamed the gateway.
    done = (
        _saxgw(secure, "--api-key", key, "ls", "/sax/test")
        if flag
        else _saxgw(secure, "ls", "/sax/test", key=key)
    )
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr == (
        f"saxgw: the API key of {what}, which a header cannot carry\n"
        "hint: give the key alone, without spaces or line breaks "
        "(`export SAXGW_API_KEY=$(cat FILE)` drops a file's final newline)\n"
    )


def test_an_empty_api_key_flag_sends_none_whatever_the_environment_holds(
    secure: SecureStack,
) -> None:
    # A shell that exports an admin's key had no way to try a call anonymously: the empty
    # flag fell back to the environment, and the call was made as the admin.
    model = "/sax/test/sec-cli-empty-key"
    with secure.published(model, {"text": "ok"}):
        as_admin = _saxgw(secure, "getacl", model, key=OPS_KEY)
        assert (as_admin.returncode, as_admin.stderr) == (0, "")
        anonymous = _saxgw(secure, "--api-key", "", "getacl", model, key=OPS_KEY)
        assert (anonymous.returncode, anonymous.stdout) == (1, "")
        refused = "saxgw: UNAUTHENTICATED: Client authentication failed.\n"
        assert anonymous.stderr.startswith(refused)
