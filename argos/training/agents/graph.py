"""The durable training loop: generator, repairer and reviewer agents on a LangGraph state machine.

One graph run trains one rule set for one training unit (a series, or a partition of series). Per
iteration it proposes ``n`` candidates; each goes::

    plan -> generate -> check --(error)--> repair -> check ... (bounded)
         --> fit -> validate -> collect

and when the iteration's ``n`` candidates are in, ``select`` keeps the top ``k`` by validation
event-PA F1 behind a deterministic accept gate (no regression versus the accepted rules, causal,
within the runtime budget). A best candidate that regresses goes to the ``review`` agent once (it
gets the metric comparison, the code diff and the points it newly gets wrong) and may revise or
revert; a revision goes through the same check/fit/validate path and the same gate. The loop
stops on the iteration budget, a token/cost budget, a time budget or convergence, then ``export``
writes the rule set (idempotent: the folder is keyed by content hash).

State is small and raw (code, statuses, metrics, counters, chunk indices): no arrays, no rendered
prompts. Everything heavy lives in :class:`TrainingContext` (the LLM port, the rule lab holding the
sandbox and the data, the configuration), passed as the run's LangGraph context. Routers are pure
functions of the state. With a SQLite checkpointer every node's result is saved before the next
starts; a killed run resumes at the interrupted node, and the LLM responses it had already paid for
come back from the response cache (see :class:`argos.llm.interface.CachingChatModel`).
"""

from __future__ import annotations

import contextlib
import hashlib
import operator
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, NotRequired, Protocol, TypedDict, cast

from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime

from argos.rules.contract import RuleContractError, with_params

JsonDict = dict[str, Any]


# --------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------


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

    def __post_init__(self) -> None:
        if self.candidates_per_iteration < 1 or self.keep_top < 1 or self.max_iterations < 1:
            raise ValueError("candidates_per_iteration, keep_top and max_iterations must be >= 1")
        if self.max_repairs < 0 or self.max_reviews < 0:
            raise ValueError("max_repairs and max_reviews must be >= 0")


# --------------------------------------------------------------------------------------------
# State
# --------------------------------------------------------------------------------------------


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
    stop_reason: str | None
    exported: str | None
    usage: JsonDict
    log: Annotated[list[JsonDict], operator.add]


# --------------------------------------------------------------------------------------------
# Ports the graph needs (implemented by argos.training.agents.lab, .roles and .run)
# --------------------------------------------------------------------------------------------


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


class RuleLab(Protocol):
    """Runs candidates in the sandbox and scores them in the parent. Holds the data."""

    def n_chunks(self) -> int:
        """How many training chunks there are."""
        ...

    def plan_chunk(
        self, iteration: int, slot: int, accepted: Sequence[DraftRule], seed: int
    ) -> tuple[int, int | None, str]:
        """Pick (chunk, contrastive chunk or None, focus) for the next candidate; deterministic."""
        ...

    def check(self, code: str, chunk: int) -> CheckOutcome:
        """Static gate, sandbox run on the chunk and causality check."""
        ...

    def fit(self, code: str, seed: int) -> JsonDict:
        """Fit the rule's PARAMS on the training data; returns the chosen params."""
        ...

    def evaluate(self, code: str, params: Mapping[str, Any]) -> Evaluation:
        """Train and validation event-PA of the fitted rule, and the score selection ranks it by:
        validation F1, or, when the validation part holds no labeled anomaly, F1 on train +
        validation (never on test)."""
        ...

    def regressions(self, old: DraftRule, new: DraftRule) -> str:
        """Validation points the old rule got right and the new one wrong, rendered for the
        reviewer ("" when there are none)."""
        ...


