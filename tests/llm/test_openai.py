"""The openai adapter through the real client and a mock transport. No network, no sleeps: mock
429/5xx replies carry ``retry-after-ms: 1`` so the client's backoff is a millisecond."""

from __future__ import annotations

import httpx
import pytest
from openai_mock import FAST, MESSAGES, Recorder, adapter, completion_body

from argos.llm.interface import (
    ChatModel,
    LLMBadResponse,
    LLMRateLimited,
    LLMTimeout,
    LLMUnavailable,
    PromptTooLarge,
    Usage,
    estimate_tokens,
)
from argos.llm.openai import OpenAIChatModel


def test_success_sends_openai_request_and_reports_usage() -> None:
    rec = Recorder([httpx.Response(200, json=completion_body("hello", 111, 22))])
    model = adapter(rec, temperature=0.3, max_tokens=500)
    out = model.complete(MESSAGES, agent="generator", seed=7, json=True)
    assert out.text == "hello"
    assert out.usage == Usage(111, 22)
    assert out.usage.total_tokens == 133
    assert out.model == "gpt-4o-mini-2024-07-18"
    assert out.finish_reason == "stop" and not out.truncated and not out.cached
    assert out.latency_s >= 0
    assert len(rec.requests) == 1
    request = rec.requests[0]
    assert request.url == "http://llm.test/v1/chat/completions"
    assert request.headers["authorization"] == "Bearer sk-test-secret"
    body = rec.body()
    assert body["model"] == "gpt-4o-mini"
    assert body["messages"] == [
        {"role": "system", "content": "You write anomaly rules."},
        {"role": "user", "content": "Here is the data: 1 2 3"},
    ]
    assert body["seed"] == 7 and body["temperature"] == 0.3 and body["max_tokens"] == 500
    assert body["response_format"] == {"type": "json_object"}
    assert isinstance(model, ChatModel)


def test_call_parameters_override_defaults_and_none_are_not_sent() -> None:
    rec = Recorder([httpx.Response(200, json=completion_body())] * 2)
    model = adapter(rec, temperature=0.3)
    model.complete(MESSAGES, agent="generator", temperature=0.9, max_tokens=50)
    assert rec.body()["temperature"] == 0.9 and rec.body()["max_tokens"] == 50
    adapter(rec).complete(MESSAGES, agent="generator")
    assert {"temperature", "max_tokens", "seed", "response_format"}.isdisjoint(rec.body())


def test_429_then_200_is_retried_by_the_client() -> None:
    rec = Recorder(
        [
            httpx.Response(429, json={"error": {"message": "slow down"}}, headers=FAST),
            httpx.Response(200, json=completion_body("ok")),
        ]
    )
    out = adapter(rec).complete(MESSAGES, agent="generator")
    assert out.text == "ok"
    assert len(rec.requests) == 2


def test_5xx_is_retried_then_succeeds() -> None:
    rec = Recorder(
        [
            httpx.Response(500, json={"error": {"message": "boom"}}, headers=FAST),
            httpx.Response(503, json={"error": {"message": "busy"}}, headers=FAST),
            httpx.Response(200, json=completion_body("fine")),
        ]
    )
    assert adapter(rec, max_retries=2).complete(MESSAGES, agent="repairer").text == "fine"
    assert len(rec.requests) == 3


def test_persistent_429_raises_rate_limited_after_max_retries() -> None:
    rec = Recorder([httpx.Response(429, json={"error": {"message": "quota"}}, headers=FAST)])
    with pytest.raises(
        LLMRateLimited, match=r"generator call .* rate limited after 3 retries"
    ) as info:
        adapter(rec, max_retries=3).complete(MESSAGES, agent="generator")
    assert len(rec.requests) == 4  # 1 + 3 retries, all in the client layer
    assert info.value.transient
    assert "sk-test-secret" not in str(info.value)


def test_persistent_5xx_raises_unavailable() -> None:
    rec = Recorder([httpx.Response(502, text="bad gateway", headers=FAST)])
    with pytest.raises(LLMUnavailable, match="server error"):
        adapter(rec, max_retries=1).complete(MESSAGES, agent="reviewer")
    assert len(rec.requests) == 2


def test_read_timeout_raises_llm_timeout() -> None:
    rec = Recorder([httpx.ReadTimeout("read timed out")])
    with pytest.raises(LLMTimeout, match="timed out after 0 retries"):
        adapter(rec, max_retries=0, timeout_s=5).complete(MESSAGES, agent="generator")
    assert len(rec.requests) == 1


def test_timeout_then_success_is_retried_once(monkeypatch: pytest.MonkeyPatch) -> None:
    # A timeout has no response, so no retry-after header: shrink the client's initial backoff
    # (0.5 s) instead. A private constant; if it moves, the test only gets half a second slower.
    monkeypatch.setattr("openai._base_client.INITIAL_RETRY_DELAY", 0.001, raising=False)
    rec = Recorder([httpx.ReadTimeout("slow"), httpx.Response(200, json=completion_body("late"))])
    assert adapter(rec, max_retries=1).complete(MESSAGES, agent="generator").text == "late"
    assert len(rec.requests) == 2


