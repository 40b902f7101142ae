"""The training graph's control flow with a fake rule lab and scripted agents (no sandbox, no LLM).

Candidate code carries its own fate in comments: ``# status: runtime_error`` makes the lab's check
fail, ``# f1: 0.7`` is the validation F1 the lab reports, ``# with: 0.9`` the F1 of a rule set that
holds it and a rule of the builtin incumbent (otherwise a set scores its best member's F1). This
isolates the routing, the accept gate, budgets and checkpoint/resume from everything else.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from langgraph.checkpoint.sqlite import SqliteSaver

from argos.metrics import Objective
from argos.training.agents.context import (
    CheckOutcome,
    Evaluation,
    GenerationRequest,
    StopRun,
    TrainingContext,
)
from argos.training.agents.graph import build_graph
from argos.training.agents.nodes import NOTHING_KEPT, SetRank
from argos.training.agents.state import DraftRule, LoopConfig


def rule(
    f1: float,
    status: str = "ok",
    tag: str = "",
    with_incumbent: float | None = None,
    train: float | None = None,
    guard: tuple[float, float] | None = None,
) -> str:
    head = f"# status: {status}\n# f1: {f1}\n# {tag}\n"
    if with_incumbent is not None:
        head += f"# with: {with_incumbent}\n"
    if train is not None:
        head += f"# train: {train}\n"
    if guard is not None:
        head += f"# guard: {guard[0]} {guard[1]}\n"
    return head + "def detect(values, timestamps, params):\n    pass\n"


def _f1(code: str) -> float:
    m = re.search(r"# f1: ([\d.]+)", code)
    return float(m.group(1)) if m else 0.0


def _train_f1(code: str) -> float:
    """The train F1 a ``# train:`` line gives, else the validation one."""
    m = re.search(r"# train: ([\d.]+)", code)
    return float(m.group(1)) if m else _f1(code)


def _guard(members: Sequence[DraftRule]) -> tuple[float | None, float | None]:
    """The guard F1 (train, validation) of a set: its agent-written member's ``# guard:`` line,
    else the builtin member's; (None, None) when no member has one."""
    for origin in ("generator", "reviewer", "repairer", "builtin"):
        for c in members:
            m = re.search(r"# guard: ([\d.]+) ([\d.]+)", c["code"])
            if c["origin"] == origin and m:
                return float(m.group(1)), float(m.group(2))
    return None, None


class FakeLab:
    def __init__(self, crash_on_fit: int | None = None) -> None:
        self.checked: list[str] = []
        self.fits = 0
        self.crash_on_fit = crash_on_fit

    def n_chunks(self) -> int:
        return 4

    def plan_chunk(
        self, iteration: int, slot: int, accepted: Sequence[DraftRule], seed: int, slots: int = 1
    ) -> tuple[int, int | None, str]:
        return (iteration + slot) % 4, None, "missed" if accepted else "initial"

    def check(self, code: str, chunk: int) -> CheckOutcome:
        self.checked.append(code)
        status = re.search(r"# status: (\w+)", code)
        st = status.group(1) if status else "syntax_error"
        return CheckOutcome(st, detail=f"fake {st}", traceback="Traceback: fake")

    def fit(self, code: str, seed: int) -> dict[str, Any]:
        self.fits += 1
        if self.crash_on_fit is not None and self.fits == self.crash_on_fit:
            raise KeyboardInterrupt("simulated kill")
        return {"k": 3.0}

    def evaluate(self, code: str, params: Mapping[str, Any]) -> Evaluation:
        f1 = _f1(code)
        return Evaluation(
            train_f1=_train_f1(code), val_f1=f1, val_precision=f1, val_recall=f1, runtime_ms=1.0
        )

    def set_score(self, members: Sequence[DraftRule]) -> Evaluation:
        scores = [_f1(c["code"]) for c in members]
        if any(c["origin"] == "builtin" for c in members):
            scores += [
                float(m.group(1))
                for c in members
                if (m := re.search(r"# with: ([\d.]+)", c["code"]))
            ]
        f1 = max(scores, default=0.0)
        train = max((_train_f1(c["code"]) for c in members), default=0.0)
        guard_train, guard_val = _guard(members)
        return Evaluation(
            train_f1=train,
            val_f1=f1,
            val_precision=f1,
            val_recall=f1,
            runtime_ms=1.0,
            guard_train=guard_train,
            guard_val=guard_val,
        )

    def regressions(self, old: DraftRule, new: DraftRule) -> str:
        return f"points {old['id']} got right and {new['id']} gets wrong: 10-20"


