"""The LLM port: the openai adapter through the real client and a mock transport, the doubles,
the cache, the ledger, budgets and configuration. No network, no sleeps: mock 429/5xx replies
carry ``retry-after-ms: 1`` so the client's backoff is a millisecond."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from argos.llm.config import (
    LLMConfig,
    LLMConfigError,
    build_chat_model,
    is_llm_configured,
    load_llm_config,
)
from argos.llm.interface import (
    DEFAULT_PRICES,
    Budget,
    BudgetGuard,
    CachingChatModel,
    ChatModel,
    Completion,
    LLMBadResponse,
    LLMBudgetExceeded,
    LLMError,
    LLMRateLimited,
    LLMTimeout,
    LLMUnavailable,
    Message,
    MeteredChatModel,
    OpenAIChatModel,
    Price,
    PromptTooLarge,
    RecordingChatModel,
    ReplayChatModel,
    ReplayMiss,
    ScriptedChatModel,
    ScriptError,
    ScriptStep,
    Usage,
    UsageLedger,
    estimate_tokens,
    price_for,
    prompt_sha256,
)

MESSAGES = [Message.system("You write anomaly rules."), Message.user("Here is the data: 1 2 3")]
FAST = {"retry-after-ms": "1"}


def completion_body(
    text: str = "```python\nx = 1\n```", prompt: int = 120, out: int = 30
) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": "gpt-4o-mini-2024-07-18",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": prompt, "completion_tokens": out, "total_tokens": prompt + out},
    }


class Recorder:
    """A mock transport handler replaying a list of responses (or exceptions) in order."""

    def __init__(self, responses: list[httpx.Response | Exception | Callable[[], httpx.Response]]):
        self.responses = responses
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        index = min(len(self.requests), len(self.responses)) - 1
        item = self.responses[index]
        if isinstance(item, Exception):
            raise item
        if callable(item):
            return item()
        return item

    def body(self, n: int = -1) -> dict[str, Any]:
        return dict(json.loads(self.requests[n].content))


def adapter(recorder: Recorder, *, max_retries: int = 2, **kwargs: Any) -> OpenAIChatModel:
    client = httpx.Client(transport=httpx.MockTransport(recorder))
    return OpenAIChatModel(
        model="gpt-4o-mini",
        base_url="http://llm.test/v1",
        api_key="sk-test-secret",
        max_retries=max_retries,
        http_client=client,
        **kwargs,
    )


# ----------------------------------------------------------------------------------- adapter


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


def test_errors_form_one_hierarchy() -> None:
    for cls in (
        LLMTimeout,
        LLMRateLimited,
        LLMUnavailable,
        LLMBadResponse,
        LLMBudgetExceeded,
        PromptTooLarge,
    ):
        assert issubclass(cls, LLMError)
    assert not issubclass(ScriptError, LLMError)
    assert LLMTimeout.transient and not LLMBadResponse.transient


# ----------------------------------------------------------------------------- scripted double


def test_scripted_model_replies_in_order_and_records_calls() -> None:
    with ScriptedChatModel(
        [
            ScriptStep(reply="first", agent="generator", expect="Here is the data"),
            ScriptStep(reply="second", agent="repairer", expect=lambda p: "rules" in p),
        ]
    ) as model:
        a = model.complete(MESSAGES, agent="generator", seed=3)
        b = model.complete(MESSAGES, agent="repairer")
    assert (a.text, b.text) == ("first", "second")
    assert a.usage.prompt_tokens == estimate_tokens(MESSAGES) > 0
    assert [c.agent for c in model.calls] == ["generator", "repairer"]
    assert model.calls[0].seed == 3
    assert "Here is the data" in model.calls[0].prompt
    assert model.remaining == 0


def test_scripted_model_fails_on_unexpected_call() -> None:
    model = ScriptedChatModel(["only one"])
    model.complete(MESSAGES, agent="generator")
    with pytest.raises(ScriptError, match="unexpected LLM call #2 from agent 'reviewer'"):
        model.complete(MESSAGES, agent="reviewer")


def test_scripted_model_fails_when_replies_remain() -> None:
    model = ScriptedChatModel(["a", "b"])
    model.complete(MESSAGES, agent="generator")
    with pytest.raises(ScriptError, match=r"1 scripted LLM step\(s\) never consumed"):
        model.assert_consumed()
    with pytest.raises(ScriptError, match="never consumed"), ScriptedChatModel(["unused"]):
        pass


def test_scripted_model_checks_agent_and_prompt_and_remembers_violations() -> None:
    model = ScriptedChatModel([ScriptStep(reply="x", agent="repairer")])
    with pytest.raises(ScriptError, match="expected agent 'repairer', got 'generator'"):
        model.complete(MESSAGES, agent="generator")
    # Even if the code under test swallowed that error, the end-of-test check still fails.
    with pytest.raises(ScriptError, match="script was violated"):
        model.assert_consumed()
    model = ScriptedChatModel([ScriptStep(reply="x", expect="traceback")])
    with pytest.raises(ScriptError, match="does not contain 'traceback'"):
        model.complete(MESSAGES, agent="repairer")


def test_scripted_model_raises_scripted_errors_and_scripted_usage() -> None:
    model = ScriptedChatModel(
        [
            LLMTimeout("simulated"),
            ScriptStep(reply="y", usage=Usage(1000, 50), finish_reason="length"),
        ]
    )
    with pytest.raises(LLMTimeout, match="simulated"):
        model.complete(MESSAGES, agent="generator")
    out = model.complete(MESSAGES, agent="generator")
    assert out.usage == Usage(1000, 50) and out.truncated
    model.assert_consumed()
    with pytest.raises(ValueError, match="exactly one"):
        ScriptStep()


def test_scripted_context_manager_does_not_mask_the_real_error() -> None:
    with pytest.raises(KeyError), ScriptedChatModel(["never used"]):
        raise KeyError("original")


# ------------------------------------------------------------------------------------ replay


def test_recording_then_replay_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "replay.jsonl"
    recorder = RecordingChatModel(
        ScriptedChatModel([ScriptStep(reply="rule v1", usage=Usage(10, 5)), "rule v2"]), path
    )
    recorder.complete(MESSAGES, agent="generator")
    recorder.complete([Message.user("fix it")], agent="repairer")
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert lines[0]["prompt_sha256"] == prompt_sha256(MESSAGES)
    replay = ReplayChatModel(path)
    out = replay.complete(MESSAGES, agent="generator")
    assert out.text == "rule v1" and out.usage == Usage(10, 5)
    assert replay.complete([Message.user("fix it")], agent="repairer").text == "rule v2"
    with pytest.raises(ReplayMiss, match="no recorded response for agent 'repairer'"):
        replay.complete(MESSAGES, agent="repairer")
    with pytest.raises(ReplayMiss, match=prompt_sha256([Message.user("changed")])):
        replay.complete([Message.user("changed")], agent="generator")


def test_replay_file_errors_name_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(
        '{"agent": "generator", "prompt_sha256": "ab", "response": "x"}\n{"agent": 1}\n'
    )
    with pytest.raises(ValueError, match="line 2"):
        ReplayChatModel(path)


# ------------------------------------------------------------------------------------- cache


def test_cache_serves_repeat_requests_without_calling_again(tmp_path: Path) -> None:
    rec = Recorder([httpx.Response(200, json=completion_body("paid once", 100, 10))])
    db = tmp_path / "cache.sqlite"
    model = CachingChatModel(adapter(rec), db)
    first = model.complete(MESSAGES, agent="generator", seed=1)
    second = model.complete(MESSAGES, agent="generator", seed=1)
    assert len(rec.requests) == 1
    assert not first.cached and second.cached
    assert second.text == "paid once" and second.usage == Usage(100, 10)
    assert (model.hits, model.misses) == (1, 1)
    # a different seed is a different request (n candidates from one prompt)
    model.complete(MESSAGES, agent="generator", seed=2)
    assert len(rec.requests) == 2


def test_cache_survives_a_restart_and_never_stores_errors(tmp_path: Path) -> None:
    db = tmp_path / "run" / "cache.sqlite"
    script = ScriptedChatModel([LLMTimeout("down"), "fresh reply"])
    model = CachingChatModel(script, db, namespace="run-1")
    with pytest.raises(LLMTimeout):
        model.complete(MESSAGES, agent="generator")
    assert model.complete(MESSAGES, agent="generator").text == "fresh reply"
    model.store.close()
    # "resumed process": a new store on the same file, and a double with NO replies left
    resumed = CachingChatModel(ScriptedChatModel([]), db, namespace="run-1")
    assert resumed.complete(MESSAGES, agent="generator").text == "fresh reply"
    assert len(resumed.store) == 1
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT agent, text FROM llm_responses").fetchall() == [
            ("generator", "fresh reply")
        ]
    # another namespace does not share entries
    other = CachingChatModel(ScriptedChatModel(["other run"]), db, namespace="run-2")
    assert other.complete(MESSAGES, agent="generator").text == "other run"


# ------------------------------------------------------------------------ ledger and budgets


def test_price_lookup_exact_snapshot_and_unknown() -> None:
    assert price_for("gpt-4o", DEFAULT_PRICES) == Price(input_per_m=2.5, output_per_m=10.0)
    assert price_for("gpt-4o-2024-08-06", DEFAULT_PRICES) == DEFAULT_PRICES["gpt-4o"]
    assert price_for("gpt-4o-mini-2024-07-18", DEFAULT_PRICES) == DEFAULT_PRICES["gpt-4o-mini"]
    assert price_for("smollm2", DEFAULT_PRICES) is None
    assert price_for("gpt-4o2", DEFAULT_PRICES) is None


def test_ledger_counts_per_agent_and_cost() -> None:
    ledger = UsageLedger(run_id="r1")
    ledger.record("generator", Completion("a", Usage(38_000, 1_100), "gpt-4o", 1.0))
    ledger.record("generator", Completion("b", Usage(2_000, 1_000), "gpt-4o-2024-08-06", 1.0))
    ledger.record("repairer", Completion("c", Usage(500, 200), "smollm2", 1.0, cached=True))
    gen = ledger.agent("generator")
    assert (gen.calls, gen.prompt_tokens, gen.completion_tokens) == (2, 40_000, 2_100)
    # 40k input at $2.50/M + 2.1k output at $10/M
    assert gen.cost_usd == pytest.approx(0.1 + 0.021)
    total = ledger.total()
    assert (total.calls, total.cached_calls, total.total_tokens) == (3, 1, 42_800)
    assert total.cost_usd == pytest.approx(0.121)
    summary = ledger.summary()
    assert summary.unpriced_models == ["smollm2"]
    assert set(summary.agents) == {"generator", "repairer"}
    restored = UsageLedger.from_summary(summary.model_validate_json(summary.model_dump_json()))
    assert restored.total() == total and restored.unpriced_models == ["smollm2"]


def test_price_override_prices_a_local_model() -> None:
    ledger = UsageLedger({**DEFAULT_PRICES, "smollm2": Price(input_per_m=1.0, output_per_m=2.0)})
    assert (
        ledger.record("generator", Completion("x", Usage(1_000_000, 500_000), "smollm2", 0.1))
        == 2.0
    )
    assert ledger.unpriced_models == []


def test_budget_guard_refuses_before_the_call() -> None:
    ledger = UsageLedger()
    script = ScriptedChatModel([ScriptStep(reply="ok", usage=Usage(900, 100))])
    model = MeteredChatModel(
        script, ledger=ledger, guard=BudgetGuard(Budget(max_tokens=1500), ledger)
    )
    model.complete(MESSAGES, agent="generator", max_tokens=100)
    assert ledger.total().total_tokens == 1000
    with pytest.raises(LLMBudgetExceeded, match="exceed the token budget of 1500"):
        model.complete(MESSAGES, agent="generator", max_tokens=600)
    assert len(script.calls) == 1  # the refused call never reached the model
    script.assert_consumed()


def test_budget_guard_cost_and_calls() -> None:
    ledger = UsageLedger()
    ledger.record("generator", Completion("a", Usage(100_000, 0), "gpt-4o", 1.0))  # $0.25
    guard = BudgetGuard(Budget(max_cost_usd=0.30), ledger)
    guard.check(agent="generator", model="gpt-4o", prompt_tokens=10_000, max_output_tokens=0)
    with pytest.raises(LLMBudgetExceeded, match=r"cost budget of \$0.30"):
        guard.check(
            agent="generator", model="gpt-4o", prompt_tokens=10_000, max_output_tokens=4_000
        )
    # an unpriced model cannot trip the cost budget
    guard.check(agent="generator", model="local", prompt_tokens=10**6, max_output_tokens=10**6)
    with pytest.raises(LLMBudgetExceeded, match="call budget of 1"):
        BudgetGuard(Budget(max_calls=1), ledger).check(
            agent="reviewer", model="gpt-4o", prompt_tokens=1, max_output_tokens=1
        )


def test_input_cap_raises_prompt_too_large_before_sending() -> None:
    script = ScriptedChatModel([])
    model = MeteredChatModel(script, ledger=UsageLedger(), max_input_tokens=100)
    big = [Message.system("rules"), Message.user("1.234 " * 400)]
    with pytest.raises(
        PromptTooLarge, match=r"over the per-call cap of 100 \(largest message: user"
    ):
        model.complete(big, agent="generator")
    assert script.calls == []
    script.assert_consumed()


def test_metered_cached_calls_skip_budget_and_are_counted(tmp_path: Path) -> None:
    ledger = UsageLedger()
    inner = CachingChatModel(
        ScriptedChatModel([ScriptStep(reply="r", usage=Usage(50, 50))]), tmp_path / "c.db"
    )
    guard = BudgetGuard(Budget(max_calls=1), ledger)
    model = MeteredChatModel(inner, ledger=ledger, guard=guard)
    model.complete(MESSAGES, agent="generator")
    again = model.complete(
        MESSAGES, agent="generator"
    )  # over max_calls, but free: served from cache
    assert again.cached
    assert ledger.total().calls == 2 and ledger.total().cached_calls == 1


def test_estimate_tokens_is_about_chars_over_four() -> None:
    assert estimate_tokens("") == 0
    assert estimate_tokens("abcd" * 100) in range(25, 101)  # tiktoken or chars/4
    assert estimate_tokens(MESSAGES) > estimate_tokens(MESSAGES[1].content)


# ------------------------------------------------------------------------------------- config


def test_config_defaults_and_not_configured(tmp_path: Path) -> None:
    config = load_llm_config(env={}, cwd=tmp_path)
    assert config == LLMConfig()
    assert config.provider == "openai" and config.max_retries == 2
    assert not is_llm_configured(config)
    with pytest.raises(LLMConfigError, match="no LLM model configured"):
        build_chat_model(config)


def test_config_precedence_file_env_flags(tmp_path: Path) -> None:
    (tmp_path / "argos.toml").write_text(
        """