@dataclass(frozen=True)
class GenerationRequest:
    """What the generator node asks the generator for: a candidate for training ``chunk``
    (contrasted with chunk ``contrast``, if any), with ``focus`` saying what to improve on
    ``previous`` (the best accepted rule so far, if any), for ``slot`` of ``iteration``."""

    chunk: int
    contrast: int | None
    focus: str
    previous: DraftRule | None
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


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def code_id(code: str) -> str:
    """Short content hash naming a candidate."""
    return hashlib.sha256(code.encode()).hexdigest()[:12]


def _new_candidate(code: str, origin: str, state: TrainState) -> DraftRule:
    return DraftRule(
        id=code_id(code),
        code=code,
        params={},
        origin=origin,
        iteration=state.get("iteration", 0),
        slot=state.get("slot", 0),
        status="pending",
        detail="",
        traceback="",
        repairs=0,
        train_f1=None,
        val_f1=None,
        val_precision=None,
        val_recall=None,
        runtime_ms=0.0,
    )


def _with(c: DraftRule, **changes: Any) -> DraftRule:
    """A copy of ``c`` with some fields changed."""
    return cast(DraftRule, {**c, **changes})


def _draft(state: TrainState) -> DraftRule:
    draft = state.get("draft")
    if draft is None:
        raise RuntimeError("this node needs a draft candidate in the state")
    return draft


def _failed(state: TrainState, origin: str, status: str, detail: str) -> DraftRule:
    return _with(_new_candidate("", origin, state), status=status, detail=detail)


def _selection_score(c: DraftRule) -> float | None:
    """The score a candidate is ranked by (``val_f1`` for checkpoints that predate ``score``)."""
    return c.get("score", c["val_f1"])


def _score(c: DraftRule | None) -> float:
    score = None if c is None else _selection_score(c)
    return -1.0 if score is None else score


def _baseline(accepted: Sequence[DraftRule]) -> float:
    """The score a new rule set must not regress below: the weakest kept rule's (k=1: the rule)."""
    return min((_score(c) for c in accepted), default=-1.0)


def _event(kind: str, state: TrainState, **fields: Any) -> JsonDict:
    return {
        "event": kind,
        "iteration": state.get("iteration", 0),
        "slot": state.get("slot", 0),
    } | fields


def _ctx(runtime: Runtime[TrainingContext]) -> TrainingContext:
    ctx = runtime.context
    if ctx is None:
        raise RuntimeError("the training graph needs a TrainingContext (pass context=...)")
    return ctx


def _emit(ctx: TrainingContext, event: JsonDict) -> list[JsonDict]:
    ctx.on_event(event)
    return [event]


# --------------------------------------------------------------------------------------------
# Nodes
# --------------------------------------------------------------------------------------------


def start(state: TrainState, runtime: Runtime[TrainingContext]) -> TrainState:
    """Initialise counters (a resumed run skips this: the checkpoint already has them)."""
    ctx = _ctx(runtime)
    return {
        "iteration": 0,
        "slot": 0,
        "pool": [],
        "accepted": [],
        "reviews": 0,
        "stale": 0,
        "draft": None,
        "started_at": time.time(),
        "stop_reason": None,
        "exported": None,
        "log": _emit(ctx, {"event": "start", "n_chunks": ctx.lab.n_chunks()}),
    }


def plan(state: TrainState, runtime: Runtime[TrainingContext]) -> TrainState:
    """Check the time budget, then pick the training and contrastive chunks of the next slot."""
    ctx = _ctx(runtime)
    budget = ctx.config.time_budget_s
    if budget is not None and time.time() - state["started_at"] > budget:
        return {
            "stop_reason": "time budget",
            "log": _emit(ctx, _event("stop", state, why="time budget")),
        }
    chunk, contrast, focus = ctx.lab.plan_chunk(
        state["iteration"], state["slot"], state["accepted"], ctx.config.seed
    )
    return {"chunk": chunk, "contrast": contrast, "focus": focus}


