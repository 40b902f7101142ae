"""The builtin search: the exact threshold sweep against brute force, period estimation, and the
search end to end on synthetic and real data (thresholds fit on train/validation only)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import pytest

from argos.metrics import event_pa
from argos.rules.grammar import Direction, RuleSpec, Structure
from argos.rules.templates import apply_cooldown, compile_score, directional, load_rule, render
from argos.training.builtin.compose import flags_of
from argos.training.builtin.config import SearchConfig
from argos.training.builtin.search import reachable_rules, search
from argos.training.builtin.shapes import (
    FitSeries,
    Triple,
    data_resolution,
    estimate_period,
    median_center,
    propose_structures,
    weekly_period,
)
from argos.training.builtin.sweep import (
    QuietTable,
    event_hit,
    flags_counts,
    part_of,
    prior_max,
    sweep,
)


def _brute_best(scores: list[np.ndarray], labels: list[np.ndarray], base=None) -> float:
    """Best mean event-PA F1 over every distinct threshold, via argos.metrics."""
    cands = np.unique(np.concatenate([s[np.isfinite(s)] for s in scores]))
    best = 0.0
    for c in cands:
        f1s = []
        for i, (s, lab) in enumerate(zip(scores, labels, strict=True)):
            if not lab.any():
                continue
            pred = s >= c
            if base is not None:
                pred = pred | base[i]
            f1s.append(event_pa(lab, pred).f1 or 0.0)
        best = max(best, float(np.mean(f1s)))
    return best


def _random_case(seed: int, n: int = 300) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    lab = np.zeros(n, dtype=bool)
    for _ in range(rng.integers(1, 6)):
        a = int(rng.integers(0, n - 5))
        lab[a : a + int(rng.integers(1, 6))] = True
    s = rng.normal(0, 1, n) + 2.5 * lab * rng.random(n)
    s[rng.random(n) < 0.05] = -np.inf  # warm-up / never
    return s, lab


@pytest.mark.parametrize("seed", range(12))
def test_sweep_finds_the_brute_force_optimum(seed: int) -> None:
    s, lab = _random_case(seed)
    part = part_of(lab, 0, len(lab))
    thr, f1, _ = sweep([s], [part])
    assert f1 == pytest.approx(_brute_best([s], [lab]), abs=1e-12)
    # the returned (regularised) threshold reproduces the optimum exactly
    assert event_pa(lab, s >= thr).f1 == pytest.approx(f1, abs=1e-12)


@pytest.mark.parametrize("seed", range(6))
def test_sweep_mean_over_series_and_conditional_on_base(seed: int) -> None:
    cases = [_random_case(seed * 10 + k, n=200 + 50 * k) for k in range(3)]
    scores = [c[0] for c in cases]
    labels = [c[1] for c in cases]
    parts = [part_of(lab, 0, len(lab)) for lab in labels]
    _, f1, _ = sweep(scores, parts)
    assert f1 == pytest.approx(_brute_best(scores, labels), abs=1e-12)
    rng = np.random.default_rng(seed)
    base = [rng.random(len(lab)) < 0.01 for lab in labels]
    thr_b, f1_b, _ = sweep(scores, parts, base)
    assert f1_b == pytest.approx(max(_brute_best(scores, labels, base), 0.0), abs=1e-12)
    if math.isfinite(thr_b):
        got = flags_counts([b | (s >= thr_b) for b, s in zip(base, scores, strict=True)], parts)
        assert got.f1() == pytest.approx(f1_b, abs=1e-12)


def test_sweep_on_a_validation_part_uses_only_that_part() -> None:
    s = np.array([0, 9, 0, 0, 5, 0, 0, 1, 0], dtype=float)
    lab = np.array([0, 1, 0, 0, 0, 0, 0, 1, 0], dtype=bool)
    thr, f1, _ = sweep([s], [part_of(lab, 5, 9)])  # only the event at 7 (score 1)
    assert f1 == 1.0 and 0 < thr <= 1.0
    thr_all, f1_all, _ = sweep([s], [part_of(lab, 0, 9)])
    # events at 1 (9) and 7 (1); the 5 at index 4 is a false alarm for any threshold <= 5
    assert f1_all == pytest.approx(2 * 2 / (2 * 2 + 1 + 0))
    assert thr_all == pytest.approx(0.5)  # midway between the event max 1 and the next score 0


def test_sweep_without_events_or_hits() -> None:
    s = np.zeros(10)
    assert sweep([s], [part_of(np.zeros(10, bool), 0, 10)])[:2] == (math.inf, 0.0)
    lab = np.zeros(10, bool)
    lab[3] = True
    thr, f1, _ = sweep([np.full(10, -np.inf)], [part_of(lab, 0, 10)])
    assert thr == math.inf and f1 == 0.0


def test_period_from_timestamps_and_from_autocorrelation() -> None:
    n = 5000
    lab = np.zeros(n, bool)
    ts = 1_500_000_000 + 300 * np.arange(n, dtype=np.int64)
    v = np.sin(np.arange(n))
    assert estimate_period([FitSeries("a", v, ts, lab, 4000)]) == 288
    idx = np.arange(1, 1201, dtype=np.int64)  # Yahoo A1 style: an index, hourly data
    rng = np.random.default_rng(0)
    v2 = np.sin(2 * np.pi * idx / 24) + rng.normal(0, 0.2, len(idx))
    assert estimate_period([FitSeries("b", v2, idx, lab[:1200], 1000)]) == 24
    assert estimate_period([FitSeries("c", rng.normal(size=1200), idx, lab[:1200], 1000)]) is None


def _synthetic(seed: int, n: int = 3000) -> FitSeries:
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    v = 50 + 10 * np.sin(2 * np.pi * t / 144) + rng.normal(0, 1, n)
    lab = np.zeros(n, bool)
    starts = np.arange(300, n - 10, 97)
    for a in rng.choice(starts, size=min(12, len(starts)), replace=False):
        v[a : a + 3] += 15
        lab[a : a + 3] = True
    return FitSeries(f"s{seed}", v, (1_600_000_000 + 600 * t).astype(np.int64), lab, int(n * 0.8))


def test_search_finds_spikes_and_is_deterministic() -> None:
    fs = _synthetic(0)
    r1 = search([fs])
    r2 = search([fs])
    assert [(r.name, r.threshold) for r in r1.rules] == [(r.name, r.threshold) for r in r2.rules]
    assert r1.rules and r1.tried > 200
    assert r1.train_f1 is not None and r1.train_f1 > 0.9
    assert r1.val_f1 is not None and r1.val_f1 > 0.9
    assert len(r1.rules) <= SearchConfig().max_rules
    assert r1.ranking[0].selection >= r1.ranking[-1].selection


def test_search_without_labeled_anomalies_gives_the_unsupervised_band_rule() -> None:
    """No label at all: one rule that fires only when the value leaves the band around its train +
    validation median that it kept there, once per excursion; or none when that is switched off."""
    fs = _synthetic(2)
    empty = FitSeries(fs.id, fs.values, fs.timestamps, np.zeros(len(fs.values), bool), fs.val_start)
    res = search([empty])
    assert res.notes[0].startswith("no labeled anomaly in train/validation: one unsupervised rule")
    [rule] = res.rules
    st = rule.structure
    assert (st.transform, st.scorer, st.direction, st.persistence) == ("value", "band", "both", 1)
    center = st.param_dict["center"]
    assert center == pytest.approx(float(np.median(fs.values)))
    widest = float(np.abs(fs.values - center).max())
    assert widest < rule.threshold <= widest + data_resolution([empty])
    assert rule.cooldown == 10
    detect, params = load_rule(render(rule))
    assert not detect(fs.values, fs.timestamps, params).any()  # never on what it was fit on
    later = np.concatenate(
        (fs.values, [center + widest * 1.5] * 30, [center] * 20, [center - 2 * widest])
    )
    alarms = np.flatnonzero(detect(later, np.arange(len(later), dtype=np.int64), params))
    assert alarms.tolist() == [len(fs.values), len(fs.values) + 50]  # one per excursion, both sides
    off = search([empty], SearchConfig(unlabeled_cooldown=None))
    assert off.rules == [] and off.notes == ["no labeled anomaly in train/validation"]


def test_search_with_events_only_in_validation_fits_on_both() -> None:
    fs = _synthetic(3)
    lab = fs.labels.copy()
    lab[: fs.val_start] = False
    res = search([FitSeries(fs.id, fs.values, fs.timestamps, lab, fs.val_start)])
    assert res.rules and res.val_f1 is not None and res.val_f1 > 0.8


def test_trials_subsample_is_seeded() -> None:
    fs = _synthetic(4)
    a = search([fs], SearchConfig(trials=5, seed=1))
    b = search([fs], SearchConfig(trials=5, seed=1))
    full = search([fs])
    assert a.tried == b.tried < full.tried
    assert [r.name for r in a.rules] == [r.name for r in b.rules]


def test_partition_search_fits_one_rule_set_for_all_series() -> None:
    series = [_synthetic(s) for s in (5, 6, 7)]
    res = search(series)
    assert res.rules and res.train_f1 is not None and res.train_f1 > 0.8
    fn = compile_score(res.rules[0].structure.transform, res.rules[0].structure.scorer)
    st = res.rules[0].structure
    for fs in series:  # the same rule fires on every series
        s = directional(fn(fs.values, fs.timestamps, st.param_dict), st.direction, st.persistence)
        assert (s >= res.rules[0].threshold).any()


def test_structures_are_sized_to_the_data() -> None:
    short = _synthetic(8, n=400)
    names = {(t, s, p) for t, s, p in propose_structures([short])}
    assert all(dict(p).get("window", 0) * 5 <= short.val_start for _, _, p in names)
    long = _synthetic(8, n=20000)
    assert len(propose_structures([long])) > len(names)


def test_seasonal_residuals_use_the_day_and_the_week_from_timestamps() -> None:
    n = 80_000  # one point a minute: a day is 1440 points, a week 10080
    ts = (1_600_000_000 + 60 * np.arange(n)).astype(np.int64)
    fs = FitSeries("m", np.zeros(n), ts, np.zeros(n, bool), 60_000)
    assert weekly_period([fs]) == 10080
    periods = {dict(p)["period"] for t, _, p in propose_structures([fs]) if t == "seasonal"}
    assert periods == {1440, 10080}
    daily_only = propose_structures([fs], weekly=False)
    assert {dict(p)["period"] for t, _, p in daily_only if t == "seasonal"} == {1440}
    # a week must fit the data five times over (with its window), and needs real timestamps
    short = replace(
        fs,
        values=fs.values[:40_000],
        timestamps=ts[:40_000],
        labels=fs.labels[:40_000],
        val_start=30_000,
    )
    assert all(
        dict(p)["period"] != 10080 for t, _, p in propose_structures([short]) if t == "seasonal"
    )
    counter = replace(fs, timestamps=np.arange(n, dtype=np.int64))
    assert weekly_period([counter]) is None


@pytest.mark.slow
def test_yahoo_a1_partition_search_on_real_data(yahoo_dataset) -> None:  # type: ignore[no-untyped-def]
    from argos.data.protocol import fit_inputs
    from argos.training.builtin.method import fit_series

    ids = list(yahoo_dataset.partitions["A1"])[:20]
    group = [yahoo_dataset.get(i) for i in ids]
    fi = fit_inputs(group, yahoo_dataset.split)
    res = search(fit_series(fi.train, fi.validation))
    assert res.rules and res.tried > 100
    # mean over series of the train part: a useful rule set, not a placeholder
    assert res.train_f1 is not None and res.train_f1 > 0.4


def _one_long_event(seed: int, n: int = 3000) -> FitSeries:
    rng = np.random.default_rng(seed)
    v = rng.normal(0, 1, n)
    lab = np.zeros(n, bool)
    lab[1000:1100] = True  # one long labeled window around a burst
    v[1040:1045] += 8
    return FitSeries("long", v, np.arange(n, dtype=np.int64), lab, 2400)


def test_one_long_event_gets_two_simple_rules_of_different_shapes() -> None:
    res = search([_one_long_event(0)])
    assert len(res.rules) == 2
    keys = {r.structure.key for r in res.rules}
    assert len(keys) == 2
    assert all(r.structure.scorer in ("band", "static", "zscore", "robust_z") for r in res.rules)
    single = search([_one_long_event(0)], SearchConfig(few_events_or=1))
    assert len(single.rules) == 1


def test_one_short_event_keeps_a_single_rule() -> None:
    fs = _one_long_event(1)
    lab = np.zeros(len(fs.values), bool)
    lab[1040:1043] = True
    res = search([FitSeries(fs.id, fs.values, fs.timestamps, lab, fs.val_start)])
    assert len(res.rules) == 1


def test_few_long_events_use_the_long_gap_and_short_ones_the_few_events_gap() -> None:
    fs = _one_long_event(0)
    # the std margin keeps the same shape first at both gaps here (the test is about the gap)
    cfg = SearchConfig(few_events_or=1)
    lean = search([fs], replace(cfg, few_events_long_gap=0.97))
    mid = search([fs], replace(cfg, few_events_long_gap=0.5))
    assert lean.rules[0].structure == mid.rules[0].structure
    # further down the same gap: a lower threshold, still catching the labeled window
    assert lean.rules[0].threshold < mid.rules[0].threshold
    assert lean.train_f1 == mid.train_f1
    # the short-event gap does not touch long events
    other = search([fs], replace(cfg, few_events_long_gap=0.97, few_events_gap=0.5))
    assert [r.threshold for r in other.rules] == [r.threshold for r in lean.rules]
    lab = np.zeros(len(fs.values), bool)
    lab[1040:1043] = True
    short = FitSeries(fs.id, fs.values, fs.timestamps, lab, fs.val_start)
    a = search([short], SearchConfig(few_events_long_gap=0.5))
    b = search([short], SearchConfig(few_events_long_gap=0.97))
    assert [r.threshold for r in a.rules] == [r.threshold for r in b.rules]


def test_band_centre_is_fit_on_train_and_refit_on_train_and_validation() -> None:
    """One long window where the level leaves its usual band: the band rule's centre is the train
    median during the search and the train + validation median in the final rule."""
    rng = np.random.default_rng(4)
    n = 3000
    v = 40 + rng.normal(0, 2, n)
    v[2400:] += 3  # validation sits a little higher: the two medians differ
    lab = np.zeros(n, bool)
    lab[1000:1100] = True
    v[1000:1100] += 15
    fs = FitSeries("band", v, np.arange(n, dtype=np.int64), lab, 2400)
    res = search([fs], _LongShapes(few_events_or=1, long_shapes=(("value", "band"),)))
    assert res.rules[0].structure.scorer == "band"
    assert res.rules[0].structure.param_dict["center"] == pytest.approx(float(np.median(v)))
    band = [c for c in res.ranking if c.structure.scorer == "band"]
    assert band[0].structure.param_dict["center"] == pytest.approx(float(np.median(v[:2400])))
    assert res.train_f1 == 1.0
    without = search([fs], SearchConfig(few_events_or=1))  # off by default (validation)
    assert all(r.structure.scorer != "band" for r in without.rules)


def test_sweep_measures_the_margin_from_the_candidate_and_the_next_lower_score() -> None:
    lab = np.zeros(10, bool)
    lab[5] = True
    s = np.array([0.0, 0.0, 1.0, 0.0, 0.0, 10.0, 0.0, 0.0, 8.0, 0.0])
    parts = [part_of(lab, 0, 10)]
    seen: list[tuple[float, float, int]] = []

    def spy(normal: np.ndarray, c: float, below: float) -> float:
        seen.append((c, below, len(normal)))
        return 0.5

    thr, f1, margin = sweep([s], parts, margin=spy)
    assert f1 == 1.0 and 8.0 < thr < 10.0
    assert margin == 0.5 and seen == [(10.0, 8.0, 9)]
    _, _, std_margin = sweep([s], parts)
    assert std_margin == pytest.approx(min(10.0, 2.0 / float(np.delete(s, 5).std())))


@dataclass(frozen=True)
class _LongShapes(SearchConfig):
    """The few-event shapes hook as the protocol scripts use it: units with few LONG events
    search only these (transform, scorer) pairs, ``("value", "band")`` adding the band around
    the train median."""

    long_shapes: tuple[tuple[str, str], ...] = ()

    def few_event_shapes(
        self, triples: list[Triple], series: Sequence[FitSeries], *, long: bool, fit_on_all: bool
    ) -> list[Triple]:
        simple = super().few_event_shapes(triples, series, long=long, fit_on_all=fit_on_all)
        if not long:
            return simple
        band: Triple = ("value", "band", (("center", median_center(series, train_only=True)),))
        return [t for t in [band, *simple] if (t[0], t[1]) in self.long_shapes]


def test_few_long_event_shapes_restrict_long_units_only() -> None:
    fs = _one_long_event(0)
    cfg = _LongShapes(long_shapes=(("value", "band"),))
    res = search([fs], cfg)
    assert res.rules and all(r.structure.key == ("value", "band") for r in res.rules)
    assert all(c.structure.key == ("value", "band") for c in res.ranking)
    static = search([fs], _LongShapes(long_shapes=(("value", "static"),)))
    assert all(c.structure.key == ("value", "static") for c in static.ranking)
    lab = np.zeros(len(fs.values), bool)
    lab[1040:1043] = True
    short = FitSeries(fs.id, fs.values, fs.timestamps, lab, fs.val_start)
    assert search([short], cfg).rules == search([short]).rules  # short events: unchanged


# --------------------------------------------------------------------------------------------------
# Cool-down: every rule alarms once per burst
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(40))
def test_prior_max_is_the_largest_of_the_quiet_points_before(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n, quiet = int(rng.integers(1, 80)), int(rng.integers(1, 40))
    s = rng.normal(size=n)
    s[rng.random(n) < 0.1] = -np.inf
    ref = [max(s[max(0, t - quiet) : t], default=-np.inf) for t in range(n)]
    np.testing.assert_array_equal(prior_max(s, quiet), ref)


@pytest.mark.parametrize("seed", range(30))
def test_cooldown_sweep_counts_are_exact(seed: int) -> None:
    """With a cool-down, the sweep's counts at every distinct threshold equal the cooled-down
    alarms' counts, and its optimum is the brute-force optimum over its candidates (the scores of
    the event points not already hit by the rules chosen before), with and without such rules."""
    rng = np.random.default_rng(seed)
    n, quiet = int(rng.integers(20, 150)), int(rng.integers(1, 12))
    s = rng.normal(size=n).round(1)  # ties on purpose
    s[rng.random(n) < 0.1] = -np.inf
    lab = np.zeros(n, dtype=bool)
    for _ in range(int(rng.integers(1, 4))):
        a = int(rng.integers(0, n - 1))
        lab[a : a + int(rng.integers(1, 15))] = True
    lo = int(rng.integers(0, n // 2))  # a part that starts late: alarms before it still silence
    part = part_of(lab, lo, n)
    base = [rng.random(n) < 0.05] if seed % 2 else None

    def counts_at(c: float) -> tuple[int, int]:
        flags = apply_cooldown(s >= c, quiet)
        if base is not None:
            flags = flags | base[0]
        return int(event_hit(flags, part).sum()), int((flags[lo:] & part.normal).sum())

    def f1_at(c: float) -> float:
        tp, fp = counts_at(c)
        return 2 * tp / (2 * tp + fp + part.n_events - tp)

    values = np.unique(s[np.isfinite(s)])
    table = QuietTable([s], [part], base, quiet)
    tp, fp = table.counts(0, values)
    assert [counts_at(c) for c in values] == list(zip(tp.astype(int), fp.astype(int), strict=True))
    thr, f1, _ = sweep([s], [part], base, quiet=quiet)
    if part.n_events == 0:
        assert not math.isfinite(thr)
        return
    already = event_hit(base[0], part) if base is not None else np.zeros(part.n_events, bool)
    inside = np.concatenate(
        [
            s[lo + a : lo + b]
            for a, b, h in zip(part.starts, part.ends, already, strict=True)
            if not h
        ]
        or [np.empty(0)]
    )
    cands = np.unique(inside[np.isfinite(inside)])
    brute = max([f1_at(c) for c in cands] + [f1_at(math.inf)])
    assert f1 == pytest.approx(brute, abs=1e-12)
    if math.isfinite(thr):
        assert f1_at(thr) == pytest.approx(f1, abs=1e-12)  # the placed threshold keeps it


def _bursty(seed: int, n: int = 4000) -> FitSeries:
    """Spiky noise with labeled 6-point incidents: a z-score fires on several points of each."""
    rng = np.random.default_rng(seed)
    v = rng.normal(0, 1, n)
    lab = np.zeros(n, dtype=bool)
    for a in range(300, n - 10, 400):
        lab[a : a + 6] = True
        v[a : a + 6] += 6
    return FitSeries("bursty", v, np.arange(n, dtype=np.int64), lab, 3200)


def test_rules_alarm_once_per_burst_with_a_cooldown_from_the_event_length() -> None:
    fs = _bursty(0)
    res = search([fs])
    assert res.rules
    assert {r.cooldown for r in res.rules} == {3}  # half the mean event length (6 points)
    # the exported rule computes exactly the search's in-process alarms
    flags = flags_of([fs], res.rules)[0]
    rendered = np.zeros(len(fs.values), dtype=bool)
    for r in res.rules:
        detect, params = load_rule(render(r))
        assert params["cooldown"] == 3
        assert r.lookback() == r.structure.lookback() + 3
        rendered |= detect(fs.values, fs.timestamps, params)
    np.testing.assert_array_equal(rendered, flags)
    # one alarm per incident: no two alarms of a rule within its cool-down
    for r in res.rules:
        detect, params = load_rule(render(r))
        alarms = np.flatnonzero(detect(fs.values, fs.timestamps, params))
        assert (np.diff(alarms) > 3).all()
    off = search([fs], SearchConfig(cooldown=0))
    assert {r.cooldown for r in off.rules} == {0}
    # the bursts cost false alarms without the cool-down, not with it
    assert res.train_f1 is not None and off.train_f1 is not None
    assert res.train_f1 >= off.train_f1


def test_few_long_events_search_both_directions_at_persistence_one() -> None:
    res = search([_one_long_event(0)])
    assert res.ranking
    assert {c.structure.direction for c in res.ranking} == {"both"}
    assert {c.structure.persistence for c in res.ranking} == {1}
    old = SearchConfig(
        few_events_long_directions=("up", "down", "both"), few_events_long_persistences=(1, 2, 3)
    )
    wide = search([_one_long_event(0)], old)
    assert wide.tried == 9 * res.tried  # 3 directions x 3 persistences per shape
    # short events keep every direction and persistence
    fs = _one_long_event(1)
    lab = np.zeros(len(fs.values), bool)
    lab[1040:1043] = True
    short = search([FitSeries(fs.id, fs.values, fs.timestamps, lab, fs.val_start)])
    assert len({c.structure.persistence for c in short.ranking}) > 1


def test_second_long_event_shape_only_when_it_ties_the_best() -> None:
    """OR-ing a second shape buys recall only if it is as good as the first on selection."""
    rng = np.random.default_rng(2)
    n = 3000
    v = rng.normal(0, 1, n)
    v[1500:1800] += np.linspace(0, 4, 300)  # a slow drift: plenty of alarms for the value rules
    lab = np.zeros(n, bool)
    lab[1000:1100] = True
    v[1040] += 9  # one clean spike: the difference rules separate it, the value ones less so
    fs = FitSeries("tie", v, np.arange(n, dtype=np.int64), lab, 2400)
    res = search([fs])
    steps = [round(c.selection / 0.02) for c in res.ranking]
    chosen = {r.structure.key for r in res.rules}
    for c, step in zip(res.ranking, steps, strict=True):
        if c.structure.key in chosen and c.structure.key != res.ranking[0].structure.key:
            assert step == steps[0]
    loose = search([fs], SearchConfig(few_events_or_ties=False))
    assert len(loose.rules) == 2
    assert len(res.rules) <= len(loose.rules)


def test_data_resolution_is_the_smallest_step_of_the_train_values() -> None:
    v = np.array([3.0, 3, 4, 6, 3, 100, 4.5])  # steps .5 .. 94; the validation point is ignored
    fs = FitSeries("c", v, np.arange(7, dtype=np.int64), np.zeros(7, bool), 6)
    assert data_resolution([fs]) == 1.0
    flat = FitSeries("f", np.ones(5), np.arange(5, dtype=np.int64), np.zeros(5, bool), 5)
    assert data_resolution([flat]) == 0.0
    rz = [t for t in propose_structures([_one_long_event(0)]) if t[1] == "robust_z"]
    assert rz and all(dict(t[2])["min_scale"] >= 0 for t in rz)


def test_a_unit_whose_events_no_structure_catches_gets_the_unsupervised_rule(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A burst just before the only labeled event, as high as the event, keeps a static rule in
    its cool-down through the event: instead of exporting nothing, the unit gets the band rule."""
    import argos.training.builtin.search as bg  # the driver calls propose_structures

    monkeypatch.setattr(bg, "propose_structures", lambda series, **_: [("value", "static", ())])
    rng = np.random.default_rng(0)
    values = rng.integers(0, 5, 2000).astype(float)
    values[1196:1204] = 100.0
    labels = np.zeros(2000, bool)
    labels[1200:1204] = True  # cool-down 2: every event point has a 100 among the 2 before
    fs = FitSeries("x", values, np.arange(2000, dtype=np.int64), labels, 1600)
    res = search([fs])
    assert res.notes[0].startswith("no structure caught a labeled event: one unsupervised rule")
    [rule] = res.rules
    assert rule.structure.scorer == "band" and rule.cooldown == 10
    off = search([fs], SearchConfig(unlabeled_cooldown=None))
    assert off.rules == [] and off.notes == ["no structure caught a labeled event"]