class ScriptedAgents:
    """Strict: each agent pops from its own script; leftovers fail the test."""

    def __init__(
        self,
        generate: list[str | Exception | None],
        repair: list[str | None] | None = None,
        review: list[str | None] | None = None,
    ) -> None:
        self.scripts: dict[str, list[Any]] = {
            "generate": list(generate),
            "repair": list(repair or []),
            "review": list(review or []),
        }
        self.review_inputs: list[dict[str, Any]] = []
        self.repair_inputs: list[dict[str, Any]] = []

    def _pop(self, agent: str) -> Any:
        if not self.scripts[agent]:
            raise AssertionError(f"unexpected {agent} call")
        out = self.scripts[agent].pop(0)
        if isinstance(out, Exception):
            raise out
        return out

    def generate(self, request: GenerationRequest) -> str | None:
        return self._pop("generate")  # type: ignore[no-any-return]

    def repair(self, **kw: Any) -> str | None:
        self.repair_inputs.append(kw)
        return self._pop("repair")  # type: ignore[no-any-return]

    def review(self, **kw: Any) -> str | None:
        self.review_inputs.append(kw)
        return self._pop("review")  # type: ignore[no-any-return]

    can_repair = True
    can_review = True
    prefitted = False

    def assert_consumed(self) -> None:
        left = {k: v for k, v in self.scripts.items() if v}
        assert not left, f"unconsumed script: {left}"


def builtin(
    f1: float,
    tag: str = "incumbent",
    train: float | None = None,
    guard: tuple[float, float] | None = None,
) -> DraftRule:
    """A rule of the builtin incumbent, as the LLM generator hands it to the graph."""
    code = rule(f1, tag=tag, train=train, guard=guard)
    return DraftRule(
        id=f"builtin-{tag}",
        code=code,
        params={},
        origin="builtin",
        iteration=0,
        slot=0,
        status="ok",
        detail="",
        traceback="",
        repairs=0,
        train_f1=f1,
        val_f1=f1,
        val_precision=f1,
        val_recall=f1,
        runtime_ms=1.0,
        score=f1,
        name=tag,
    )


def run(
    agents: ScriptedAgents,
    lab: FakeLab,
    config: LoopConfig,
    incumbent: Sequence[DraftRule] = (),
) -> dict[str, Any]:
    exported: list[list[DraftRule]] = []

    def export(accepted: list[DraftRule], log: list[dict[str, Any]]) -> str:
        exported.append(accepted)
        return "rules/x"

    ctx = TrainingContext(agents=agents, lab=lab, config=config, export=export, incumbent=incumbent)
    graph = build_graph(config, can_repair=True, can_review=True).compile()
    out: dict[str, Any] = graph.invoke({}, context=ctx, config={"recursion_limit": 500})
    out["exported_sets"] = exported
    return out


def test_first_try_works_and_top_k_is_kept() -> None:
    agents = ScriptedAgents([rule(0.5, tag="a"), rule(0.8, tag="b"), rule(0.6, tag="c")])
    cfg = LoopConfig(candidates_per_iteration=3, keep_top=1, max_iterations=1)
    out = run(agents, FakeLab(), cfg)
    agents.assert_consumed()
    assert [c["val_f1"] for c in out["accepted"]] == [0.8]
    assert out["stop_reason"] == "iteration budget"
    assert out["exported"] == "rules/x"