[llm]
model = "file-model"
base_url = "http://file:1/v1"
timeout_s = 30
max_retries = 5
[llm.prices."file-model"]
input_per_m = 1.0
output_per_m = 2.0
"""
    )
    config = load_llm_config(env={}, cwd=tmp_path)
    assert (config.model, config.base_url, config.timeout_s, config.max_retries) == (
        "file-model",
        "http://file:1/v1",
        30,
        5,
    )
    assert config.price_table()["file-model"] == Price(input_per_m=1.0, output_per_m=2.0)
    assert "gpt-4o" in config.price_table()
    env = {
        "OPENAI_BASE_URL": "http://openai-env/v1",
        "ARGOS_LLM_MODEL": "env-model",
        "OPENAI_API_KEY": "k1",
    }
    config = load_llm_config(env=env, cwd=tmp_path)
    assert (config.model, config.base_url, config.max_retries) == (
        "env-model",
        "http://openai-env/v1",
        5,
    )
    env["ARGOS_LLM_BASE_URL"] = "http://argos-env/v1"
    env["ARGOS_LLM_API_KEY"] = "k2"
    config = load_llm_config(env=env, cwd=tmp_path)
    assert config.base_url == "http://argos-env/v1"
    assert config.api_key is not None and config.api_key.get_secret_value() == "k2"
    config = load_llm_config(
        env=env, cwd=tmp_path, overrides={"model": "flag-model", "base_url": None}
    )
    assert config.model == "flag-model" and config.base_url == "http://argos-env/v1"
    assert is_llm_configured(config)


def test_explicit_config_path_and_errors(tmp_path: Path) -> None:
    path = tmp_path / "custom.toml"
    path.write_text('[llm]\nmodel = "m"\nmax_retries = -1\n')
    with pytest.raises(LLMConfigError, match=r"custom.toml.*max_retries"):
        load_llm_config(path, env={})
    with pytest.raises(LLMConfigError, match="does not exist"):
        load_llm_config(tmp_path / "missing.toml", env={})
    path.write_text("[llm\n")
    with pytest.raises(LLMConfigError, match="not valid TOML"):
        load_llm_config(path, env={})
    path.write_text('[llm]\nmodle = "typo"\n')
    with pytest.raises(LLMConfigError, match="modle"):
        load_llm_config(path, env={})


def test_api_key_never_appears_in_repr_or_public_dict() -> None:
    config = load_llm_config(
        env={"OPENAI_API_KEY": "sk-very-secret", "ARGOS_LLM_MODEL": "gpt-4o"}, cwd="/"
    )
    assert "sk-very-secret" not in repr(config)
    assert "sk-very-secret" not in str(config)
    public = config.public_dict()
    assert "sk-very-secret" not in json.dumps(public)
    assert public["api_key_set"] is True and public["model"] == "gpt-4o"


def test_azure_config_builds_azure_client_from_env(tmp_path: Path) -> None:
    env = {
        "ARGOS_LLM_PROVIDER": "azure",
        "ARGOS_LLM_MODEL": "dep-1",
        "AZURE_OPENAI_ENDPOINT": "https://x.openai.azure.com",
        "AZURE_OPENAI_API_KEY": "az-key",
        "OPENAI_API_KEY": "not-this-one",
        "OPENAI_API_VERSION": "2024-10-21",
    }
    config = load_llm_config(env=env, cwd=tmp_path)
    assert config.provider == "azure" and is_llm_configured(config)
    assert config.api_key is not None and config.api_key.get_secret_value() == "az-key"
    rec = Recorder([httpx.Response(200, json=completion_body("az"))])
    model = build_chat_model(config, http_client=httpx.Client(transport=httpx.MockTransport(rec)))
    assert model.complete(MESSAGES, agent="generator").text == "az"
    assert rec.requests[0].url.path == "/openai/deployments/dep-1/chat/completions"
    del env["OPENAI_API_VERSION"]
    with pytest.raises(LLMConfigError, match="API version"):
        build_chat_model(load_llm_config(env=env, cwd=tmp_path))


def test_local_server_config_needs_no_key(tmp_path: Path) -> None:
    config = load_llm_config(
        env={}, cwd=tmp_path, overrides={"model": "smollm2", "base_url": "http://127.0.0.1:9/v1"}
    )
    assert is_llm_configured(config)
    rec = Recorder([httpx.Response(200, json=completion_body("local"))])
    model = build_chat_model(config, http_client=httpx.Client(transport=httpx.MockTransport(rec)))
    assert model.complete(MESSAGES, agent="generator").text == "local"
    assert rec.body()["max_tokens"] == config.max_output_tokens
    with pytest.raises(LLMConfigError, match="no API key for OpenAI"):
        build_chat_model(LLMConfig(model="gpt-4o"))


def test_empty_values_count_as_unset(tmp_path: Path) -> None:
    env = {"ARGOS_LLM_MODEL": "", "OPENAI_API_KEY": "", "ARGOS_LLM_BASE_URL": ""}
    assert load_llm_config(env=env, cwd=tmp_path) == LLMConfig()
    assert LLMConfig(model="", base_url="", api_key="").model is None  # type: ignore[arg-type]
    assert LLMConfig(model="", api_key="").api_key is None  # type: ignore[arg-type]
    with pytest.raises(LLMConfigError, match="temperature"):
        load_llm_config(env={}, cwd=tmp_path, overrides={"temperature": 3.0})