def test_z_score_rules_with_a_degenerate_scale_are_not_exported() -> None:
    """A counter that sat on one value for 120 points gives its first change a robust z of
    millions: such a threshold is no reviewable rule, so the search drops it (max_z)."""
    rng = np.random.default_rng(5)
    n = 3000
    values = np.round(rng.normal(100, 3, n))
    values[1000:1400] = 100.0  # stuck, then a small step that is the labeled event
    values[1400:1430] = 101.0
    labels = np.zeros(n, bool)
    labels[1400:1430] = True
    fs = FitSeries("s", values, np.arange(n, dtype=np.int64), labels, 2400)
    loose = search([fs], SearchConfig(max_z=None))
    capped = search([fs])
    big = [r for r in loose.rules if r.structure.scorer in ("zscore", "robust_z")]
    assert big and max(abs(r.threshold) for r in big) > 20  # what the cap is for
    z = ("zscore", "robust_z")
    assert all(abs(r.threshold) <= 20 for r in capped.rules if r.structure.scorer in z)
    assert all(abs(c.threshold) <= 20 for c in capped.ranking if c.structure.scorer in z)
    assert capped.rules  # the unit still gets a rule


def test_a_cooled_down_rule_may_not_hold_on_more_than_max_duty_of_normal_points() -> None:
    """Noise with a labeled window at the very start whose first score is low: a threshold that
    low holds almost everywhere, so with a cool-down its only alarm is that first point, inside
    the window (a "perfect" rule on train). max_duty keeps the condition rare instead."""
    rng = np.random.default_rng(3)
    n = 2000
    s = rng.normal(size=n)
    s[0] = -3.0
    lab = np.zeros(n, dtype=bool)
    lab[:60] = True
    part = part_of(lab, 0, n)
    normal = s[~lab]
    thr, f1, _ = sweep([s], [part], quiet=30)
    assert f1 == 1.0 and np.mean(normal >= thr) > 0.2  # the degenerate rule the cap is for
    thr, f1, _ = sweep([s], [part], quiet=30, max_duty=0.02)
    assert np.mean(normal >= thr) <= 0.02
    assert f1 < 1.0


