"""Usage accounting: prices, the ledger, budgets and the metering wrapper.

- :class:`Price`, :data:`DEFAULT_PRICES`, :func:`price_for`: USD per million tokens by model.
- :class:`UsageLedger`: calls, tokens and USD cost per agent for one run (JSON-ready
  :class:`LedgerSummary`, restorable from a checkpoint).
- :class:`Budget` (limits), :class:`Spend` (calls, tokens, dollars) and :meth:`Budget.check`, the
  one rule that refuses a call BEFORE it is sent when it could overshoot a limit.
  :class:`BudgetGuard` applies it to a local ledger; :class:`LedgerState` (spent + reserved by
  calls in flight) applies it to a ledger shared by many processes: :mod:`argos.distributed`
  keeps one in the Dask scheduler for a cluster-wide budget.
- :class:`MeteredChatModel`: the wrapper the agents call: input token cap, budget, ledger.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from argos.llm.interface import (
    CachedLookup,
    CallOptions,
    ChatModel,
    Completion,
    LLMBudgetExceeded,
    Message,
    PromptTooLarge,
    Usage,
    WrappingChatModel,
    check_agent,
    estimate_tokens,
)

__all__ = [
    "DEFAULT_PRICES",
    "AgentUsage",
    "Budget",
    "BudgetGuard",
    "LedgerState",
    "LedgerSummary",
    "MeteredChatModel",
    "Price",
    "Spend",
    "UsageLedger",
    "call_cost",
    "price_for",
]


class Price(BaseModel):
    """USD per one million tokens."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    input_per_m: float = Field(ge=0)
    output_per_m: float = Field(ge=0)

    def cost(self, usage: Usage) -> float:
        """The USD cost of ``usage`` at this price."""
        return (
            usage.prompt_tokens * self.input_per_m + usage.completion_tokens * self.output_per_m
        ) / 1e6


DEFAULT_PRICES: Mapping[str, Price] = {
    # OpenAI list prices (standard tier, uncached input), USD per 1M tokens, as published in 2025.
    # Override or extend them in the config ([llm.prices."model"]) when they change.
    "gpt-4o": Price(input_per_m=2.50, output_per_m=10.00),
    "gpt-4o-mini": Price(input_per_m=0.15, output_per_m=0.60),
    "gpt-4.1": Price(input_per_m=2.00, output_per_m=8.00),
    "gpt-4.1-mini": Price(input_per_m=0.40, output_per_m=1.60),
    "gpt-4.1-nano": Price(input_per_m=0.10, output_per_m=0.40),
    "o4-mini": Price(input_per_m=1.10, output_per_m=4.40),
    "o3": Price(input_per_m=2.00, output_per_m=8.00),
}


def price_for(model: str, prices: Mapping[str, Price]) -> Price | None:
    """The price of ``model``: an exact entry, else the longest entry that ``model`` extends with a
    ``-`` suffix (so ``gpt-4o-2024-08-06`` costs as ``gpt-4o`` and ``gpt-4o-mini-x`` as
    ``gpt-4o-mini``), else None (unpriced)."""
    if model in prices:
        return prices[model]
    best: str | None = None
    for name in prices:
        if model.startswith(name + "-") and (best is None or len(name) > len(best)):
            best = name
    return prices[best] if best is not None else None


def call_cost(model: str, usage: Usage, prices: Mapping[str, Price]) -> float | None:
    """The USD cost of ``usage`` on ``model`` at ``prices`` (see :func:`price_for`), or None when
    the model has no price."""
    price = price_for(model, prices)
    return None if price is None else price.cost(usage)


class AgentUsage(BaseModel):
    """Totals for one agent (or all agents). ``cost_usd`` excludes unpriced models."""

    model_config = ConfigDict(extra="forbid")

    calls: int = 0
    cached_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0

    @property
    def total_tokens(self) -> int:
        """Prompt plus completion tokens."""
        return self.prompt_tokens + self.completion_tokens


class LedgerSummary(BaseModel):
    """A JSON-ready summary of a ledger: per-agent and total usage and cost, and which models had
    no price (their cost counted as 0)."""

    model_config = ConfigDict(extra="forbid")

    run_id: str | None = None
    agents: dict[str, AgentUsage] = Field(default_factory=dict)
    total: AgentUsage = Field(default_factory=AgentUsage)
    unpriced_models: list[str] = Field(default_factory=list)
    estimated_usage: bool = False


