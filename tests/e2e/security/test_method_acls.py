"""A model's data method ACLs set through the gateway's own API (SetAcl with ``method``), as
`saxutil setacl MODEL METHOD ACL` sets them at the admin: shown by GetAcl and GetModel, stored
by the admin, in force for the very next data call, and changed only by who may change the
model's admin ACL. Through the real Envoy of the secure stack (one gateway process, so "the
next call" reaches the gateway that made the change)."""

from __future__ import annotations

from contextlib import ExitStack

import httpx
import pytest

from gateway.cell.models.multimodal import MULTIMODAL_PATH
from tests.e2e._bodies import envoy_error, gateway_error
from tests.e2e._grpc_replies import grpc_web_call, trailers_only_message
from tests.e2e._media_calls import calls_of
from tests.e2e._published import TEST_AUDIO, TEST_VISION, published, stored_model
from tests.e2e.security.conftest import OPS, TEAM_A_KEY, TEAM_B_KEY, SecureStack

pytestmark = pytest.mark.e2e

TEAM_A = {"Authorization": f"Bearer {TEAM_A_KEY}"}  # data; in the group "readers"
TEAM_B = {"Authorization": f"Bearer {TEAM_B_KEY}"}  # data; limited to /sax/test/sec-b-*


def _generate(secure_http: httpx.Client, model: str, headers: dict[str, str]) -> httpx.Response:
    return secure_http.post("/generate", json={"model": model, "query": "q"}, headers=headers)


def _ok(response: httpx.Response) -> object:
    assert response.status_code == 200, response.text
    return response.json()


def test_a_method_acl_set_over_http_guards_the_next_call(
    secure: SecureStack, secure_http: httpx.Client
) -> None:
    model = "/sax/test/sec-b-method-acl"
    with secure.published(model, {"text": "ok"}):
        # team-b's call reads the model's ACLs (none), which the gateway then keeps a while.
        assert _generate(secure_http, model, TEAM_B).status_code == 200
        done = secure_http.post(
            f"/v1{model}:setAcl",
            json={"method": "lm.generate", "acl": "acl/readers"},
            headers=OPS,
        )
        assert _ok(done) == {"name": model, "acl": "acl/readers", "method": "lm.generate"}
        # Right after: the group `readers` holds team-a and ops (config); team-b is not in it.
        refused = _generate(secure_http, model, TEAM_B)
        assert refused.status_code == 403
        assert refused.json() == gateway_error(
            refused,
            7,
            f"lm.generate on {model} is limited to acl/readers; client team-b is not in it",
        )
        assert _generate(secure_http, model, TEAM_A).status_code == 200
        # Other methods have no ACL.
        score = secure_http.post("/score", json={"model": model, "suffix": ["x"]}, headers=TEAM_B)
        assert score.status_code == 200, score.text
        # Readers see it (getacl is a data call), admins in the model's details too.
        acls = {"name": model, "acl": "", "method_acls": {"lm.generate": "acl/readers"}}
        assert _ok(secure_http.get("/getacl", params={"name": model}, headers=TEAM_B)) == acls
        assert _ok(secure_http.get(f"/v1{model}:getAcl", headers=TEAM_A)) == acls
        info = _ok(secure_http.get(f"/v1{model}", headers=OPS))
        assert isinstance(info, dict)
        assert info["model"]["method_acls"] == {"lm.generate": "acl/readers"}
        # What the admin stored: the model's ACL of that method, its admin ACL untouched.
        stored = stored_model(secure.stack, model)
        assert stored is not None
        assert (dict(stored.acls.items), stored.admin_acl) == ({"lm.generate": "acl/readers"}, "")
        # Cleared through the compatibility path: team-b is admitted at once.
        cleared = secure_http.post(
            "/setacl", json={"name": model, "method": "lm.generate", "acl": ""}, headers=OPS
        )
        assert _ok(cleared) == {"name": model, "acl": "", "method": "lm.generate"}
        assert _ok(_generate(secure_http, model, TEAM_B)) == {
            "texts": [{"text": "ok", "score": pytest.approx(-0.1)}]
        }
        empty = {"name": model, "acl": "", "method_acls": {}}
        assert _ok(secure_http.get("/getacl", params={"name": model}, headers=TEAM_B)) == empty
        stored = stored_model(secure.stack, model)
        assert stored is not None and dict(stored.acls.items) == {}