def test_connection_refused_raises_unavailable() -> None:
    rec = Recorder([httpx.ConnectError("connection refused")])
    with pytest.raises(LLMUnavailable, match="cannot connect"):
        adapter(rec, max_retries=0).complete(MESSAGES, agent="generator")


def test_bad_key_and_unknown_model_are_unavailable_and_not_retried() -> None:
    rec = Recorder([httpx.Response(401, json={"error": {"message": "bad key"}})])
    with pytest.raises(LLMUnavailable, match="check the API key"):
        adapter(rec).complete(MESSAGES, agent="generator")
    assert len(rec.requests) == 1
    rec = Recorder([httpx.Response(404, json={"error": {"message": "no such model"}})])
    with pytest.raises(LLMUnavailable, match="not found"):
        adapter(rec).complete(MESSAGES, agent="generator")


def test_context_length_error_is_prompt_too_large() -> None:
    err = {
        "error": {"message": "maximum context length is 8192", "code": "context_length_exceeded"}
    }
    rec = Recorder([httpx.Response(400, json=err)])
    with pytest.raises(PromptTooLarge, match="context window"):
        adapter(rec).complete(MESSAGES, agent="generator")
    rec = Recorder([httpx.Response(400, json={"error": {"message": "bad temperature"}})])
    with pytest.raises(LLMBadResponse, match="rejected the request"):
        adapter(rec).complete(MESSAGES, agent="generator")


@pytest.mark.parametrize(
    "response",
    [
        httpx.Response(200, content=b"{not json", headers={"content-type": "application/json"}),
        httpx.Response(200, text="<html>proxy login</html>", headers={"content-type": "text/html"}),
        httpx.Response(200, json={"foo": 1}),
        httpx.Response(200, json={**completion_body(), "choices": []}),
    ],
    ids=["garbage-json", "html", "no-choices-field", "empty-choices"],
)
def test_garbage_bodies_raise_bad_response(response: httpx.Response) -> None:
    rec = Recorder([response])
    with pytest.raises(LLMBadResponse):
        adapter(rec).complete(MESSAGES, agent="generator")
    assert len(rec.requests) == 1


def test_missing_usage_is_estimated_and_length_finish_is_reported() -> None:
    body = completion_body("def detect(", 1, 1)
    del body["usage"]
    body["choices"][0]["finish_reason"] = "length"
    out = adapter(Recorder([httpx.Response(200, json=body)])).complete(MESSAGES, agent="generator")
    assert out.usage.estimated
    assert out.usage.prompt_tokens == estimate_tokens(MESSAGES)
    assert out.usage.completion_tokens == estimate_tokens("def detect(")
    assert out.truncated


def test_azure_class_path_uses_deployment_url_and_api_key_header() -> None:
    rec = Recorder([httpx.Response(200, json=completion_body("azure ok"))])
    model = OpenAIChatModel.azure(
        deployment="my-gpt4o",
        azure_endpoint="https://argos-test.openai.azure.com",
        api_version="2024-10-21",
        api_key="azure-secret",
        http_client=httpx.Client(transport=httpx.MockTransport(rec)),
    )
    assert model.complete(MESSAGES, agent="generator").text == "azure ok"
    url = rec.requests[0].url
    assert url.host == "argos-test.openai.azure.com"
    assert url.path == "/openai/deployments/my-gpt4o/chat/completions"
    assert url.params["api-version"] == "2024-10-21"
    assert rec.requests[0].headers["api-key"] == "azure-secret"
    assert model.model == "my-gpt4o"


def test_adapter_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="model"):
        OpenAIChatModel(model="", api_key="k")
    model = adapter(Recorder([httpx.Response(200, json=completion_body())]))
    with pytest.raises(ValueError, match="messages must not be empty"):
        model.complete([], agent="generator")
    with pytest.raises(ValueError, match="agent"):
        model.complete(MESSAGES, agent="")


@pytest.mark.parametrize(
    ("response", "error", "message"),
    [
        (
            httpx.Response(403, json={"error": {"message": "denied"}}),
            LLMUnavailable,
            "generator call to model 'gpt-4o-mini' was refused, check the API key "
            "(HTTP 403: Error code: 403 - {'error': {'message': 'denied'}})",
        ),
        (
            httpx.Response(418, text="teapot"),
            LLMBadResponse,
            "generator call to model 'gpt-4o-mini': unexpected HTTP status (HTTP 418: teapot)",
        ),
        (
            httpx.ReadTimeout("read timed out"),
            LLMTimeout,
            "generator call to model 'gpt-4o-mini' timed out after 0 retries "
            "(timeout 5s per attempt)",
        ),
        (
            httpx.ConnectError("connection refused"),
            LLMUnavailable,
            "generator call to model 'gpt-4o-mini': cannot connect to http://llm.test/v1/ "
            "after 0 retries (connection refused)",
        ),
    ],
    ids=["forbidden", "teapot", "timeout", "refused"],
)
def test_client_errors_translate_to_exact_messages(
    response: httpx.Response | Exception, error: type[Exception], message: str
) -> None:
    with pytest.raises(error) as info:
        adapter(Recorder([response]), max_retries=0, timeout_s=5).complete(
            MESSAGES, agent="generator"
        )
    assert str(info.value) == message