def generate(state: TrainState, runtime: Runtime[TrainingContext]) -> TrainState:
    """Ask the generator for a new candidate."""
    ctx = _ctx(runtime)
    previous = state["accepted"][0] if state["accepted"] else None
    request = GenerationRequest(
        chunk=state["chunk"],
        contrast=state.get("contrast"),
        focus=state.get("focus", "initial"),
        previous=previous,
        iteration=state["iteration"],
        slot=state["slot"],
        feedback=tuple(feedback_lines(state.get("log", []), state["iteration"])),
        max_iterations=ctx.config.max_iterations,
    )
    try:
        code, failure = _ask(lambda: ctx.agents.generate(request), "generator")
    except StopRun as exc:
        return _stopped(ctx, state, exc)
    draft = (
        _failed(state, "generator", *failure)
        if code is None
        else _new_candidate(code, "generator", state)
    )
    event = _event("generated", state, id=draft["id"])
    return {"draft": draft, "usage": ctx.usage(), "log": _emit(ctx, event)}


def _ask(call: Callable[[], str | None], agent: str) -> tuple[str | None, tuple[str, str]]:
    """Call an agent: its code (None when there is none) and the (status, detail) to record when
    there is none: ``llm_error`` when the call failed for good, else ``no_code``. A
    :class:`StopRun` propagates."""
    try:
        code = call()
    except AgentError as exc:
        return None, ("llm_error", f"the {agent} call failed: {exc}")
    return code, ("no_code", f"the {agent}'s reply held no Python code")


def _stopped(ctx: TrainingContext, state: TrainState, exc: StopRun) -> TrainState:
    """The state update that ends the run: an agent raised :class:`StopRun`."""
    return {"stop_reason": str(exc), "log": _emit(ctx, _event("stop", state, why=str(exc)))}


def check(state: TrainState, runtime: Runtime[TrainingContext]) -> TrainState:
    """Static gate, sandbox run and causality check of the draft."""
    ctx = _ctx(runtime)
    draft = _draft(state)
    out = ctx.lab.check(draft["code"], state["chunk"])
    draft = _with(
        draft,
        status=out.status,
        detail=out.detail,
        traceback=out.traceback,
        runtime_ms=out.runtime_ms,
    )
    event = _event("checked", state, id=draft["id"], status=out.status, detail=out.detail[:300])
    return {"draft": draft, "log": _emit(ctx, event)}


def repair(state: TrainState, runtime: Runtime[TrainingContext]) -> TrainState:
    """Ask the repairer to fix the draft given its status, error and traceback."""
    ctx = _ctx(runtime)
    draft = _draft(state)
    attempt = draft["repairs"] + 1
    # After fitting, the repairer sees the params that ran (they are what broke the rule).
    shown = draft["code"]
    if draft["params"]:
        with contextlib.suppress(RuleContractError):
            shown = with_params(draft["code"], draft["params"])
    try:
        code, failure = _ask(
            lambda: ctx.agents.repair(
                code=shown,
                status=draft["status"],
                detail=draft["detail"],
                traceback=draft["traceback"],
                attempt=attempt,
            ),
            "repairer",
        )
    except StopRun as exc:
        return _stopped(ctx, state, exc)
    if code is None:
        fixed = _with(draft, repairs=attempt, status=failure[0], detail=failure[1])
    else:
        fixed = _with(_new_candidate(code, draft["origin"], state), repairs=attempt)
    event = _event("repaired", state, id=fixed["id"], attempt=attempt, was=draft["status"])
    return {"draft": fixed, "usage": ctx.usage(), "log": _emit(ctx, event)}


def fit(state: TrainState, runtime: Runtime[TrainingContext]) -> TrainState:
    """Fit the draft's PARAMS on training data (in the sandbox, scored in the parent), unless the
    generator already fitted them (the builtin search does)."""
    ctx = _ctx(runtime)
    draft = _draft(state)
    if ctx.agents.prefitted:
        return {}
    return {"draft": _with(draft, params=ctx.lab.fit(draft["code"], ctx.config.seed))}