def test_runtime_error_is_repaired_and_budget_exhaustion_drops_candidate() -> None:
    agents = ScriptedAgents(
        [rule(0.5, status="runtime_error"), rule(0.9, status="syntax_error")],
        repair=[
            rule(0.7),  # fixes the first candidate
            rule(0.9, status="syntax_error"),
            rule(0.9, status="syntax_error"),
        ],
    )
    cfg = LoopConfig(candidates_per_iteration=2, max_iterations=1, max_repairs=2)
    out = run(agents, FakeLab(), cfg)
    agents.assert_consumed()
    assert out["accepted"][0]["val_f1"] == 0.7
    assert out["accepted"][0]["repairs"] == 1
    # The repairer saw the error, the traceback and the code.
    first = agents.repair_inputs[0]
    assert first["status"] == "runtime_error" and "fake" in first["traceback"]
    dropped = [e for e in out["log"] if e["event"] == "candidate" and e["status"] != "ok"]
    assert len(dropped) == 1 and dropped[0]["repairs"] == 2


def test_regression_goes_to_review_and_revert_keeps_old_rule() -> None:
    agents = ScriptedAgents(
        [rule(0.8, tag="old"), rule(0.6, tag="worse")],
        review=[None],  # revert
    )
    cfg = LoopConfig(candidates_per_iteration=1, max_iterations=2)
    out = run(agents, FakeLab(), cfg)
    agents.assert_consumed()
    assert out["accepted"][0]["val_f1"] == 0.8
    seen = agents.review_inputs[0]
    assert "worse" in seen["new"]["code"] and "old" in seen["old"]["code"]
    assert seen["regressions"].endswith("gets wrong: 10-20")
    assert any(e["event"] == "reverted" for e in out["log"])


def test_review_revision_accepted_only_without_regression() -> None:
    agents = ScriptedAgents(
        [rule(0.8, tag="old"), rule(0.6, tag="worse"), rule(0.5, tag="worse2")],
        review=[rule(0.85, tag="revised"), rule(0.7, tag="still-worse")],
    )
    cfg = LoopConfig(candidates_per_iteration=1, max_iterations=3, patience=5)
    out = run(agents, FakeLab(), cfg)
    agents.assert_consumed()
    assert out["accepted"][0]["val_f1"] == 0.85 and out["accepted"][0]["origin"] == "reviewer"


def test_review_revision_that_cannot_run_is_judged_and_reverted_not_pooled() -> None:
    agents = ScriptedAgents(
        [rule(0.8, tag="old"), rule(0.6, tag="worse")],
        review=[rule(0.9, status="runtime_error", tag="broken revision")],
    )
    cfg = LoopConfig(candidates_per_iteration=1, max_iterations=2, max_repairs=0)
    out = run(agents, FakeLab(), cfg)
    agents.assert_consumed()
    assert out["accepted"][0]["val_f1"] == 0.8 and out["accepted"][0]["origin"] == "generator"
    reverted = [e for e in out["log"] if e["event"] == "reverted"]
    assert [e["status"] for e in reverted] == ["runtime_error"]
    pooled = [e["origin"] for e in out["log"] if e["event"] == "candidate"]
    assert "reviewer" not in pooled


def test_prose_without_code_is_reported() -> None:
    agents = ScriptedAgents([None, rule(0.4)])
    cfg = LoopConfig(candidates_per_iteration=2, max_iterations=1)
    out = run(agents, FakeLab(), cfg)
    statuses = [e["status"] for e in out["log"] if e["event"] == "candidate"]
    assert statuses == ["no_code", "ok"]


def test_budget_stop_exports_what_was_accepted() -> None:
    agents = ScriptedAgents([rule(0.6), StopRun("token budget exhausted")])
    cfg = LoopConfig(candidates_per_iteration=1, max_iterations=5)
    out = run(agents, FakeLab(), cfg)
    assert out["stop_reason"] == "token budget exhausted"
    assert out["accepted"][0]["val_f1"] == 0.6 and out["exported"] == "rules/x"


def test_convergence_stops_early() -> None:
    agents = ScriptedAgents([rule(1.0)])
    out = run(agents, FakeLab(), LoopConfig(candidates_per_iteration=1, max_iterations=10))
    assert out["stop_reason"].startswith("converged")
    agents.assert_consumed()


