"""The training loop's state and its configuration: small and raw, what a checkpoint holds.

:class:`TrainState` is the LangGraph state of one graph run: code, statuses, metrics, counters and
chunk indices, never arrays or rendered prompts (those live in the run's context, see
:mod:`argos.training.agents.context`). :class:`DraftRule` is one candidate and what became of it.
:class:`LoopConfig` holds the budgets and sizes the routers and nodes read. A SQLite checkpointer
saves the state after every node, so everything here must stay plain data (old checkpoints must
still resume: a field added later is ``NotRequired``).
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Annotated, Any, NotRequired, TypedDict

from argos.metrics import EVENT_PA, Objective

JsonDict = dict[str, Any]


@dataclass(frozen=True)
class LoopConfig:
    """Budgets and sizes of the training loop.

    Attributes:
        candidates_per_iteration: ``n``, candidates proposed per iteration (published: 5).
        keep_top: ``k``, rules kept after each iteration (published: 1).
        max_iterations: iteration budget.
        max_repairs: repair attempts per candidate before it is dropped and reported.
        max_reviews: review rounds per iteration when the best candidate regresses.
        patience: iterations without improvement before the run counts as converged.
        time_budget_s: wall-clock budget for the whole run (None = unlimited).
        max_rule_runtime_ms: a candidate slower than this on the validation data is rejected.
        seed: seeds chunk choice and the LLM's ``seed`` parameter.
        recursion_limit: hard cap on graph steps (a second bound besides the counters).
        objective: what candidates are selected and fitted for (``argos train --objective``).
        guard: a second metric a kept set must not lower, on train nor on validation
            (``argos train --guard``, :func:`~argos.metrics.resolve_guard`); None: no guard.
    """

    candidates_per_iteration: int = 5
    keep_top: int = 1
    max_iterations: int = 5
    max_repairs: int = 3
    max_reviews: int = 1
    patience: int = 3
    time_budget_s: float | None = None
    max_rule_runtime_ms: float = 5_000.0
    seed: int = 0
    recursion_limit: int = 2_000
    objective: Objective = EVENT_PA
    guard: Objective | None = None

    def __post_init__(self) -> None:
        if self.candidates_per_iteration < 1 or self.keep_top < 1 or self.max_iterations < 1:
            raise ValueError("candidates_per_iteration, keep_top and max_iterations must be >= 1")
        if self.max_repairs < 0 or self.max_reviews < 0:
            raise ValueError("max_repairs and max_reviews must be >= 0")


class DraftRule(TypedDict):
    """One candidate rule and what became of it."""

    id: str
    code: str
    params: JsonDict
    origin: str  # generator | repairer | reviewer | builtin
    iteration: int
    slot: int
    status: str  # a sandbox status, or no_code / repair_budget / regressed / accepted
    detail: str
    traceback: str
    repairs: int
    train_f1: float | None
    val_f1: float | None
    val_precision: float | None
    val_recall: float | None
    runtime_ms: float
    score: NotRequired[float | None]
    """The selection score (event-PA F1 on ``scored_on``); absent in checkpoints written before
    it existed, where ``val_f1`` is the score."""
    scored_on: NotRequired[str]
    name: NotRequired[str]
    """The rule's file name when it has one of its own (the builtin incumbent's rules)."""


class TrainState(TypedDict, total=False):
    """The graph state. ``log`` is append-only (events for the run summary and the report)."""

    iteration: int
    slot: int
    chunk: int
    contrast: int | None
    focus: str
    draft: DraftRule | None
    pool: list[DraftRule]
    accepted: list[DraftRule]
    reviews: int
    stale: int
    started_at: float
    set_score: float | None
    """Selection score of the kept rule set ``accepted`` (None: nothing kept)."""
    incumbent_score: float | None
    """Selection score of the rule set the loop started from (None: it started from nothing)."""
    incumbent_train_score: float | None
    """Its train score, which breaks a tie on the selection score (None: no train event, or
    nothing to start from)."""
    stop_reason: str | None
    exported: str | None
    usage: JsonDict
    log: Annotated[list[JsonDict], operator.add]