def validate(state: TrainState, runtime: Runtime[TrainingContext]) -> TrainState:
    """Score the fitted draft on train and validation; enforce the runtime budget."""
    ctx = _ctx(runtime)
    draft = _draft(state)
    ev = ctx.lab.evaluate(draft["code"], draft["params"])
    status, detail = ev.status, ev.detail
    budget = ctx.config.max_rule_runtime_ms
    if status == "ok" and ev.runtime_ms > budget:
        status = "too_slow"
        detail = f"{ev.runtime_ms:.0f} ms on the validation data, budget {budget:.0f} ms"
    draft = _with(
        draft,
        train_f1=ev.train_f1,
        val_f1=ev.val_f1,
        val_precision=ev.val_precision,
        val_recall=ev.val_recall,
        runtime_ms=ev.runtime_ms,
        status=status,
        detail=detail,
        score=ev.val_f1 if ev.score is None else ev.score,
        scored_on=ev.scored_on,
    )
    event = _event(
        "validated",
        state,
        id=draft["id"],
        status=status,
        val_f1=ev.val_f1,
        train_f1=ev.train_f1,
        score=draft["score"],
        scored_on=ev.scored_on,
    )
    return {"draft": draft, "log": _emit(ctx, event)}


def collect(state: TrainState, runtime: Runtime[TrainingContext]) -> TrainState:
    """File the finished draft into this iteration's pool and move to the next slot."""
    ctx = _ctx(runtime)
    draft = state["draft"]
    assert draft is not None
    pool = [*state["pool"], draft]
    event = _event(
        "candidate",
        state,
        id=draft["id"],
        status=draft["status"],
        val_f1=draft["val_f1"],
        origin=draft["origin"],
        repairs=draft["repairs"],
        score=draft.get("score"),
        scored_on=draft.get("scored_on"),
        detail=draft["detail"][:300],
    )
    return {"pool": pool, "slot": state["slot"] + 1, "draft": None, "log": _emit(ctx, event)}


def select(state: TrainState, runtime: Runtime[TrainingContext]) -> TrainState:
    """Keep the top k of accepted + this iteration's valid candidates, behind the accept gate."""
    ctx = _ctx(runtime)
    valid = [c for c in state["pool"] if c["status"] == "ok" and _selection_score(c) is not None]
    ranked = sorted(valid, key=lambda c: (-_score(c), c["id"]))
    best = ranked[0] if ranked else None
    accepted = state["accepted"]
    if best is None:
        log = _outcomes(ctx, state, state["pool"], kept=[], regressed=None)
        event = _event("iteration", state, outcome="no valid candidate")
        return {"log": [*log, *_emit(ctx, event)]}
    if not accepted or _score(best) >= _baseline(accepted):
        kept = _top_k([*accepted, *ranked], ctx.config.keep_top)
        improved = not accepted or _score(kept[0]) > _score(accepted[0])
        log = _outcomes(ctx, state, state["pool"], kept=kept, regressed=None)
        event = _event(
            "accepted",
            state,
            id=best["id"],
            val_f1=best["val_f1"],
            score=_selection_score(best),
            scored_on=best.get("scored_on", "validation"),
            previous=_score(accepted[0]) if accepted else None,
        )
        return {
            "accepted": kept,
            "stale": 0 if improved else state["stale"] + 1,
            "log": [*log, *_emit(ctx, event)],
        }
    # The best candidate regresses: it goes to review (routed by `after_select`).
    regressed = _with(best, status="regressed")
    log = _outcomes(ctx, state, state["pool"], kept=accepted, regressed=best)
    event = _event(
        "regressed", state, id=best["id"], val_f1=best["val_f1"], baseline=_baseline(accepted)
    )
    return {
        "draft": regressed,
        "stale": state["stale"] + 1,
        "log": [*log, *_emit(ctx, event)],
    }