class UsageLedger:
    """Counts calls, tokens and USD cost per agent for one run.

    ``prices`` is the model price table (default :data:`DEFAULT_PRICES`); unknown models cost 0 and
    are listed in ``unpriced_models``. Completions served from the response cache are counted
    normally (they were paid once, by this run before it was interrupted; the checkpointed ledger
    did not include them) and also in ``cached_calls``. :meth:`summary` gives a pydantic model for
    run summaries; :meth:`from_summary` restores a ledger from one (e.g. from a checkpoint).
    """

    def __init__(
        self, prices: Mapping[str, Price] | None = None, *, run_id: str | None = None
    ) -> None:
        self.prices: Mapping[str, Price] = dict(DEFAULT_PRICES if prices is None else prices)
        self.run_id = run_id
        self._agents: dict[str, AgentUsage] = {}
        self._unpriced: set[str] = set()
        self._estimated = False
        self._lock = threading.Lock()

    def cost(self, model: str, usage: Usage) -> float | None:
        """The USD cost of ``usage`` on ``model``, or None when the model has no price."""
        return call_cost(model, usage, self.prices)

    def record(self, agent: str, completion: Completion) -> float:
        """Add one completion to ``agent``'s totals; returns its cost (0 when unpriced)."""
        check_agent(agent)
        cost = self.cost(completion.model, completion.usage)
        with self._lock:
            if cost is None:
                self._unpriced.add(completion.model)
            self._estimated = self._estimated or completion.usage.estimated
            row = self._agents.setdefault(agent, AgentUsage())
            row.calls += 1
            row.cached_calls += int(completion.cached)
            row.prompt_tokens += completion.usage.prompt_tokens
            row.completion_tokens += completion.usage.completion_tokens
            row.cost_usd += cost or 0.0
        return cost or 0.0

    def spent(self) -> Spend:
        """Calls, tokens and cost over all agents, as a budget counts them."""
        total = self.total()
        return Spend(total.calls, total.total_tokens, total.cost_usd)

    def agent(self, agent: str) -> AgentUsage:
        """A copy of one agent's totals (zeros when it made no call)."""
        with self._lock:
            return self._agents.get(agent, AgentUsage()).model_copy()

    def total(self) -> AgentUsage:
        """Totals over all agents."""
        with self._lock:
            rows = list(self._agents.values())
        return AgentUsage(
            calls=sum(r.calls for r in rows),
            cached_calls=sum(r.cached_calls for r in rows),
            prompt_tokens=sum(r.prompt_tokens for r in rows),
            completion_tokens=sum(r.completion_tokens for r in rows),
            cost_usd=sum(r.cost_usd for r in rows),
        )

    @property
    def unpriced_models(self) -> list[str]:
        """Models seen without a price (their cost is counted as 0)."""
        with self._lock:
            return sorted(self._unpriced)

    def summary(self) -> LedgerSummary:
        """A JSON-ready snapshot."""
        with self._lock:
            agents = {name: row.model_copy() for name, row in sorted(self._agents.items())}
            unpriced = sorted(self._unpriced)
            estimated = self._estimated
        return LedgerSummary(
            run_id=self.run_id,
            agents=agents,
            total=self.total(),
            unpriced_models=unpriced,
            estimated_usage=estimated,
        )

    @classmethod
    def from_summary(
        cls, summary: LedgerSummary, prices: Mapping[str, Price] | None = None
    ) -> UsageLedger:
        """A ledger continuing from a saved :meth:`summary`."""
        ledger = cls(prices, run_id=summary.run_id)
        ledger._agents = {name: row.model_copy() for name, row in summary.agents.items()}
        ledger._unpriced = set(summary.unpriced_models)
        ledger._estimated = summary.estimated_usage
        return ledger


@dataclass(frozen=True)
class Spend:
    """Calls, tokens (prompt + completion) and USD cost: the three things a :class:`Budget`
    limits."""

    calls: int = 0
    tokens: int = 0
    cost_usd: float = 0.0

    def __add__(self, other: Spend) -> Spend:
        return Spend(
            self.calls + other.calls, self.tokens + other.tokens, self.cost_usd + other.cost_usd
        )


