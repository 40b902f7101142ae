"""The baselines fit their threshold for the objective of the run (``argos eval --objective``):
the F1 ``best_threshold`` reports is the pooled ``Objective.score`` of ``score > threshold``, no
candidate of its grid does better, and the catalogue hands the objective to every method that
fits one."""

from __future__ import annotations

import numpy as np
import pytest

from argos.evaluation import baselines as B
from argos.methods import get_method, register_method, unregister_method
from argos.metrics import EVENT_PA, Objective, aggregate_pooled

OBJECTIVES = [EVENT_PA, Objective("delay", 3), Objective("delay", 0), Objective("point")]


def _case(seed: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    scores, labels = [], []
    for _ in range(int(rng.integers(1, 4))):
        n = int(rng.integers(40, 120))
        lab = np.zeros(n, dtype=bool)
        for _ in range(int(rng.integers(0, 4))):
            a = int(rng.integers(0, n - 1))
            lab[a : a + int(rng.integers(1, 15))] = True
        s = (rng.normal(size=n) + 2 * lab * rng.random(n)).round(1)
        s[rng.random(n) < 0.05] = np.nan  # warm-up points never fire
        scores.append(s)
        labels.append(lab)
    return scores, labels


def _pooled_f1(goal: Objective, scores: list[np.ndarray], labels: list[np.ndarray], thr: float):
    preds = [np.nan_to_num(s, nan=-np.inf) > thr for s in scores]
    return aggregate_pooled(goal.score(t, p) for t, p in zip(labels, preds, strict=True)).f1


@pytest.mark.parametrize("goal", OBJECTIVES, ids=str)
@pytest.mark.parametrize("seed", range(10))
def test_best_threshold_is_the_pooled_objective_optimum_of_its_grid(
    goal: Objective, seed: int
) -> None:
    scores, labels = _case(seed)
    thr, f1 = B.best_threshold(scores, labels, goal)
    if not any(lab.any() for lab in labels):
        assert f1 is None
        return
    assert f1 == pytest.approx(_pooled_f1(goal, scores, labels, thr), abs=1e-12)
    finite = np.concatenate([s[np.isfinite(s)] for s in scores])
    grid = np.append(np.quantile(finite, B.QUANTILE_LEVELS), finite.max())
    best = max(_pooled_f1(goal, scores, labels, c) or 0.0 for c in grid)
    assert f1 == pytest.approx(best, abs=1e-12)


def test_the_delay_objective_moves_a_baseline_threshold_to_early_detection() -> None:
    """A long event whose first points rise a little and whose middle peaks: event-PA takes the
    peak alone (no false alarm), 7-delay must catch the start and accepts a false alarm."""
    score = np.zeros(300)
    lab = np.zeros(300, dtype=bool)
    lab[100:160] = True
    score[100:108] = 2.0
    score[130] = 9.0
    score[50] = 2.5  # a normal point above the early rise
    thr_pa, _ = B.best_threshold([score], [lab])
    thr_delay, f1_delay = B.best_threshold([score], [lab], Objective("delay", 7))
    assert 2.5 < thr_pa < 9.0
    assert thr_delay < 2.0 and f1_delay == pytest.approx(2 * 60 / (2 * 60 + 1))


def test_the_catalogue_builds_methods_for_the_objective() -> None:
    goal = Objective("delay", 7)
    assert get_method("ewma").build(seed=0, objective=goal).objective == goal  # type: ignore[attr-defined]
    assert get_method("argos-builtin").build(objective=goal).config.objective == goal  # type: ignore[attr-defined]
    # a registered factory that takes no objective is built as before
    register_method("plain", lambda *, seed=0: B.EwmaResidual(seed=seed), replace=True)
    try:
        assert get_method("plain").build(seed=1, objective=goal).objective == EVENT_PA  # type: ignore[attr-defined]
    finally:
        unregister_method("plain")