def _outcomes(
    ctx: TrainingContext,
    state: TrainState,
    pool: Sequence[DraftRule],
    *,
    kept: Sequence[DraftRule],
    regressed: DraftRule | None,
) -> list[JsonDict]:
    """One ``outcome`` event per candidate of the iteration: what became of it, in words the
    report shows and the next generator prompt quotes."""
    kept_ids = {c["id"] for c in kept}
    bar = _baseline(kept) if kept else None
    out: list[JsonDict] = []
    for c in pool:
        score, on = _selection_score(c), c.get("scored_on", "validation")
        scores = _scores_text(c)
        if c["status"] != "ok":
            text = f"rejected ({c['status']}): {c['detail'][:200]}".rstrip(": ")
        elif score is None:
            text = f"not scored: no labeled anomaly in {on} to score it on{scores}; not kept"
        elif regressed is not None and c["id"] == regressed["id"]:
            text = f"regressed: {on} F1 {score:.3f} below the kept rule's {bar:.3f}{scores}"
        elif c["id"] in kept_ids:
            text = f"accepted: kept with {on} F1 {score:.3f}{scores}"
        else:
            best = f" (the kept rule has {bar:.3f})" if bar is not None and bar >= 0 else ""
            text = f"valid, not kept: {on} F1 {score:.3f}{best}{scores}"
        event = _event("outcome", state, id=c["id"], status=c["status"], outcome=text, score=score)
        out += _emit(ctx, event)
    return out


def _scores_text(c: DraftRule) -> str:
    parts = [
        f"{name} {value:.3f}"
        for name, value in (
            ("train F1", c["train_f1"]),
            ("validation precision", c["val_precision"]),
            ("validation recall", c["val_recall"]),
        )
        if value is not None
    ]
    return f" ({', '.join(parts)})" if parts else ""


def feedback_lines(log: Sequence[Mapping[str, Any]], before: int, limit: int = 12) -> list[str]:
    """What became of the candidates of iterations before ``before`` (their ``outcome`` events),
    one line each, the latest ``limit`` (``plan`` feeds these to the next generator prompt)."""
    lines = [
        f"- iteration {int(e.get('iteration', 0)) + 1}, candidate {e.get('id')}: {e.get('outcome')}"
        for e in log
        if e.get("event") == "outcome" and int(e.get("iteration", 0)) < before
    ]
    return lines[-limit:]


def review(state: TrainState, runtime: Runtime[TrainingContext]) -> TrainState:
    """The reviewer sees the comparison, diff and newly wrong windows; it revises or reverts."""
    ctx = _ctx(runtime)
    new = state["draft"]
    assert new is not None
    old = state["accepted"][0]
    try:
        code = ctx.agents.review(old=old, new=new, regressions=ctx.lab.regressions(old, new))
    except StopRun as exc:
        return {**_stopped(ctx, state, exc), "draft": None, "reviews": state["reviews"] + 1}
    except AgentError as exc:
        code = None
        _emit(ctx, _event("llm_error", state, agent="reviewer", detail=str(exc)))
    reviews = state["reviews"] + 1
    if code is None:
        return {
            "draft": None,
            "reviews": reviews,
            "usage": ctx.usage(),
            "log": _emit(ctx, _event("reverted", state, id=new["id"])),
        }
    revised = _new_candidate(code, "reviewer", state)
    return {
        "draft": revised,
        "reviews": reviews,
        "usage": ctx.usage(),
        "log": _emit(ctx, _event("revised", state, id=revised["id"])),
    }