def test_searched_rules_hold_on_at_most_two_percent_of_normal_points() -> None:
    rng = np.random.default_rng(4)
    n = 3000
    values = rng.normal(100, 5, n)
    labels = np.zeros(n, dtype=bool)
    labels[:80] = True  # only the warm-up window is labeled
    labels[2000:2080] = True
    values[2000:2080] += 6
    fs = FitSeries("d", values, np.arange(n, dtype=np.int64), labels, 2400)
    res = search([fs])
    loose = search([fs], SearchConfig(max_duty=None))
    for result, bound in ((res, 0.02), (loose, None)):
        duties = []
        for r in result.rules:
            score = directional(
                compile_score(r.structure.transform, r.structure.scorer)(
                    fs.values, fs.timestamps, r.structure.param_dict
                ),
                r.structure.direction,
                r.structure.persistence,
            )
            duties.append(float(np.mean(score[~labels] >= r.threshold)))
        assert duties
        if bound is not None:
            assert max(duties) <= bound + 1e-3  # refit on train + validation: same normal points
        else:
            assert max(duties) > 0.02  # without the cap this unit gets a degenerate rule


def _and_unit(seed: int = 0, n: int = 8000) -> FitSeries:
    """Normal climbs to 12 and normal jumps of 8 from the base level; the incidents are a jump of
    5 from a step at 4: high only in combination."""
    rng = np.random.default_rng(seed)
    v = rng.normal(0, 0.3, n)
    lab = np.zeros(n, dtype=bool)
    for a in range(100, n - 200, 400):
        v[a : a + 60] += np.linspace(0, 12, 60)
        v[a + 60 : a + 120] += np.linspace(12, 0, 60)
        v[a + 200 : a + 203] += 8
    for a in range(330, n - 200, 800):
        v[a : a + 20] += 4
        v[a + 20 : a + 23] += 9
        lab[a + 20 : a + 23] = True
    return FitSeries("and", v, np.arange(n, dtype=np.int64), lab, 6000)


