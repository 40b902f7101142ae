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
prompts (:mod:`argos.training.agents.state`). Everything heavy lives in :class:`TrainingContext`
(the LLM port, the rule lab holding the sandbox and the data, the configuration), passed as the
run's LangGraph context (:mod:`argos.training.agents.context`). The nodes are in
:mod:`argos.training.agents.nodes`; this module holds the routers, pure functions of the state, and
:func:`build_graph`, which spells the graph out. With a SQLite checkpointer every node's result is
saved before the next starts; a killed run resumes at the interrupted node, and the LLM responses
it had already paid for come back from the response cache (see
:class:`argos.llm.interface.CachingChatModel`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from langgraph.graph import END, START, StateGraph

from argos.training.agents.context import TrainingContext
from argos.training.agents.nodes import (
    advance,
    check,
    collect,
    export,
    fit,
    generate,
    judge_review,
    plan,
    repair,
    review,
    select,
    start,
    validate,
)
from argos.training.agents.state import DraftRule, LoopConfig, TrainState

# --------------------------------------------------------------------------------------------
# Routers (pure functions of the state and the static config)
# --------------------------------------------------------------------------------------------


def route_after_plan(state: TrainState) -> Literal["generate", "advance"]:
    return "advance" if state.get("stop_reason") else "generate"


def _draft_after(node: str, state: TrainState) -> DraftRule:
    """The draft ``node`` left in the state (every node routed from here leaves one)."""
    draft = state.get("draft")
    if draft is None:
        raise RuntimeError(f"{node} finished without a draft")
    return draft


def route_after_generate(state: TrainState) -> Literal["check", "collect", "advance"]:
    if state.get("stop_reason"):
        return "advance"
    return "check" if _draft_after("generate", state)["code"] else "collect"


def make_route_after_check(
    max_repairs: int, can_repair: bool
) -> Callable[[TrainState], Literal["fit", "repair", "collect", "judge_review"]]:
    def route_after_check(state: TrainState) -> Literal["fit", "repair", "collect", "judge_review"]:
        draft = _draft_after("check", state)
        if draft["status"] == "ok":
            return "fit"
        repairable = draft["status"] not in ("no_code", "llm_error")
        if can_repair and repairable and draft["repairs"] < max_repairs:
            return "repair"
        # A reviewer's revision that cannot run is judged (and reverted), not pooled.
        return "judge_review" if draft["origin"] == "reviewer" else "collect"

    return route_after_check


def route_after_repair(state: TrainState) -> Literal["check", "collect", "advance"]:
    if state.get("stop_reason"):
        return "advance"
    draft = _draft_after("repair", state)
    return "collect" if draft["status"] in ("no_code", "llm_error") else "check"


REPAIRABLE_AFTER_FIT = ("not_stream_exact",)
"""Statuses found after fitting that the repairer can fix (the rule needs a longer LOOKBACK or a
bounded recursion)."""


def make_route_after_validate(
    max_repairs: int, can_repair: bool
) -> Callable[[TrainState], Literal["collect", "judge_review", "repair"]]:
    def route_after_validate(state: TrainState) -> Literal["collect", "judge_review", "repair"]:
        draft = _draft_after("validate", state)
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
    g.add_conditional_edges("check", make_route_after_check(config.max_repairs, can_repair))
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