def judge_review(state: TrainState, runtime: Runtime[TrainingContext]) -> TrainState:
    """The deterministic gate for a reviewer's revision: accept only without regression."""
    ctx = _ctx(runtime)
    draft = state["draft"]
    assert draft is not None
    accepted = state["accepted"]
    if draft["status"] == "ok" and _score(draft) >= _baseline(accepted):
        kept = _top_k([*accepted, draft], ctx.config.keep_top)
        improved = _score(kept[0]) > _score(accepted[0])
        return {
            "accepted": kept,
            "draft": None,
            "stale": 0 if improved else state["stale"],
            "log": _emit(
                ctx, _event("accepted", state, id=draft["id"], val_f1=draft["val_f1"], via="review")
            ),
        }
    return {
        "draft": None,
        "log": _emit(
            ctx,
            _event(
                "reverted", state, id=draft["id"], status=draft["status"], val_f1=draft["val_f1"]
            ),
        ),
    }


def advance(state: TrainState, runtime: Runtime[TrainingContext]) -> TrainState:
    """Close the iteration: convergence and iteration budget decide whether to go on."""
    ctx = _ctx(runtime)
    cfg = ctx.config
    iteration = state["iteration"] + 1
    stop: str | None = None
    if state.get("stop_reason"):
        stop = state["stop_reason"]
    elif state["accepted"] and _score(state["accepted"][0]) >= 1.0:
        stop = "converged (validation F1 = 1.0)"
    elif state["stale"] >= cfg.patience:
        stop = f"converged (no improvement in {cfg.patience} iterations)"
    elif iteration >= cfg.max_iterations:
        stop = "iteration budget"
    event = {
        "event": "iteration_end",
        "iteration": state["iteration"],
        "best_val_f1": _score(state["accepted"][0]) if state["accepted"] else None,
    }
    return {
        "iteration": iteration,
        "slot": 0,
        "pool": [],
        "reviews": 0,
        "stop_reason": stop,
        "log": _emit(ctx, event),
    }


def export(state: TrainState, runtime: Runtime[TrainingContext]) -> TrainState:
    """Write the accepted rules as a rule-set artifact (idempotent: keyed by content)."""
    ctx = _ctx(runtime)
    if not state["accepted"]:
        return {
            "exported": None,
            "log": _emit(ctx, {"event": "export", "path": None, "why": "no rule was accepted"}),
        }
    path = ctx.export(state["accepted"], state.get("log", []))
    return {"exported": path, "log": _emit(ctx, {"event": "export", "path": path})}


def _top_k(cands: Sequence[DraftRule], k: int) -> list[DraftRule]:
    seen: dict[str, DraftRule] = {}
    for c in cands:
        seen.setdefault(c["id"], c)
    return sorted(seen.values(), key=lambda c: (-_score(c), c["id"]))[:k]


# --------------------------------------------------------------------------------------------
# Routers (pure functions of the state and the static config)
# --------------------------------------------------------------------------------------------


def route_after_plan(state: TrainState) -> Literal["generate", "advance"]:
    return "advance" if state.get("stop_reason") else "generate"


def route_after_generate(state: TrainState) -> Literal["check", "collect", "advance"]:
    if state.get("stop_reason"):
        return "advance"
    draft = state.get("draft")
    if draft is None:
        raise RuntimeError("generate finished without a draft")
    return "check" if draft["code"] else "collect"


def make_route_after_check(
    max_repairs: int, can_repair: bool
) -> Callable[[TrainState], Literal["fit", "repair", "collect"]]:
    def route_after_check(state: TrainState) -> Literal["fit", "repair", "collect"]:
        draft = state.get("draft")
        if draft is None:
            raise RuntimeError("check finished without a draft")
        if draft["status"] == "ok":
            return "fit"
        repairable = draft["status"] not in ("no_code", "llm_error")
        if can_repair and repairable and draft["repairs"] < max_repairs:
            return "repair"
        return "collect"

    return route_after_check


def route_after_repair(state: TrainState) -> Literal["check", "collect", "advance"]:
    if state.get("stop_reason"):
        return "advance"
    draft = state.get("draft")
    if draft is None:
        raise RuntimeError("repair finished without a draft")
    return "collect" if draft["status"] in ("no_code", "llm_error") else "check"