def test_the_incumbent_is_exported_when_no_candidate_beats_it() -> None:
    agents = ScriptedAgents([rule(0.6, tag="a"), rule(0.7, tag="tie")], review=[None])
    cfg = LoopConfig(candidates_per_iteration=2, max_iterations=1)
    out = run(agents, FakeLab(), cfg, incumbent=[builtin(0.7)])
    agents.assert_consumed()
    assert [c["origin"] for c in out["accepted"]] == ["builtin"]
    assert out["set_score"] == out["incumbent_score"] == 0.7
    # A tie does not replace the incumbent: a candidate must beat it.
    assert agents.review_inputs and agents.review_inputs[0]["old"]["origin"] == "builtin"


def test_a_candidate_that_helps_the_incumbent_is_added_to_it() -> None:
    agents = ScriptedAgents([rule(0.4, tag="adds", with_incumbent=0.9)])
    cfg = LoopConfig(candidates_per_iteration=1, max_iterations=1)
    out = run(agents, FakeLab(), cfg, incumbent=[builtin(0.7)])
    assert [c["origin"] for c in out["accepted"]] == ["builtin", "generator"]
    assert out["set_score"] == 0.9


def test_a_candidate_better_alone_replaces_the_incumbent() -> None:
    agents = ScriptedAgents([rule(0.95, tag="better")])
    cfg = LoopConfig(candidates_per_iteration=1, max_iterations=1)
    out = run(agents, FakeLab(), cfg, incumbent=[builtin(0.7)])
    # Alone or with the incumbent it scores .95: the smaller set wins the tie.
    assert [c["origin"] for c in out["accepted"]] == ["generator"]


def test_an_incumbent_that_scores_1_ends_the_run_before_any_agent_call() -> None:
    agents = ScriptedAgents([])
    out = run(agents, FakeLab(), LoopConfig(max_iterations=3), incumbent=[builtin(1.0)])
    assert out["stop_reason"].startswith("the incumbent already scores 1.0")
    assert [c["origin"] for c in out["accepted"]] == ["builtin"]


def test_a_selection_tie_is_broken_by_the_train_score() -> None:
    """As the builtin search ranks structures: a set that ties the kept one on the selection data
    and scores higher on train is kept; one that ties on both is not."""
    agents = ScriptedAgents([rule(0.7, tag="same", train=0.6), rule(0.7, tag="up", train=0.9)])
    cfg = LoopConfig(candidates_per_iteration=2, max_iterations=1)
    out = run(agents, FakeLab(), cfg, incumbent=[builtin(0.7, train=0.6)])
    agents.assert_consumed()
    assert len(out["accepted"]) == 1 and "# up" in out["accepted"][0]["code"]
    assert out["set_score"] == out["incumbent_score"] == 0.7
    assert out["incumbent_train_score"] == 0.6
    accepted = [e for e in out["log"] if e["event"] == "accepted"]
    assert accepted[0]["train"] == 0.9 and accepted[0]["previous_train"] == 0.6


def test_an_incumbent_perfect_on_selection_but_not_on_train_is_worked_on() -> None:
    """1.0 on the selection data leaves the train score to improve: the run asks the agents."""
    agents = ScriptedAgents([rule(1.0, tag="better on train", train=1.0)])
    cfg = LoopConfig(candidates_per_iteration=1, max_iterations=3)
    out = run(agents, FakeLab(), cfg, incumbent=[builtin(1.0, train=0.8)])
    agents.assert_consumed()
    assert out["accepted"][0]["origin"] == "generator"
    assert out["stop_reason"].startswith("converged")  # now 1.0 on both


DELAY_7 = Objective("delay", 7)


