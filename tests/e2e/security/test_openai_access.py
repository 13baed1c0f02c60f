"""The gateway's own checks hold on the OpenAI-compatible API as on SaxGateway: a client's model
list and a model's Sax ACL refuse a call (403, OpenAI's envelope), whichever route names the
model; there is no way around them through /v1."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from tests.e2e.security.conftest import ISSUER, TEAM_A_KEY, TEAM_B_KEY, TEMPLATED, SecureStack
from tests.e2e.security.test_access import _set_method_acl, _until

pytestmark = pytest.mark.e2e

MODEL = "/sax/test/sec-oai-acl"
_HI: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def model(secure: SecureStack) -> Iterator[str]:
    with secure.published(MODEL, {"text": "hi there"}) as name:
        yield name


def _sdk(secure: SecureStack, key: str) -> openai.OpenAI:
    url = secure.stack.http_url + "/v1"
    return openai.OpenAI(base_url=url, api_key=key, max_retries=0)


def _refused(message: str) -> dict[str, object]:
    return {"message": message, "type": "permission_error", "param": None, "code": None}


def test_a_clients_model_list_holds_on_every_openai_route(secure: SecureStack, model: str) -> None:
    # team-b may use /sax/test/sec-b-* only (conftest).
    refused = _refused(f"client team-b may not use {model}")
    with _sdk(secure, TEAM_B_KEY) as client:
        calls: list[Callable[[], object]] = [
            lambda: client.completions.create(model=model, prompt="q"),
            lambda: client.completions.create(model=model, prompt="q", stream=True),
            # Before the 400 that says the model has no chat template: nothing of the model.
            lambda: client.chat.completions.create(model=model, messages=_HI),
            lambda: client.embeddings.create(model=model, input="q"),
            lambda: client.models.retrieve(model),
        ]
        for call in calls:
            with pytest.raises(openai.PermissionDeniedError) as failure:
                call()
            assert failure.value.body == refused
    with _sdk(secure, TEAM_A_KEY) as client:
        assert client.completions.create(model=model, prompt="q").choices[0].text == "hi there"


def test_a_model_the_client_may_not_use_gets_no_chat_template_run(
    secure: SecureStack,
) -> None:
    # The template ran first: team-b got its 400 ("the chat template refused the
    # conversation: templated for hi"), which names what only the model's users may see.
    with _sdk(secure, TEAM_B_KEY) as team_b, secure.published(TEMPLATED, {"text": "t"}):
        for call in (
            lambda: team_b.chat.completions.create(model=TEMPLATED, messages=_HI),
            lambda: team_b.responses.create(model=TEMPLATED, input="hi"),
        ):
            with pytest.raises(openai.PermissionDeniedError) as failure:
                call()
            assert failure.value.body == _refused(f"client team-b may not use {TEMPLATED}")
    with _sdk(secure, TEAM_A_KEY) as team_a, secure.published(TEMPLATED, {"text": "t"}):
        with pytest.raises(openai.BadRequestError) as refused:
            team_a.chat.completions.create(model=TEMPLATED, messages=_HI)
        assert "templated for hi" in str(refused.value.body)


def test_a_models_sax_acl_holds_on_the_openai_routes(secure: SecureStack, model: str) -> None:
    token = secure.signer.token({"iss": ISSUER, "aud": "saxgw", "sub": "dave"})
    with _sdk(secure, token) as dave, _sdk(secure, TEAM_A_KEY) as team_a:
        _set_method_acl(secure, model, "lm.generate", "acl/readers")
        try:
            # The group `readers` holds team-a and ops (conftest); dave is not in it. The
            # gateway caches ACLs briefly: wait until it has seen this one.
            def dave_refused() -> bool:
                try:
                    dave.completions.create(model=model, prompt="q")
                except openai.PermissionDeniedError:
                    return True
                return False

            _until(dave_refused)
            with pytest.raises(openai.PermissionDeniedError) as failure:
                dave.completions.create(model=model, prompt="q")
            assert failure.value.body == _refused(
                f"lm.generate on {model} is limited to acl/readers; client dave is not in it"
            )
            assert team_a.completions.create(model=model, prompt="q").choices[0].text == "hi there"
        finally:
            _set_method_acl(secure, model, "lm.generate", "")


def test_models_list_shows_a_client_only_the_models_it_may_use(
    secure: SecureStack, model: str
) -> None:
    token = secure.signer.token({"iss": ISSUER, "aud": "saxgw", "sub": "dave"})

    def listed(key: str) -> set[str]:
        with _sdk(secure, key) as client:
            return {m.id for m in client.models.list()}

    # team-b's model list (/sax/test/sec-b-*) leaves the model out; team-a has no list.
    assert model in listed(TEAM_A_KEY)
    assert model not in listed(TEAM_B_KEY)
    assert model in listed(token)
    _set_method_acl(secure, model, "lm.generate", "acl/readers")
    _set_method_acl(secure, model, "lm.generate_stream", "acl/readers")
    try:
        # The listing reads the ACLs as the admin has them now: no cache to wait for.
        assert model not in listed(token)
        assert model in listed(TEAM_A_KEY)
        # ...and what it leaves out cannot be retrieved either.
        with _sdk(secure, token) as dave, pytest.raises(openai.PermissionDeniedError) as refused:
            dave.models.retrieve(model)
        assert refused.value.body == _refused(
            f"lm.generate and lm.generate_stream on {model} are limited by its Sax ACLs; "
            "client dave is in neither"
        )
        with _sdk(secure, TEAM_A_KEY) as team_a:
            assert team_a.models.retrieve(model).id == model
        _set_method_acl(secure, model, "lm.generate_stream", "")
        assert model in listed(token)  # dave may still stream from it
    finally:
        _set_method_acl(secure, model, "lm.generate", "")
        _set_method_acl(secure, model, "lm.generate_stream", "")