REPAIRABLE_AFTER_FIT = ("not_stream_exact",)
"""Statuses found after fitting that the repairer can fix (the rule needs a longer LOOKBACK or a
bounded recursion)."""


def make_route_after_validate(
    max_repairs: int, can_repair: bool
) -> Callable[[TrainState], Literal["collect", "judge_review", "repair"]]:
    def route_after_validate(state: TrainState) -> Literal["collect", "judge_review", "repair"]:
        draft = state.get("draft")
        if draft is None:
            raise RuntimeError("validate finished without a draft")
        if draft["origin"] == "reviewer":
            return "judge_review"
        if (
            draft["status"] in REPAIRABLE_AFTER_FIT
            and can_repair
            and draft["repairs"] < max_repairs
        ):
            return "repair"
        return "collect"

    return route_after_validate


def make_route_after_collect(n: int) -> Callable[[TrainState], Literal["plan", "select"]]:
    def route_after_collect(state: TrainState) -> Literal["plan", "select"]:
        return "plan" if state["slot"] < n else "select"

    return route_after_collect


def make_route_after_select(
    max_reviews: int, can_review: bool
) -> Callable[[TrainState], Literal["review", "advance"]]:
    def route_after_select(state: TrainState) -> Literal["review", "advance"]:
        draft = state.get("draft")
        if (
            draft is not None
            and draft["status"] == "regressed"
            and can_review
            and state["reviews"] < max_reviews
        ):
            return "review"
        return "advance"

    return route_after_select


def route_after_review(state: TrainState) -> Literal["check", "advance"]:
    return "check" if state.get("draft") is not None and not state.get("stop_reason") else "advance"


def route_after_advance(state: TrainState) -> Literal["plan", "export"]:
    return "export" if state.get("stop_reason") else "plan"


# --------------------------------------------------------------------------------------------
# Graph
# --------------------------------------------------------------------------------------------


def build_graph(
    config: LoopConfig, *, can_repair: bool, can_review: bool
) -> StateGraph[Any, Any, Any, Any]:
    """The (uncompiled) training graph for a loop configuration and the agents' capabilities."""
    route_check = make_route_after_check(config.max_repairs, can_repair)

    def route_after_check(state: TrainState) -> Literal["fit", "repair", "collect", "judge_review"]:
        nxt = route_check(state)
        draft = state["draft"]
        assert draft is not None
        # A reviewer's revision that cannot run is judged (and reverted), not pooled.
        if nxt == "collect" and draft["origin"] == "reviewer":
            return "judge_review"
        return nxt

    g: StateGraph[Any, Any, Any, Any] = StateGraph(TrainState, context_schema=TrainingContext)
    for name, fn in (
        ("start", start),
        ("plan", plan),
        ("generate", generate),
        ("check", check),
        ("repair", repair),
        ("fit", fit),
        ("validate", validate),
        ("collect", collect),
        ("select", select),
        ("review", review),
        ("judge_review", judge_review),
        ("advance", advance),
        ("export", export),
    ):
        g.add_node(name, fn)
    g.add_edge(START, "start")
    g.add_edge("start", "plan")
    g.add_conditional_edges("plan", route_after_plan)
    g.add_conditional_edges("generate", route_after_generate)
    g.add_conditional_edges("check", route_after_check)
    g.add_conditional_edges("repair", route_after_repair)
    g.add_edge("fit", "validate")
    g.add_conditional_edges("validate", make_route_after_validate(config.max_repairs, can_repair))
    g.add_conditional_edges("collect", make_route_after_collect(config.candidates_per_iteration))
    g.add_conditional_edges("select", make_route_after_select(config.max_reviews, can_review))
    g.add_conditional_edges("review", route_after_review)
    g.add_edge("judge_review", "advance")
    g.add_conditional_edges("advance", route_after_advance)
    g.add_edge("export", END)
    return g