class Budget(BaseModel):
    """Limits for one run; None = unlimited. Tokens are prompt + completion."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_tokens: int | None = Field(default=None, ge=0)
    max_cost_usd: float | None = Field(default=None, ge=0)
    max_calls: int | None = Field(default=None, ge=0)

    def check(
        self,
        *,
        agent: str,
        spent: Spend,
        prompt_tokens: int,
        max_output_tokens: int,
        cost_usd: float,
        in_flight: Spend | None = None,
    ) -> None:
        """Raise :class:`~argos.llm.interface.LLMBudgetExceeded` when one more call could exceed a
        limit: ``spent`` so far, plus what calls ``in_flight`` hold (a ledger shared by several
        processes; None = a local ledger), plus this call's ``prompt_tokens``, up to
        ``max_output_tokens`` and up to ``cost_usd``."""
        held = in_flight or Spend()
        shared = in_flight is not None
        scope = "run-wide " if shared else ""
        out = max_output_tokens
        if self.max_calls is not None and spent.calls + held.calls + 1 > self.max_calls:
            flying = f", {held.calls} in flight" if shared else ""
            raise LLMBudgetExceeded(
                f"{agent} call refused: the {scope}call budget of {self.max_calls} is used up "
                f"({spent.calls} made{flying})"
            )
        if (
            self.max_tokens is not None
            and spent.tokens + held.tokens + prompt_tokens + out > self.max_tokens
        ):
            flying = f" + {held.tokens} in flight" if shared else ""
            raise LLMBudgetExceeded(
                f"{agent} call refused: {spent.tokens} tokens spent{flying} + about "
                f"{prompt_tokens} prompt + up to {out} output would exceed the {scope}token "
                f"budget of {self.max_tokens}"
            )
        if (
            self.max_cost_usd is not None
            and spent.cost_usd + held.cost_usd + cost_usd > self.max_cost_usd
        ):
            flying = f" + ${held.cost_usd:.4f} in flight" if shared else ""
            raise LLMBudgetExceeded(
                f"{agent} call refused: ${spent.cost_usd:.4f} spent{flying} + up to "
                f"${cost_usd:.4f} for this call would exceed the {scope}cost budget of "
                f"${self.max_cost_usd:.2f}"
            )


class BudgetGuard:
    """Refuses a call BEFORE it is sent when it could push the ledger past the budget.

    The projection is pessimistic: spent so far + the estimated prompt tokens + the full
    ``max_tokens`` of output (when known). Cost is projected with the ledger's price table;
    an unpriced model never trips the cost budget (but does trip the token budget).
    """

    def __init__(self, budget: Budget, ledger: UsageLedger) -> None:
        self.budget = budget
        self.ledger = ledger

    def check(
        self, *, agent: str, model: str, prompt_tokens: int, max_output_tokens: int | None
    ) -> None:
        """Raise :class:`~argos.llm.interface.LLMBudgetExceeded` when the next call could exceed
        a limit."""
        out = max_output_tokens or 0
        self.budget.check(
            agent=agent,
            spent=self.ledger.spent(),
            prompt_tokens=prompt_tokens,
            max_output_tokens=out,
            cost_usd=self.ledger.cost(model, Usage(prompt_tokens, out)) or 0.0,
        )


_SPEND_FIELDS = tuple(f.name for f in fields(Spend))


@dataclass(frozen=True)
class LedgerState:
    """A budget ledger shared by several processes that each reserve before calling: what is
    ``spent`` and what is ``reserved`` by calls in flight.

    A call first reserves its pessimistic cost (:meth:`reserve`, which applies
    :meth:`Budget.check` to spent + reserved), so concurrent calls can never overshoot the budget
    together; :meth:`settle` replaces the reservation by the real usage when the call returns.
    Immutable: each step returns the next state, which its owner stores under a lock
    (:class:`argos.distributed.SharedLimitsChatModel` keeps it in the Dask scheduler).
    """

    spent: Spend = Spend()
    """What completed calls used."""
    reserved: Spend = Spend()
    """What calls in flight hold."""

    def reserve(
        self,
        budget: Budget,
        *,
        agent: str,
        prompt_tokens: int,
        max_output_tokens: int,
        cost_usd: float,
    ) -> tuple[LedgerState, Spend]:
        """The state holding one more call, and the reservation to :meth:`settle` later; raises
        :class:`~argos.llm.interface.LLMBudgetExceeded` when the call could exceed ``budget``."""
        budget.check(
            agent=agent,
            spent=self.spent,
            in_flight=self.reserved,
            prompt_tokens=prompt_tokens,
            max_output_tokens=max_output_tokens,
            cost_usd=cost_usd,
        )
        held = Spend(1, prompt_tokens + max_output_tokens, cost_usd)
        return LedgerState(self.spent, self.reserved + held), held

    def settle(self, reservation: Spend, used: Spend | None) -> LedgerState:
        """The state after a reserved call ended: the reservation released and what it ``used``
        charged (None = the call failed and is charged nothing)."""
        return LedgerState(
            self.spent if used is None else self.spent + used,
            Spend(
                self.reserved.calls - reservation.calls,
                self.reserved.tokens - reservation.tokens,
                max(0.0, self.reserved.cost_usd - reservation.cost_usd),
            ),
        )

    def resumed(self, before: Spend) -> LedgerState:
        """The state counting what a resumed run spent ``before``, unless it already holds at
        least that many calls (the same store kept it)."""
        return self if self.spent.calls >= before.calls else LedgerState(before, self.reserved)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any] | None) -> LedgerState:
        """Parse a stored :meth:`to_dict` value (None = nothing spent yet)."""
        raw = raw or {}
        return cls(
            Spend(**{k: raw[k] for k in _SPEND_FIELDS if k in raw}),
            Spend(**{k: raw[f"reserved_{k}"] for k in _SPEND_FIELDS if f"reserved_{k}" in raw}),
        )

    def to_dict(self) -> dict[str, Any]:
        """A flat dict of plain numbers, to store: ``calls``, ``tokens``, ``cost_usd`` spent and
        ``reserved_calls``, ``reserved_tokens``, ``reserved_cost_usd``."""
        reserved = {f"reserved_{k}": v for k, v in asdict(self.reserved).items()}
        return {**asdict(self.spent), **reserved}


class MeteredChatModel(WrappingChatModel):
    """The accounting wrapper the agents should call.

    Before sending: enforces ``max_input_tokens`` (:class:`~argos.llm.interface.PromptTooLarge`)
    with :func:`~argos.llm.interface.estimate_tokens`, then asks ``guard``
    (:class:`~argos.llm.interface.LLMBudgetExceeded`). A request already in an inner response
    cache (a :class:`~argos.llm.interface.CachedLookup`, such as
    :class:`~argos.llm.cache.CachingChatModel`) skips both checks: it costs nothing new. After a
    call: records the completion in ``ledger``. Failed calls are not recorded (the endpoint
    reports no usage for them). ``max_tokens`` default for calls that pass None:
    ``default_max_tokens``.
    """

    def __init__(
        self,
        inner: ChatModel,
        *,
        ledger: UsageLedger,
        guard: BudgetGuard | None = None,
        max_input_tokens: int | None = None,
        default_max_tokens: int | None = None,
    ) -> None:
        super().__init__(inner)
        self.ledger = ledger
        self.guard = guard
        self.max_input_tokens = max_input_tokens
        self.default_max_tokens = default_max_tokens

    def _complete(
        self, messages: Sequence[Message], agent: str, options: CallOptions
    ) -> Completion:
        """Check the cap and budget, call ``inner``, record usage."""
        if options.max_tokens is None:
            options = replace(options, max_tokens=self.default_max_tokens)
        cached = None
        if isinstance(self._inner, CachedLookup):
            cached = self._inner.lookup(messages, options)
        if cached is None:
            prompt_tokens = estimate_tokens(messages)
            if self.max_input_tokens is not None and prompt_tokens > self.max_input_tokens:
                biggest = max(messages, key=lambda m: len(m.content))
                raise PromptTooLarge(
                    f"{agent} prompt is about {prompt_tokens} tokens, over the per-call cap of "
                    f"{self.max_input_tokens} (largest message: {biggest.role}, "
                    f"{len(biggest.content)} chars). Use a smaller chunk, fewer verbatim points "
                    f"(render_chunk max_points) or raise max_input_tokens."
                )
            if self.guard is not None:
                self.guard.check(
                    agent=agent,
                    model=self._inner.model,
                    prompt_tokens=prompt_tokens,
                    max_output_tokens=options.max_tokens,
                )
        completion = self.forward(messages, agent, options)
        self.ledger.record(agent, completion)
        return completion