def test_a_set_that_ranks_higher_but_lowers_the_guard_is_not_kept() -> None:
    """Sample C's loss, in small: a rule that catches more events but later in them ranks higher
    on event-PA and lowers the 7-delay F1 on train; with the guard the incumbent stays, and the
    next prompt's feedback says why."""
    later = rule(0.95, tag="later", guard=(0.35, 0.99))
    agents = ScriptedAgents([later], review=[None])
    cfg = LoopConfig(candidates_per_iteration=1, max_iterations=1, guard=DELAY_7)
    out = run(agents, FakeLab(), cfg, incumbent=[builtin(0.7, guard=(0.99, 0.95))])
    agents.assert_consumed()
    assert [c["origin"] for c in out["accepted"]] == ["builtin"]
    (outcome,) = [e["outcome"] for e in out["log"] if e["event"] == "outcome"]
    assert "lowered the 7-delay F1 (train 0.990 -> 0.350)" in outcome, outcome
    # Without the guard the same candidate is kept (samples A, B and C ran so).
    agents = ScriptedAgents([later])
    cfg = LoopConfig(candidates_per_iteration=1, max_iterations=1)
    out = run(agents, FakeLab(), cfg, incumbent=[builtin(0.7, guard=(0.99, 0.95))])
    assert [c["origin"] for c in out["accepted"]] == ["generator"]


def test_a_set_that_keeps_the_guard_level_or_higher_is_kept() -> None:
    agents = ScriptedAgents([rule(0.95, tag="earlier", guard=(0.99, 0.95))])
    cfg = LoopConfig(candidates_per_iteration=1, max_iterations=1, guard=DELAY_7)
    out = run(agents, FakeLab(), cfg, incumbent=[builtin(0.7, guard=(0.99, 0.95))])
    assert [c["origin"] for c in out["accepted"]] == ["generator"]
    assert not any("lowered" in str(e.get("outcome", "")) for e in out["log"])


def test_a_reviewed_revision_that_lowers_the_guard_is_reverted() -> None:
    agents = ScriptedAgents(
        [rule(0.6, tag="worse")], review=[rule(0.9, tag="revised", guard=(0.99, 0.5))]
    )
    cfg = LoopConfig(candidates_per_iteration=1, max_iterations=1, guard=DELAY_7)
    out = run(agents, FakeLab(), cfg, incumbent=[builtin(0.7, guard=(0.99, 0.95))])
    assert [c["origin"] for c in out["accepted"]] == ["builtin"]
    (reverted,) = [e for e in out["log"] if e["event"] == "reverted"]
    assert reverted["guard"] == "validation 0.950 -> 0.500"


@pytest.mark.parametrize("seed", range(8))
def test_with_a_guard_the_kept_set_never_lowers_it(seed: int) -> None:
    """Whatever the candidates score: the exported set ranks at least as the incumbent, and its
    guard F1 is not below the incumbent's on train or on validation."""
    import random

    rnd = random.Random(seed)
    n, iterations = 3, 3
    script: list[str | Exception | None] = [
        rule(
            round(rnd.random(), 3),
            tag=f"c{i}",
            guard=(round(rnd.random(), 3), round(rnd.random(), 3)),
        )
        for i in range(n * iterations)
    ]
    agents = ScriptedAgents(script, review=[None] * iterations)
    cfg = LoopConfig(candidates_per_iteration=n, max_iterations=iterations, patience=9)
    cfg = LoopConfig(**{**cfg.__dict__, "guard": DELAY_7})
    start = (round(rnd.uniform(0.3, 0.9), 3), round(rnd.uniform(0.3, 0.9), 3))
    out = run(agents, FakeLab(), cfg, incumbent=[builtin(0.5, guard=start)])
    kept = FakeLab().set_score(out["accepted"])
    assert out["set_score"] >= 0.5
    assert kept.guard_train is not None and kept.guard_train >= start[0]
    assert kept.guard_val is not None and kept.guard_val >= start[1]


@pytest.mark.parametrize("seed", range(12))
def test_the_kept_set_never_scores_below_the_incumbent(seed: int) -> None:
    """By construction: whatever the candidates score, alone or with the incumbent."""
    import random

    rnd = random.Random(seed)
    n, iterations = 3, 3
    script: list[str | Exception | None] = [
        rule(
            round(rnd.random(), 3),
            tag=f"c{i}",
            with_incumbent=round(rnd.random(), 3) if rnd.random() < 0.5 else None,
        )
        for i in range(n * iterations)
    ]
    agents = ScriptedAgents(script, review=[None] * iterations)
    cfg = LoopConfig(candidates_per_iteration=n, max_iterations=iterations, patience=9)
    start = round(rnd.uniform(0.3, 0.9), 3)
    out = run(agents, FakeLab(), cfg, incumbent=[builtin(start)])
    assert out["incumbent_score"] == start
    assert out["set_score"] >= start
    kept = FakeLab().set_score(out["accepted"])
    assert kept.val_f1 == out["set_score"]
    if out["set_score"] == start:  # a tie on the selection data is kept only for a better train
        assert kept.train_f1 is not None and kept.train_f1 >= start
    assert sum(c["origin"] != "builtin" for c in out["accepted"]) <= cfg.keep_top


