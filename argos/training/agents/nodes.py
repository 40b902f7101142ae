"""The nodes of the training graph, and the deterministic accept gate.

Each node reads the state (:mod:`argos.training.agents.state`), calls the ports of the run's
:class:`~argos.training.agents.context.TrainingContext` and returns a state update whose ``log``
holds the events it emitted. The graph that wires these nodes, and the routers between them, are
in :mod:`argos.training.agents.graph`.

``select`` and ``judge_review`` are the accept gate, and it compares rule sets, not rules. The
kept set starts as the incumbent (the builtin generator's rule set, see
:class:`~argos.training.agents.context.TrainingContext`); a candidate is kept only when a set with
it (added to the kept rules, replacing one of them, or alone) ranks strictly higher than the
kept set, with at most ``keep_top`` agent-written rules in a set. Sets are ranked as the builtin
search ranks its structures: by the selection score, and on a tie by the train score
(:class:`SetRank`). So the exported set never scores lower on the selection data than the
incumbent, by construction, and on a selection tie it scores higher on train. With a guard
(:attr:`~argos.training.agents.state.LoopConfig.guard`, by default the 7-delay F1 when the
objective is event-PA) a set that ranks higher is still refused when it lowers the guard's F1 on
train or on validation: a rule that catches more events but later in them is not kept.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict
from typing import Any, NamedTuple, cast

from langgraph.runtime import Runtime

from argos.rules.contract import RuleContractError, with_params
from argos.training.agents.context import (
    AgentError,
    GenerationRequest,
    StopRun,
    TrainingContext,
)
from argos.training.agents.state import DraftRule, JsonDict, TrainState

# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def code_id(code: str) -> str:
    """Short content hash naming a candidate."""
    return hashlib.sha256(code.encode()).hexdigest()[:12]


def new_draft(code: str, origin: str, iteration: int = 0, slot: int = 0) -> DraftRule:
    """A candidate not yet checked, named by its code's hash."""
    return DraftRule(
        id=code_id(code),
        code=code,
        params={},
        origin=origin,
        iteration=iteration,
        slot=slot,
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


def _new_candidate(code: str, origin: str, state: TrainState) -> DraftRule:
    return new_draft(code, origin, state.get("iteration", 0), state.get("slot", 0))


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


IMPROVEMENT = 1e-9
"""Scores closer than this are a tie."""


class SetRank(NamedTuple):
    """How the gate ranks a rule set: its selection score, then (on a tie) its train score, as
    the builtin search ranks its structures (:mod:`argos.training.builtin.search`, step 3)."""

    selection: float
    train: float | None
    """The objective's F1 on the train part; None when train holds no labeled event."""
    guard: tuple[float | None, float | None] = (None, None)
    """The guard metric's F1 on train and on validation (None: no guard, or no event)."""

    def beats(self, other: SetRank) -> bool:
        """Strictly higher selection score, or the same and a strictly higher train score."""
        if self.selection > other.selection + IMPROVEMENT:
            return True
        if self.selection < other.selection - IMPROVEMENT:
            return False
        return (self.train or 0.0) > (other.train or 0.0) + IMPROVEMENT

    def lowers_guard(self, floor: SetRank) -> str:
        """Where this set's guard F1 falls below ``floor``'s (the kept set's), in words, e.g.
        ``train 0.992 -> 0.346``; empty when it lowers it nowhere."""
        parts = zip(("train", "validation"), floor.guard, self.guard, strict=True)
        return ", ".join(
            f"{part} {old:.3f} -> {new:.3f}"
            for part, old, new in parts
            if old is not None and new is not None and new < old - IMPROVEMENT
        )

    @property
    def perfect(self) -> bool:
        """Nothing can beat it: 1.0 on the selection data and on train (or train has no
        event)."""
        return self.selection >= 1.0 and (self.train is None or self.train >= 1.0)


NOTHING_KEPT = SetRank(-1.0, None)
"""The rank of an empty kept set: any scored set beats it."""


def _written(members: Sequence[DraftRule]) -> int:
    """How many members were written by an agent (not the builtin incumbent's)."""
    return sum(c["origin"] != "builtin" for c in members)


def _variants(kept: Sequence[DraftRule], cand: DraftRule, keep_top: int) -> list[list[DraftRule]]:
    """The rule sets ``cand`` can join: added to ``kept``, replacing one member, or alone; each
    with at most ``keep_top`` agent-written rules."""
    out = [[*kept, cand]]
    out += [[*kept[:i], *kept[i + 1 :], cand] for i in range(len(kept))]
    out.append([cand])
    seen: set[tuple[str, ...]] = set()
    unique = []
    for v in out:
        ids = tuple(sorted(c["id"] for c in v))
        if ids not in seen and _written(v) <= keep_top:
            seen.add(ids)
            unique.append(v)
    return unique


class BestSet(NamedTuple):
    """What :func:`_best_set` found: the highest-ranked set (None when no set with the
    candidates can be scored or passes the guard) and the candidates a higher-ranked set with
    them was refused for, with why (:meth:`SetRank.lowers_guard`)."""

    found: tuple[list[DraftRule], SetRank] | None
    guarded: dict[str, str]


def _best_set(
    ctx: TrainingContext,
    kept: Sequence[DraftRule],
    cands: Sequence[DraftRule],
    floor: SetRank = NOTHING_KEPT,
) -> BestSet:
    """The highest-ranked rule set any of ``cands`` can join (ties: fewer rules, then the
    candidates' order) that does not lower ``floor``'s guard F1 (``floor``: the kept set's
    rank)."""
    best: tuple[list[DraftRule], SetRank] | None = None
    guarded: dict[str, str] = {}
    for cand in cands:
        for members in _variants(kept, cand, ctx.config.keep_top):
            rank = _set_rank(ctx, members)
            if rank is None:
                continue
            lowered = rank.lowers_guard(floor)
            if lowered:
                if rank.beats(floor):
                    guarded.setdefault(cand["id"], lowered)
                continue
            if (
                best is None
                or rank.beats(best[1])
                or (not best[1].beats(rank) and len(members) < len(best[0]))
            ):
                best = (members, rank)
    return BestSet(best, guarded)


def _kept_rank(ctx: TrainingContext, state: TrainState) -> SetRank:
    """How the gate ranks the kept set (:data:`NOTHING_KEPT` when nothing is kept)."""
    if not state["accepted"]:
        return NOTHING_KEPT
    return _set_rank(ctx, state["accepted"]) or NOTHING_KEPT


def _set_rank(ctx: TrainingContext, members: Sequence[DraftRule]) -> SetRank | None:
    """How the gate ranks the rule set of ``members`` (see :meth:`RuleLab.set_score`); None
    when it cannot be scored."""
    ev = ctx.lab.set_score(members)
    selection = ev.val_f1 if ev.score is None else ev.score
    if selection is None:
        return None
    if ctx.config.guard is None:
        return SetRank(selection, ev.train_f1)
    return SetRank(selection, ev.train_f1, (ev.guard_train, ev.guard_val))


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
    """Initialise counters and keep the incumbent rule set (a resumed run skips this: the
    checkpoint already has them). An incumbent that already scores 1.0 on the selection data
    cannot be beaten: the run stops before any agent call."""
    ctx = _ctx(runtime)
    incumbent = list(ctx.incumbent)
    rank = _set_rank(ctx, incumbent) if incumbent else None
    score = None if rank is None else rank.selection
    log = _emit(ctx, {"event": "start", "n_chunks": ctx.lab.n_chunks()})
    stop = None
    if incumbent:
        ids = [c["id"] for c in incumbent]
        train = None if rank is None else rank.train
        log += _emit(ctx, {"event": "incumbent", "rules": ids, "score": score, "train": train})
        if rank is not None and rank.perfect:
            stop = "the incumbent already scores 1.0 on the selection data and on train"
    return {
        "iteration": 0,
        "slot": 0,
        "pool": [],
        "accepted": incumbent,
        "set_score": score,
        "incumbent_score": score,
        "incumbent_train_score": None if rank is None else rank.train,
        "reviews": 0,
        "stale": 0,
        "draft": None,
        "started_at": time.time(),
        "stop_reason": stop,
        "exported": None,
        "log": log,
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
        state["iteration"],
        state["slot"],
        state["accepted"],
        ctx.config.seed,
        ctx.config.candidates_per_iteration,
    )
    return {"chunk": chunk, "contrast": contrast, "focus": focus}


def generate(state: TrainState, runtime: Runtime[TrainingContext]) -> TrainState:
    """Ask the generator for a new candidate."""
    ctx = _ctx(runtime)
    kept = tuple(state["accepted"])
    request = GenerationRequest(
        chunk=state["chunk"],
        contrast=state.get("contrast"),
        focus=state.get("focus", "initial"),
        current=kept,
        current_score=_kept_rank(ctx, state).selection if kept else None,
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
    draft = _with(draft, **asdict(out))  # the outcome's fields are the draft's
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
    # The evaluation's fields are the draft's; the runtime budget may overrule the status.
    scores = asdict(ev) | {
        "status": status,
        "detail": detail,
        "score": ev.val_f1 if ev.score is None else ev.score,
    }
    draft = _with(draft, **scores)
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
    draft = _draft(state)
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
    """The accept gate: keep the best rule set this iteration's valid candidates can join, when
    it beats the kept set; otherwise the best candidate goes to review."""
    ctx = _ctx(runtime)
    accepted = state["accepted"]
    kept_ids = {c["id"] for c in accepted}
    valid = [
        c
        for c in state["pool"]
        if c["status"] == "ok" and _selection_score(c) is not None and c["id"] not in kept_ids
    ]
    ranked = sorted(valid, key=lambda c: (-_score(c), c["id"]))
    before = _kept_rank(ctx, state)
    if not ranked:
        log = _outcomes(ctx, state, state["pool"], kept=accepted, bar=before, regressed=None)
        event = _event("iteration", state, outcome="no new valid candidate")
        return {"stale": state["stale"] + 1, "log": [*log, *_emit(ctx, event)]}
    found, guarded = _best_set(ctx, accepted, ranked, before)
    if found is not None and found[1].beats(before):
        kept, rank = found
        log = _outcomes(
            ctx, state, state["pool"], kept=kept, bar=rank, regressed=None, guarded=guarded
        )
        new = [c for c in kept if c["id"] not in {a["id"] for a in accepted}]
        event = _event(
            "accepted",
            state,
            id=new[0]["id"] if new else kept[0]["id"],
            val_f1=new[0]["val_f1"] if new else None,
            score=rank.selection,
            train=rank.train,
            scored_on=ctx.lab.set_score(kept).scored_on,
            previous=before.selection if accepted else None,
            previous_train=before.train if accepted else None,
            rules=[c["id"] for c in kept],
        )
        return {
            "accepted": kept,
            "set_score": rank.selection,
            "stale": 0,
            "log": [*log, *_emit(ctx, event)],
        }
    # No set with a candidate beats the kept one: the best goes to review (see `after_select`).
    best = ranked[0]
    regressed = _with(best, status="regressed")
    log = _outcomes(
        ctx, state, state["pool"], kept=accepted, bar=before, regressed=best, guarded=guarded
    )
    event = _event(
        "regressed", state, id=best["id"], val_f1=best["val_f1"], baseline=before.selection
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
    bar: SetRank,
    regressed: DraftRule | None,
    guarded: Mapping[str, str] | None = None,
) -> list[JsonDict]:
    """One ``outcome`` event per candidate of the iteration: what became of it, in words the
    report shows and the next generator prompt quotes (``bar``: the kept set's rank after the
    iteration, :data:`NOTHING_KEPT` when nothing is kept; ``guarded``: candidates a
    higher-ranked set with them was refused for, as it lowered the guard's F1 there)."""
    guard = ctx.config.guard
    guarded = guarded or {}
    train = "" if bar.train is None else f" (train {bar.train:.3f})"
    bar_text = f"{bar.selection:.3f}{train}"
    kept_ids = {c["id"] for c in kept}
    already = {c["id"] for c in state["accepted"]}  # kept before this iteration
    out: list[JsonDict] = []
    for c in pool:
        score, on = _selection_score(c), c.get("scored_on", "validation")
        scores = _scores_text(c)
        if c["status"] != "ok":
            text = f"rejected ({c['status']}): {c['detail'][:200]}".rstrip(": ")
        elif c["id"] in already:
            text = "the same code as a rule already kept"
        elif score is None:
            text = f"not scored: no labeled anomaly in {on} to score it on{scores}; not kept"
        elif regressed is not None and c["id"] == regressed["id"]:
            text = (
                f"not kept: {on} F1 {score:.3f} alone{scores}; no rule set with it beats the "
                f"kept set's {bar_text}"
            )
        elif c["id"] in kept_ids:
            text = f"accepted: {on} F1 {score:.3f} alone{scores}; the kept set now has {bar_text}"
        else:
            best = f" (the kept set has {bar_text})" if bar.selection >= 0 else ""
            text = f"valid, not kept: {on} F1 {score:.3f} alone{best}{scores}"
        if c["id"] in guarded and c["id"] not in kept_ids and guard is not None:
            text += (
                f"; a set with it ranked higher but lowered the {guard.metric_name} F1 "
                f"({guarded[c['id']]}), so it was not kept"
            )
        event = _event(
            "outcome",
            state,
            id=c["id"],
            slot=c["slot"],  # the candidate's own, which the next prompt names it by
            status=c["status"],
            outcome=text,
            score=score,
        )
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
        f"- iteration {int(e.get('iteration', 0)) + 1}, candidate {int(e.get('slot', 0)) + 1}"
        f" ({e.get('id')}): {e.get('outcome')}"
        for e in log
        if e.get("event") == "outcome" and int(e.get("iteration", 0)) < before
    ]
    return lines[-limit:]


def review(state: TrainState, runtime: Runtime[TrainingContext]) -> TrainState:
    """The reviewer sees the comparison, diff and newly wrong windows; it revises or reverts."""
    ctx = _ctx(runtime)
    new = _draft(state)
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
    draft = _draft(state)
    accepted = state["accepted"]
    before = _kept_rank(ctx, state)
    found, guarded = (
        _best_set(ctx, accepted, [draft], before) if draft["status"] == "ok" else (None, {})
    )
    if found is not None and found[1].beats(before):
        kept, rank = found
        event = _event(
            "accepted",
            state,
            id=draft["id"],
            val_f1=draft["val_f1"],
            via="review",
            score=rank.selection,
            train=rank.train,
            previous=before.selection,
            previous_train=before.train,
            rules=[c["id"] for c in kept],
        )
        return {
            "accepted": kept,
            "set_score": rank.selection,
            "draft": None,
            "stale": 0,
            "log": _emit(ctx, event),
        }
    return {
        "draft": None,
        "log": _emit(
            ctx,
            _event(
                "reverted",
                state,
                id=draft["id"],
                status=draft["status"],
                val_f1=draft["val_f1"],
                **({"guard": guarded[draft["id"]]} if draft["id"] in guarded else {}),
            ),
        ),
    }


def advance(state: TrainState, runtime: Runtime[TrainingContext]) -> TrainState:
    """Close the iteration: convergence and iteration budget decide whether to go on."""
    ctx = _ctx(runtime)
    cfg = ctx.config
    iteration = state["iteration"] + 1
    stop: str | None = None
    kept = _kept_rank(ctx, state)
    if state.get("stop_reason"):
        stop = state["stop_reason"]
    elif kept.perfect:
        stop = "converged (F1 = 1.0 on the selection data and on train)"
    elif state["stale"] >= cfg.patience:
        stop = f"converged (no improvement in {cfg.patience} iterations)"
    elif iteration >= cfg.max_iterations:
        stop = "iteration budget"
    event = {
        "event": "iteration_end",
        "iteration": state["iteration"],
        "best_val_f1": kept.selection if state["accepted"] else None,
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
