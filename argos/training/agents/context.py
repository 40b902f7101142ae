"""What the training graph asks of the world, and how the world answers.

:class:`TrainingContext` is the run's LangGraph context (never checkpointed): the two ports the
nodes call, :class:`RuleLab` (the sandbox and the data: check, fit and score a candidate) and
:class:`Agents` (generate, repair, review), with the loop's configuration, the export callback and
the event sink. Here too are the values the ports exchange (:class:`CheckOutcome`,
:class:`Evaluation`, :class:`GenerationRequest`) and the two exceptions an agent raises to end the
run (:class:`StopRun`) or drop one candidate (:class:`AgentError`). Implemented by
:mod:`argos.training.agents.lab`, :mod:`argos.training.agents.roles` and
:mod:`argos.training.agents.run`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from argos.training.agents.state import DraftRule, JsonDict, LoopConfig


@dataclass(frozen=True)
class CheckOutcome:
    """Result of the static gate + sandbox run + causality check of one candidate."""

    status: str
    detail: str = ""
    traceback: str = ""
    runtime_ms: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status == "ok"


@dataclass(frozen=True)
class Evaluation:
    """Scores of a fitted candidate. Labels and scoring stay in the trainer process."""

    train_f1: float | None
    val_f1: float | None
    val_precision: float | None
    val_recall: float | None
    runtime_ms: float
    status: str = "ok"
    detail: str = ""
    score: float | None = None
    """The selection score; None = ``val_f1`` (see :meth:`RuleLab.evaluate`)."""
    scored_on: str = "validation"
    guard_train: float | None = None
    """The guard metric's F1 on train (:attr:`LoopConfig.guard`); None without a guard or an
    event there."""
    guard_val: float | None = None
    """The guard metric's F1 on validation (the held-out events under held-out selection)."""


class RuleLab(Protocol):
    """Runs candidates in the sandbox and scores them in the parent. Holds the data."""

    def n_chunks(self) -> int:
        """How many training chunks there are."""
        ...

    def plan_chunk(
        self, iteration: int, slot: int, accepted: Sequence[DraftRule], seed: int, slots: int = 1
    ) -> tuple[int, int | None, str]:
        """Pick (chunk, contrastive chunk or None, focus) for candidate ``slot`` of ``slots`` of
        an iteration; deterministic."""
        ...

    def check(self, code: str, chunk: int) -> CheckOutcome:
        """Static gate, sandbox run on the chunk and causality check."""
        ...

    def fit(self, code: str, seed: int) -> JsonDict:
        """Fit the rule's PARAMS on the training data; returns the chosen params."""
        ...

    def evaluate(self, code: str, params: Mapping[str, Any]) -> Evaluation:
        """Train and validation scores of the fitted rule (the run's objective), and the score
        selection ranks it by: validation F1, or, when the validation part holds no labeled
        anomaly, F1 on train + validation (never on test)."""
        ...

    def set_score(self, members: Sequence[DraftRule]) -> Evaluation:
        """The same scores for the rule set whose alarms are the OR of ``members``'."""
        ...

    def regressions(self, old: DraftRule, new: DraftRule) -> str:
        """Validation points the old rule got right and the new one wrong, rendered for the
        reviewer ("" when there are none)."""
        ...


@dataclass(frozen=True)
class GenerationRequest:
    """What the generator node asks the generator for: a candidate for training ``chunk``
    (contrasted with chunk ``contrast``, if any), with ``focus`` saying what to improve on
    ``current`` (the rule set kept so far: the builtin incumbent, then what beat it; empty when
    there is none) whose selection score is ``current_score``, for ``slot`` of ``iteration``."""

    chunk: int
    contrast: int | None
    focus: str
    current: tuple[DraftRule, ...]
    current_score: float | None
    iteration: int
    slot: int
    feedback: tuple[str, ...] = ()
    """What became of the earlier iterations' candidates (kept, or why not, with scores), one
    line each; empty in the first iteration."""
    max_iterations: int = 0


class Agents(Protocol):
    """The three agents. The builtin generator implements ``generate`` only (``can_repair`` and
    ``can_review`` say which of the others the graph may call)."""

    def generate(self, request: GenerationRequest) -> str | None:
        """Return rule code for a new candidate, or None when the reply held no code."""
        ...

    def repair(
        self, *, code: str, status: str, detail: str, traceback: str, attempt: int
    ) -> str | None:
        """Return repaired code, or None when the reply held no code."""
        ...

    def review(
        self,
        *,
        old: DraftRule,
        new: DraftRule,
        regressions: str,
    ) -> str | None:
        """Return revised code, or None to revert to the old rule."""
        ...

    @property
    def can_repair(self) -> bool: ...

    @property
    def can_review(self) -> bool: ...

    @property
    def prefitted(self) -> bool:
        """Whether ``generate`` returns rules whose PARAMS are already fitted (the builtin search
        fits its thresholds): the graph then skips its fit node."""
        ...


class StopRun(Exception):
    """Raised by an agent to end the run cleanly: a token or cost budget is spent, or the LLM
    endpoint keeps failing. What was accepted so far is exported."""


class AgentError(Exception):
    """Raised by an agent when one call failed for good (after the client's retries): the
    candidate is dropped with status ``llm_error`` and the run goes on."""


@dataclass
class TrainingContext:
    """Run dependencies handed to the graph (never checkpointed)."""

    agents: Agents
    lab: RuleLab
    config: LoopConfig
    export: Callable[[list[DraftRule], list[JsonDict]], str]
    on_event: Callable[[JsonDict], None] = field(default=lambda event: None)
    usage: Callable[[], JsonDict] = field(default=dict)
    """LLM usage so far; saved in the state after every agent call, so the checkpoint and the
    usage ledger always agree (a resumed run restores its ledger from it)."""
    incumbent: Sequence[DraftRule] = ()
    """The rule set the loop starts from and must beat (the builtin generator's, evaluated by the
    lab); empty: the loop starts from nothing."""