def test_killed_run_resumes_from_checkpoint(tmp_path: Path) -> None:
    script = [rule(0.5, tag="a"), rule(0.7, tag="b"), rule(0.9, tag="c")]
    cfg = LoopConfig(candidates_per_iteration=1, max_iterations=3, patience=5)
    graph = build_graph(cfg, can_repair=True, can_review=True)
    config: Any = {"configurable": {"thread_id": "unit-1"}, "recursion_limit": 200}
    exports: list[str] = []

    def export(accepted: list[DraftRule], log: list[dict[str, Any]]) -> str:
        exports.append(accepted[0]["id"])
        return "rules/x"

    with SqliteSaver.from_conn_string(str(tmp_path / "ckpt.sqlite")) as saver:
        lab = FakeLab(crash_on_fit=2)
        agents = ScriptedAgents(list(script))
        ctx = TrainingContext(agents=agents, lab=lab, config=cfg, export=export)
        app = graph.compile(checkpointer=saver)
        with pytest.raises(KeyboardInterrupt):
            app.invoke({}, config, context=ctx, durability="sync")
        # Two generator calls happened; the second candidate's fit was interrupted.
        assert agents.scripts["generate"] == [script[2]]
        lab.crash_on_fit = None
        out = app.invoke(None, config, context=ctx, durability="sync")
    agents.assert_consumed()  # no generator call was repeated
    assert out["accepted"][0]["val_f1"] == 0.9
    assert len(exports) == 1


@pytest.mark.parametrize(
    ("a", "b", "beats"),
    [
        (SetRank(0.8, 0.1), SetRank(0.7, 0.9), True),  # the selection score first
        (SetRank(0.7, 0.9), SetRank(0.8, 0.1), False),
        (SetRank(0.7, 0.9), SetRank(0.7, 0.8), True),  # then train
        (SetRank(0.7, 0.8), SetRank(0.7, 0.8), False),  # a tie is not a win
        (SetRank(0.7 + 1e-12, 0.8), SetRank(0.7, 0.8 + 1e-12), False),  # within IMPROVEMENT
        (SetRank(0.7, 0.5), SetRank(0.7, None), True),  # no train event counts as 0
        (SetRank(0.7, None), SetRank(0.7, 0.0), False),
        (SetRank(0.0, None), NOTHING_KEPT, True),
    ],
)
def test_set_rank_orders_by_selection_then_train(a: SetRank, b: SetRank, beats: bool) -> None:
    assert a.beats(b) is beats


@pytest.mark.parametrize(
    ("new", "floor", "lowered"),
    [
        ((0.9, 0.9), (0.9, 0.9), ""),  # level is allowed
        ((0.3, 0.9), (0.9, 0.9), "train 0.900 -> 0.300"),
        ((0.9, 0.3), (0.9, 0.9), "validation 0.900 -> 0.300"),
        ((0.1, 0.2), (0.9, 0.9), "train 0.900 -> 0.100, validation 0.900 -> 0.200"),
        ((None, 0.2), (0.9, None), ""),  # a part without an event on either side is no limit
        ((0.9 - 1e-12, 0.9), (0.9, 0.9), ""),  # within IMPROVEMENT
        ((0.1, 0.1), (None, None), ""),  # nothing kept, or no guard
    ],
)
def test_lowers_guard_names_the_parts_where_the_guard_falls(
    new: tuple[float | None, float | None], floor: tuple[float | None, float | None], lowered: str
) -> None:
    assert SetRank(0.9, 0.9, new).lowers_guard(SetRank(0.5, 0.5, floor)) == lowered