def test_and_composition_gates_a_rule_when_it_raises_the_selection() -> None:
    fs = _and_unit()
    res = search([fs])
    off = search([fs], SearchConfig(and_gates=False))
    gated = [r for r in res.rules if r.gate is not None]
    assert gated and all(r.gate is None for r in off.rules)
    assert res.selection >= off.selection + SearchConfig().min_gain
    assert res.train_f1 is not None and off.train_f1 is not None
    assert res.train_f1 > off.train_f1
    # the exported rule computes exactly the search's in-process alarms
    rendered = np.zeros(len(fs.values), dtype=bool)
    for r in res.rules:
        detect, params = load_rule(render(r))
        rendered |= detect(fs.values, fs.timestamps, params)
    np.testing.assert_array_equal(rendered, flags_of([fs], res.rules)[0])
    # few labeled events: no AND (two conditions fit on one or two events overfit)
    one = replace(fs, labels=fs.labels & (np.arange(len(fs.values)) < 400))
    assert all(r.gate is None for r in search([one]).rules)


def _shape(transform: str, scorer: str, direction: Direction, **params: float) -> Structure:
    return Structure(transform, scorer, tuple(params.items()), direction, 1)


def test_the_search_narrows_and_drops_with_a_note_only_for_a_nonnegative_metric() -> None:
    rng = np.random.default_rng(4)
    v = rng.poisson(20, 2000).astype(float)
    ts = np.arange(2000, dtype=np.int64)
    series = [FitSeries("s", v, ts, np.zeros(len(v), bool), 1500)]
    rules = [
        RuleSpec(_shape("value", "relative", "both", window=10), 4.618),
        RuleSpec(_shape("value", "relative", "down", window=10), 4.618),
        RuleSpec(_shape("value", "zscore", "both", window=30), 4.0),
    ]
    kept, notes = reachable_rules(series, rules)
    assert [r.name for r in kept] == ["relative_value_w10_up", "zscore_value_w30_both"]
    assert notes == [
        "narrowed relative_value_w10_both to relative_value_w10_up: the other side cannot reach "
        "its threshold for a metric that never went below zero",
        "dropped relative_value_w10_down: no value of a metric that never went below zero can "
        "reach its threshold",
    ]
    signed = [FitSeries("s", v - 30.0, ts, np.zeros(len(v), bool), 1500)]
    assert reachable_rules(signed, rules) == (rules, [])
