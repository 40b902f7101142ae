"""Metrics: the worked vectors of docs/evaluation.md (exact to 4 places) and invariants."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from argos.metrics import (
    EVENT_PA,
    Objective,
    Scores,
    adjust_predictions,
    aggregate_mean,
    aggregate_pooled,
    auc_pr,
    delay_adjusted,
    event_pa,
    events,
    point_adjusted,
    point_wise,
    resolve_guard,
    score_all,
    vus_pr,
)

VECTOR_A = ([0, 1, 1, 0, 1, 1, 1, 1, 0, 0], [1, 1, 0, 0, 0, 0, 0, 1, 1, 1])
VECTOR_B = (
    [0, 0, 1, 1, 1, 1, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1],
    [0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1],
)


def prf(s: Scores) -> tuple[float | None, float | None, float | None]:
    def r(x: float | None) -> float | None:
        return None if x is None else round(x, 4)

    return r(s.precision), r(s.recall), r(s.f1)


@pytest.mark.parametrize(
    ("vector", "metric", "expected"),
    [
        (VECTOR_A, lambda t, p: point_wise(t, p), (0.4, 0.3333, 0.3636)),
        (VECTOR_A, lambda t, p: point_adjusted(t, p), (0.6667, 1.0, 0.8)),
        (VECTOR_A, lambda t, p: event_pa(t, p), (0.4, 1.0, 0.5714)),
        (VECTOR_A, lambda t, p: delay_adjusted(t, p, 7), (0.6667, 1.0, 0.8)),
        (VECTOR_A, lambda t, p: delay_adjusted(t, p, 2), (0.4, 0.3333, 0.3636)),
        (VECTOR_B, lambda t, p: point_wise(t, p), (0.75, 0.2143, 0.3333)),
        (VECTOR_B, lambda t, p: point_adjusted(t, p), (0.9333, 1.0, 0.9655)),
        (VECTOR_B, lambda t, p: event_pa(t, p), (0.6667, 1.0, 0.8)),
        (VECTOR_B, lambda t, p: delay_adjusted(t, p, 3), (0.8, 0.2857, 0.4211)),
        (VECTOR_B, lambda t, p: delay_adjusted(t, p, 7), (0.8, 0.2857, 0.4211)),
        (VECTOR_B, lambda t, p: delay_adjusted(t, p, 8), (0.9333, 1.0, 0.9655)),
    ],
)
def test_worked_vectors(vector, metric, expected) -> None:  # type: ignore[no-untyped-def]
    truth, pred = vector
    assert prf(metric(np.array(truth), np.array(pred))) == expected


def test_counts_behind_vector_a() -> None:
    s = score_all(*VECTOR_A)
    assert (s["event_pa"].tp, s["event_pa"].fp, s["event_pa"].fn) == (2, 3, 0)
    assert (s["point"].tp, s["point"].fp, s["point"].fn) == (2, 3, 4)
    assert (s["point_adjusted"].tp, s["point_adjusted"].fp, s["point_adjusted"].fn) == (6, 3, 0)


def test_events_touching_both_ends() -> None:
    truth = np.array([1, 1, 0, 0, 1, 1], dtype=bool)
    starts, ends = events(truth)
    assert starts.tolist() == [0, 4] and ends.tolist() == [2, 6]
    pred = np.array([0, 1, 0, 0, 0, 1], dtype=bool)
    assert prf(event_pa(truth, pred)) == (1.0, 1.0, 1.0)
    assert adjust_predictions(truth, pred).tolist() == [True, True, False, False, True, True]
    # 0-delay: only the first point of each event counts.
    assert prf(delay_adjusted(truth, pred, 0)) == (0.0, 0.0, 0.0)


def test_no_true_events_f1_undefined() -> None:
    truth = np.zeros(10, dtype=bool)
    pred = np.zeros(10, dtype=bool)
    pred[3] = True
    s = event_pa(truth, pred)
    assert s.precision == 0.0 and s.recall is None and s.f1 is None
    s = point_wise(truth, np.zeros(10, dtype=bool))
    assert (s.precision, s.recall, s.f1) == (None, None, None)


def test_no_predictions_scores_zero() -> None:
    truth = np.array([0, 1, 1, 0], dtype=bool)
    for metric in (point_wise, point_adjusted, event_pa):
        s = metric(truth, np.zeros(4, dtype=bool))
        assert (s.precision, s.recall, s.f1) == (0.0, 0.0, 0.0)


def test_all_points_anomalous() -> None:
    truth = np.ones(5, dtype=bool)
    pred = np.array([0, 0, 0, 0, 1], dtype=bool)
    assert prf(point_adjusted(truth, pred)) == (1.0, 1.0, 1.0)
    assert prf(event_pa(truth, pred)) == (1.0, 1.0, 1.0)
    assert prf(delay_adjusted(truth, pred, 3)) == (0.0, 0.0, 0.0)


def test_bad_input_is_rejected() -> None:
    with pytest.raises(ValueError, match="differ in length"):
        point_wise([0, 1], [0, 1, 1])
    with pytest.raises(ValueError, match="0/1"):
        point_wise([0, 2], [0, 1])


def test_aggregation() -> None:
    a = event_pa(*VECTOR_A)  # P .4 R 1 F1 .5714
    b = event_pa(*VECTOR_B)  # P .6667 R 1 F1 .8
    none = event_pa(np.zeros(4, dtype=bool), np.zeros(4, dtype=bool))
    mean = aggregate_mean([a, b, none])
    assert mean.n_f1 == 2 and mean.f1 is not None
    assert round(mean.f1, 4) == round((4 / 7 + 0.8) / 2, 4)
    pooled = aggregate_pooled([a, b, none])
    assert (pooled.tp, pooled.fp, pooled.fn) == (4, 4, 0)
    # Pooled equals scoring the concatenation of the series.
    t = np.concatenate([VECTOR_A[0], VECTOR_B[0]])
    p = np.concatenate([VECTOR_A[1], VECTOR_B[1]])
    assert event_pa(t, p) == pooled


def test_auc_pr_and_vus() -> None:
    truth = np.array([0, 0, 1, 1, 0, 0, 0, 0], dtype=bool)
    perfect = np.array([0, 0, 5, 4, 0, 1, 0, 0], dtype=float)
    assert auc_pr(truth, perfect) == pytest.approx(1.0)
    inverted = -perfect
    auc_inv = auc_pr(truth, inverted)
    assert auc_inv is not None and auc_inv < 0.5
    assert auc_pr(np.zeros(4, dtype=bool), np.arange(4.0)) is None
    v_perfect = vus_pr(truth, perfect, max_buffer=4, steps=3)
    v_inv = vus_pr(truth, inverted, max_buffer=4, steps=3)
    assert v_perfect is not None and v_inv is not None and v_perfect > v_inv
    # A score that peaks just before the event earns more VUS than AUC credit.
    near = np.array([0, 3, 0, 0, 0, 0, 0, 0], dtype=float)
    v_near = vus_pr(truth, near, max_buffer=6, steps=4)
    a_near = auc_pr(truth, near)
    assert v_near is not None and a_near is not None and v_near > a_near


labels = st.lists(st.booleans(), min_size=1, max_size=60)


@st.composite
def truth_pred(draw):  # type: ignore[no-untyped-def]
    t = draw(labels)
    p = draw(st.lists(st.booleans(), min_size=len(t), max_size=len(t)))
    return np.array(t, dtype=bool), np.array(p, dtype=bool)


@settings(max_examples=300, deadline=None)
@given(truth_pred())
def test_adjusted_recall_dominates_point_recall(tp_pair) -> None:  # type: ignore[no-untyped-def]
    t, p = tp_pair
    pw, pa = point_wise(t, p), point_adjusted(t, p)
    if pw.recall is not None:
        assert pa.recall is not None and pa.recall >= pw.recall
    # A k-delay adjustment never beats the unconstrained one, and grows with k.
    d1, d5 = delay_adjusted(t, p, 1), delay_adjusted(t, p, 5)
    if pa.recall is not None:
        assert d1.recall is not None and d5.recall is not None
        assert d1.recall <= d5.recall <= pa.recall
    # With k >= the longest event, k-delay equals plain point adjustment.
    assert delay_adjusted(t, p, len(t)) == pa


@settings(max_examples=300, deadline=None)
@given(truth_pred(), st.data())
def test_event_pa_ignores_where_the_hit_lands(tp_pair, data) -> None:  # type: ignore[no-untyped-def]
    t, p = tp_pair
    starts, ends = events(t)
    base = event_pa(t, p)
    moved = p.copy()
    for a, b in zip(starts, ends, strict=True):
        if moved[a:b].any():
            moved[a:b] = False
            moved[data.draw(st.integers(int(a), int(b) - 1))] = True
    assert event_pa(t, moved) == base


@settings(max_examples=200, deadline=None)
@given(truth_pred())
def test_scores_are_bounded_and_counts_consistent(tp_pair) -> None:  # type: ignore[no-untyped-def]
    t, p = tp_pair
    for s in score_all(t, p).values():
        for v in (s.precision, s.recall, s.f1):
            assert v is None or 0.0 <= v <= 1.0
    pw = point_wise(t, p)
    assert pw.tp + pw.fn == int(t.sum()) and pw.tp + pw.fp == int(p.sum())
    ev = event_pa(t, p)
    assert ev.tp + ev.fn == len(events(t)[0])


# --- Objective: what a generator optimises -------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "kind", "delay", "shown"),
    [
        ("event-pa", "event-pa", 7, "event-pa"),
        ("point", "point", 7, "point"),
        ("delay", "delay", 7, "delay:7"),
        ("delay:3", "delay", 3, "delay:3"),
        (" Delay:0 ", "delay", 0, "delay:0"),
    ],
)
def test_objective_parses_and_prints_back(text: str, kind: str, delay: int, shown: str) -> None:
    obj = Objective.parse(text)
    assert (obj.kind, obj.delay, str(obj)) == (kind, delay, shown)
    assert Objective.parse(str(obj)) == obj


@pytest.mark.parametrize("text", ["f1", "delay:x", "delay:-1", "point:3", "event-pa:2", ""])
def test_objective_refuses_what_it_does_not_know(text: str) -> None:
    with pytest.raises(ValueError, match="objective"):
        Objective.parse(text)


@pytest.mark.parametrize(
    ("text", "objective", "guard"),
    [
        ("auto", "event-pa", "delay:7"),  # catching events, and early
        ("auto", "delay:3", "event-pa"),  # early, and not fewer of them
        ("auto", "point", None),
        ("none", "event-pa", None),
        (" None ", "delay:7", None),
        ("delay:2", "event-pa", "delay:2"),
        ("point", "event-pa", "point"),
    ],
)
def test_the_guard_resolves_against_the_objective(
    text: str, objective: str, guard: str | None
) -> None:
    found = resolve_guard(text, Objective.parse(objective))
    assert (None if found is None else str(found)) == guard


@pytest.mark.parametrize("text", ["", "always", "delay:x"])
def test_the_guard_refuses_what_it_does_not_know(text: str) -> None:
    with pytest.raises(ValueError, match="objective"):
        resolve_guard(text, EVENT_PA)


def test_objective_scores_with_its_metric() -> None:
    truth = np.array([0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0], dtype=bool)
    late = np.zeros(12, dtype=bool)
    late[9] = True  # inside the event, 8 points after its start
    assert Objective.parse("event-pa").score(truth, late).f1 == 1.0
    assert Objective.parse("delay:7").score(truth, late).f1 == 0.0
    assert Objective.parse("delay:8").score(truth, late).f1 == 1.0
    assert Objective.parse("point").score(truth, late) == point_wise(truth, late)
    assert Objective.parse("event-pa") == EVENT_PA
