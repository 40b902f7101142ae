"""Prices, the usage ledger, budgets and the metering wrapper."""

from __future__ import annotations

from pathlib import Path

import pytest
from openai_mock import MESSAGES

from argos.llm.cache import CachingChatModel
from argos.llm.interface import (
    Completion,
    LLMBudgetExceeded,
    Message,
    PromptTooLarge,
    Usage,
)
from argos.llm.testing import (
    ScriptedChatModel,
    ScriptStep,
)
from argos.llm.usage import (
    DEFAULT_PRICES,
    Budget,
    BudgetGuard,
    MeteredChatModel,
    Price,
    UsageLedger,
    price_for,
)


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


def test_ledger_state_reserves_settles_and_stores_as_a_flat_dict() -> None:
    from argos.llm.usage import LedgerState, Spend

    budget = Budget(max_calls=5)
    state, held = LedgerState().reserve(
        budget, agent="generator", prompt_tokens=10, max_output_tokens=5, cost_usd=0.5
    )
    assert (state.spent, state.reserved, held) == (Spend(), Spend(1, 15, 0.5), Spend(1, 15, 0.5))
    state = state.settle(held, Spend(1, 12, 0.25))
    assert (state.spent, state.reserved) == (Spend(1, 12, 0.25), Spend(0, 0, 0.0))
    stored = state.to_dict()
    assert stored == {
        "calls": 1,
        "tokens": 12,
        "cost_usd": 0.25,
        "reserved_calls": 0,
        "reserved_tokens": 0,
        "reserved_cost_usd": 0.0,
    }
    assert LedgerState.from_dict(stored) == state
    assert LedgerState.from_dict(None) == LedgerState()
    assert state.resumed(Spend(4, 40, 1.0)).spent == Spend(4, 40, 1.0)
