"""Fields beyond the OpenAI API reach vLLM only when the policy allows them (PASSTHROUGH_FIELDS)."""

from __future__ import annotations

import openai
import pytest

from tests.inference.conftest import base_env, running_gateway


def _env(fake, **extra):
    return base_env(fake, **extra)


def test_allowed_extra_reaches_the_upstream(tmp_path, primary):
    with running_gateway(tmp_path, _env(primary, PASSTHROUGH_FIELDS="top_k,min_p")) as gw:
        gw.client().chat.completions.create(model=primary.model, messages=[{"role": "user", "content": "hi"}],
                                            extra_body={"top_k": 5})
    assert primary.requests[-1]["body"]["top_k"] == 5


def test_unlisted_extra_is_a_400_naming_the_field_and_never_sent(tmp_path, primary):
    with running_gateway(tmp_path, _env(primary, PASSTHROUGH_FIELDS="top_k")) as gw:
        before = primary.count()
        with pytest.raises(openai.BadRequestError) as err:
            gw.client().chat.completions.create(model=primary.model, messages=[{"role": "user", "content": "hi"}],
                                                extra_body={"guided_json": {"type": "object"}})
        body = err.value.body
        assert body["param"] == "guided_json" and body["code"] == "field_not_allowed"
        assert "Unrecognized request argument supplied: 'guided_json'" in body["message"]
        assert "VASTAI.md:L" in body["message"]  # the rule that denied it
        assert primary.count() == before


def test_openai_fields_need_no_allowance(tmp_path, primary):
    with running_gateway(tmp_path, _env(primary, PASSTHROUGH_FIELDS="top_k")) as gw:
        gw.client().chat.completions.create(model=primary.model, messages=[{"role": "user", "content": "hi"}],
                                            temperature=0.2, seed=7, user="u1")
    assert primary.requests[-1]["body"]["seed"] == 7


def test_star_allows_any_extra(tmp_path, primary):
    with running_gateway(tmp_path, _env(primary, PASSTHROUGH_FIELDS="*")) as gw:
        gw.client().completions.create(model=primary.model, prompt="hi", extra_body={"anything_goes": 1})
    assert primary.requests[-1]["body"]["anything_goes"] == 1
