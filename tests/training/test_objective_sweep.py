"""The builtin sweep fits and scores every objective exactly: at the threshold it returns, its F1
is ``Objective.score`` (mean over the parts with events) of the alarms that threshold gives, and
no candidate threshold does better (brute force on tiny data), for event-PA, k-delay and point F1,
with and without a cool-down and a base of rules already chosen."""

from __future__ import annotations

import math

import numpy as np
import pytest

from argos.metrics import EVENT_PA, Objective
from argos.training.builtin.sweep import (
    QuietTable,
    alarm,
    event_hit,
    flags_counts,
    in_windows,
    part_of,
    prior_max,
    sweep,
    threshold_counts,
)

OBJECTIVES = [EVENT_PA, Objective("delay", 2), Objective("delay", 0), Objective("point")]


def _case(seed: int) -> tuple[list[np.ndarray], list[np.ndarray], list[int]]:
    """Two or three short series with ties, never-firing points and events of 1-12 points."""
    rng = np.random.default_rng(seed)
    scores, labels, los = [], [], []
    for _ in range(int(rng.integers(2, 4))):
        n = int(rng.integers(30, 90))
        lab = np.zeros(n, dtype=bool)
        for _ in range(int(rng.integers(0, 4))):
            a = int(rng.integers(0, n - 1))
            lab[a : a + int(rng.integers(1, 13))] = True
        s = (rng.normal(size=n) + 1.5 * lab * rng.random(n)).round(1)
        s[rng.random(n) < 0.08] = -np.inf
        scores.append(s)
        labels.append(lab)
        los.append(int(rng.integers(0, n // 3)))
    return scores, labels, los


def _objective_f1(
    goal: Objective, labels: list[np.ndarray], flags: list[np.ndarray], los: list[int]
) -> float | None:
    """Mean over the parts with events of ``goal.score`` of the flags on ``[lo, end)``."""
    f1s = [goal.score(lab[lo:], f[lo:]).f1 for lab, f, lo in zip(labels, flags, los, strict=True)]
    defined = [f for f in f1s if f is not None]
    return float(np.mean(defined)) if defined else None


def _flags(
    scores: list[np.ndarray], thr: float, quiet: int, base: list[np.ndarray] | None
) -> list[np.ndarray]:
    out = [alarm(s, thr, quiet) for s in scores]
    return out if base is None else [f | b for f, b in zip(out, base, strict=True)]


@pytest.mark.parametrize("goal", OBJECTIVES, ids=str)
@pytest.mark.parametrize("quiet", [0, 3])
@pytest.mark.parametrize("with_base", [False, True])
@pytest.mark.parametrize("seed", range(8))
def test_sweep_f1_is_the_objective_score_and_optimal(
    goal: Objective, quiet: int, with_base: bool, seed: int
) -> None:
    scores, labels, los = _case(seed)
    parts = [part_of(lab, lo, len(lab), goal) for lab, lo in zip(labels, los, strict=True)]
    rng = np.random.default_rng(100 + seed)
    base = [rng.random(len(s)) < 0.04 for s in scores] if with_base else None
    thr, f1, _ = sweep(scores, parts, base, quiet=quiet, max_duty=None)
    if all(p.n_events == 0 for p in parts):  # no part has an event: nothing to fit
        assert not math.isfinite(thr)
        return
    # the threshold the F1 was counted at: the returned one without a cool-down; with one, the
    # optimal candidate just above it (the threshold is placed in the gap below it, where the
    # points that can only silence others, not alarm, are not looked at)
    at = thr
    if quiet and math.isfinite(thr):
        cands = QuietTable(scores, parts, base, quiet).candidates()
        at = float(cands[np.searchsorted(cands, thr, side="left")])
    flagged = _flags(scores, at, quiet, base)
    assert f1 == pytest.approx(_objective_f1(goal, labels, flagged, los), abs=1e-12)
    # the same numbers through the fixed-threshold and fixed-flag counts
    assert threshold_counts(scores, parts, at, base, quiet).f1() == pytest.approx(f1, abs=1e-12)
    assert flags_counts(flagged, parts).f1() == pytest.approx(f1, abs=1e-12)
    # optimal among the candidates: every finite score without a cool-down (F1 only changes
    # there); with one, the scores at which a point of a hit window not yet caught by the base
    # can alarm (s > the largest score of the cool-down before it): the sweep's candidates
    pool = list(scores)
    if quiet:
        pool = []
        for i, (s, p) in enumerate(zip(scores, parts, strict=True)):
            seg, m = s[p.lo : p.hi], prior_max(s, quiet)[p.lo : p.hi]
            caught = np.zeros(p.hi - p.lo, dtype=bool)
            if base is not None:
                for a, b, hit in zip(p.starts, p.ends, event_hit(base[i], p), strict=True):
                    caught[a:b] = hit
            pool.append(seg[in_windows(p) & ~caught & (seg > m)])
    values = np.concatenate(pool)
    cands = [*np.unique(values[np.isfinite(values)]).tolist(), math.inf]
    brute = max(
        _objective_f1(goal, labels, _flags(scores, c, quiet, base), los) or 0.0 for c in cands
    )
    assert f1 == pytest.approx(brute, abs=1e-12)


def test_parts_count_events_as_each_objective_does() -> None:
    lab = np.zeros(20, dtype=bool)
    lab[3:13] = True  # one 10-point event
    lab[15] = True
    ev = part_of(lab, 0, 20)
    assert ev.starts.tolist() == [3, 15] and ev.ends.tolist() == [13, 16]
    assert ev.weights.tolist() == [1, 1]
    d = part_of(lab, 0, 20, Objective("delay", 2))
    assert d.ends.tolist() == [6, 16] and d.weights.tolist() == [10, 1]
    p = part_of(lab, 0, 20, Objective("point"))
    assert p.n_events == 11 and p.weight == 11 and (p.ends - p.starts == 1).all()
    # a late alarm catches the event for event-PA but not for 2-delay
    s = np.zeros(20)
    s[10] = 5.0
    assert flags_counts([s >= 1], [ev]).tp.tolist() == [1]
    assert flags_counts([s >= 1], [d]).tp.tolist() == [0]
    assert flags_counts([s >= 1], [p]).tp.tolist() == [1]


def test_the_delay_objective_prefers_the_early_alarm() -> None:
    """Two shapes on one event: one fires late in it with no false alarm, one at its start with
    one false alarm. Event-PA prefers the late one, 7-delay the early one."""
    n = 200
    lab = np.zeros(n, dtype=bool)
    lab[100:140] = True
    late = np.zeros(n)
    late[130] = 3.0
    early = np.zeros(n)
    early[101] = 3.0
    early[50] = 3.0
    for goal, winner in ((EVENT_PA, "late"), (Objective("delay", 7), "early")):
        part = [part_of(lab, 0, n, goal)]
        f1 = {
            name: sweep([s], part, max_duty=None)[1]
            for name, s in (("late", late), ("early", early))
        }
        assert max(f1, key=lambda k: f1[k]) == winner
