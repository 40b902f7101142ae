"""The catch prior of the builtin sweep (few long events, the delay objective): the F1 it returns
is the expected F1 of :class:`ShrunkTable`'s formula, computed here by brute force, and no
threshold does better; the delay objective with long events uses it, and it leans a rule fit on
one long event towards recall (more alarms than the exact fit, which hugs that one event)."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import pytest

from argos.metrics import EVENT_PA, Objective
from argos.training.builtin.compose import flags_of
from argos.training.builtin.config import SearchConfig
from argos.training.builtin.search import search
from argos.training.builtin.shapes import FitSeries
from argos.training.builtin.sweep import Part, event_hit, part_of, sweep

DELAY = Objective("delay", 2)


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


def _expected_f1(
    scores: list[np.ndarray],
    parts: list[Part],
    base: list[np.ndarray] | None,
    c: float,
    prior: float,
    window: int,
) -> float:
    """The expected F1 at threshold ``c``, point by point and window by window."""
    f1s = []
    for i, (s, p) in enumerate(zip(scores, parts, strict=True)):
        if p.n_events == 0:
            continue
        flags = s >= c
        if base is not None:
            flags = flags | base[i]
        caught = float(p.weights[event_hit(flags, p)].sum())
        fp = int((flags[p.lo : p.hi] & p.normal).sum())
        stretches = [t for t in range(p.hi - p.lo - window + 1) if p.normal[t : t + window].all()]
        seg = flags[p.lo : p.hi]
        rate = np.mean([seg[t : t + window].any() for t in stretches]) if stretches else 0.0
        n, e = p.n_events, p.weight
        tp = (n * caught + prior * rate * e) / (n + prior)
        f1s.append(2 * tp / (2 * tp + fp + e - tp))
    return float(np.mean(f1s))


@pytest.mark.parametrize("prior", [0.5, 4.0])
@pytest.mark.parametrize("with_base", [False, True])
@pytest.mark.parametrize("seed", range(8))
def test_catch_prior_sweep_is_the_expected_f1_and_optimal(
    prior: float, with_base: bool, seed: int
) -> None:
    scores, labels, los = _case(seed)
    parts = [part_of(lab, lo, len(lab), DELAY) for lab, lo in zip(labels, los, strict=True)]
    rng = np.random.default_rng(100 + seed)
    base = [rng.random(len(s)) < 0.04 for s in scores] if with_base else None
    window = DELAY.delay + 1
    thr, f1, _ = sweep(scores, parts, base, catch_prior=prior, window=window)
    if all(p.n_events == 0 for p in parts):
        assert not math.isfinite(thr)
        return
    values = np.concatenate(scores)
    cands = [*np.unique(values[np.isfinite(values)]).tolist(), math.inf]
    brute = max(_expected_f1(scores, parts, base, c, prior, window) for c in cands)
    assert f1 == pytest.approx(brute, abs=1e-12)
    if math.isfinite(thr):  # the threshold returned gives that F1 (it sits in the gap)
        assert _expected_f1(scores, parts, base, thr, prior, window) == pytest.approx(f1)


def test_a_zero_catch_prior_is_the_exact_f1() -> None:
    for seed in range(8):
        scores, labels, los = _case(seed)
        parts = [part_of(lab, lo, len(lab), DELAY) for lab, lo in zip(labels, los, strict=True)]
        exact = sweep(scores, parts, max_duty=None)[1]
        assert sweep(scores, parts, catch_prior=0.0, window=3)[1] == pytest.approx(exact)


def test_catch_prior_needs_no_cooldown() -> None:
    scores, labels, los = _case(1)
    parts = [part_of(lab, lo, len(lab), DELAY) for lab, lo in zip(labels, los, strict=True)]
    with pytest.raises(ValueError, match="cool-down"):
        sweep(scores, parts, quiet=3, catch_prior=1.0, window=3)


def test_the_delay_objective_with_few_long_events_uses_the_catch_prior() -> None:
    delay = SearchConfig(objective=Objective("delay", 7))
    few, quiet = delay.for_objective(10, long=True, events=3)
    assert few.catch_prior == 16.0 and few.fit_in_sample and quiet == 0
    # many long events (KPI's long-event series): the events say enough; no prior
    many, quiet = delay.for_objective(10, long=True, events=12)
    assert many.catch_prior is None and not many.fit_in_sample and quiet == 0
    assert many.max_duty is None and few.max_duty is None
    short, quiet = delay.for_objective(10, long=False, events=3)
    assert short.catch_prior is None and not short.fit_in_sample and quiet == 7
    pa, quiet = SearchConfig(objective=EVENT_PA).for_objective(10, long=True, events=3)
    assert pa.catch_prior is None and not pa.fit_in_sample and quiet == 10


@dataclass(frozen=True)
class ExactCatch(SearchConfig):
    """The delay objective's long-event regime without the catch prior (fit on the events)."""

    def for_objective(self, quiet: int, *, long: bool, events: int) -> tuple[SearchConfig, int]:
        config, q = super().for_objective(quiet, long=long, events=events)
        return replace(config, catch_prior=None, fit_in_sample=False), q


def test_one_long_event_leans_to_recall_with_the_delay_objective() -> None:
    """One long event whose start a single spike marks: the exact fit flags just that spike and
    little else; the catch prior (the next event's start may look like any other stretch) takes
    a lower threshold that alarms on more of the normal points."""
    rng = np.random.default_rng(3)
    n = 3000
    values = rng.normal(size=n)
    labels = np.zeros(n, dtype=bool)
    labels[1500:1800] = True
    values[1502] = 9.0
    fs = FitSeries("s", values, np.arange(n, dtype=np.int64) * 60, labels, val_start=2400)
    goal = Objective("delay", 7)

    def duty(config: SearchConfig) -> float:
        flags = flags_of([fs], search([fs], config).rules)[0]
        return float(flags[~labels].mean())

    assert duty(SearchConfig(objective=goal)) > 2 * duty(ExactCatch(objective=goal))