def test_only_who_may_change_the_admin_acl_changes_a_method_acl(
    secure: SecureStack, secure_http: httpx.Client
) -> None:
    model = "/sax/test/sec-method-acl-writers"
    with secure.published(model, {"text": "ok"}):
        body = {"name": model, "method": "lm.generate", "acl": "acl/nobody"}
        # team-a may call the model (role data) but not change its ACLs (role admin).
        refused = secure_http.post("/setacl", json=body, headers=TEAM_A)
        assert refused.status_code == 403
        assert refused.json() == envoy_error(refused, 7, "RBAC: access denied")
        stored = stored_model(secure.stack, model)
        assert stored is not None and dict(stored.acls.items) == {}
        assert _generate(secure_http, model, TEAM_A).status_code == 200
        # An admin may, and the method's ACL is what changes, not the admin ACL.
        assert _ok(secure_http.post("/setacl", json=body, headers=OPS)) == {
            "name": model,
            "acl": "acl/nobody",
            "method": "lm.generate",
        }
        stored = stored_model(secure.stack, model)
        assert stored is not None
        assert (dict(stored.acls.items), stored.admin_acl) == ({"lm.generate": "acl/nobody"}, "")
        refused = _generate(secure_http, model, TEAM_A)
        assert refused.json() == gateway_error(
            refused,
            7,
            f"lm.generate on {model} is limited to acl/nobody; client team-a is not in it",
        )


def test_a_method_acl_guards_each_vision_audio_and_multimodal_method_by_its_sax_name(
    secure: SecureStack, secure_http: httpx.Client
) -> None:
    # Each method's ACL is the one named as upstream's model servers name the method
    # (`gateway/service/_access.py`), which the embedded admin takes for every one of them,
    # vm.video_to_token and vm.token_to_video included (docs/cell.md). All set at once: a call
    # checked under another method's name is refused in that name, and one checked under a
    # name that has no ACL is let through.
    calls = calls_of(TEST_VISION, TEST_AUDIO, MULTIMODAL_PATH)
    paths = {call.model_path for call in calls}
    models = {path: f"/sax/test/sec-b-acl-{path.rsplit('.', 1)[1].lower()}" for path in paths}
    with ExitStack() as stack:
        for path, model in models.items():
            stack.enter_context(published(secure.stack, model, path, headers=OPS))
        for call in calls:
            body = {"method": call.sax_method, "acl": "acl/readers"}
            done = secure_http.post(f"/v1{models[call.model_path]}:setAcl", json=body, headers=OPS)
            assert _ok(done) == {"name": models[call.model_path], **body}
        for call in calls:
            model = models[call.model_path]
            path = f"/v1{model}:{call.verb}"
            # team-b may use these models (its model list), but is not in `readers`.
            refused = secure_http.post(path, json=call.body(), headers=TEAM_B)
            limited = f"{call.sax_method} on {model} is limited to acl/readers"
            message = f"{limited}; client team-b is not in it"
            assert (refused.status_code, refused.json()) == (
                403,
                gateway_error(refused, 7, message),
            ), call.rpc
            # A browser's call (grpc-web) is refused alike: PERMISSION_DENIED, the same words.
            url = f"{secure.stack.http_url}/saxgateway.v1.SaxGateway/{call.rpc}"
            web = grpc_web_call(url, call.request(model), TEAM_B)
            assert trailers_only_message(web, 7) == message, call.rpc
            admitted = secure_http.post(path, json=call.body(), headers=TEAM_A)
            assert call.reply_from_json(_ok(admitted)) == call.reply(), call.rpc
        # Each model's ACLs, as GetAcl shows them: every method by its Sax name.
        for path, model in models.items():
            acls = {c.sax_method: "acl/readers" for c in calls if c.model_path == path}
            shown = secure_http.get(f"/v1{model}:getAcl", headers=TEAM_A)
            assert _ok(shown) == {"name": model, "acl": "", "method_acls": acls}
