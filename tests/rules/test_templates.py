"""The template grammar: rendered rules obey the contract, compute what the search computes, and
are causal; the helper statistics give the numbers their docstrings promise."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as hst

from argos.data.series import Dataset
from argos.rules.contract import check_rule
from argos.rules.grammar import (
    DIRECTIONS,
    SCORERS,
    TRANSFORMS,
    Direction,
    Gate,
    RuleSpec,
    Structure,
)
from argos.rules.templates import (
    apply_cooldown,
    compile_score,
    directional,
    load_rule,
    render,
    score_source,
)

PARAMS_FOR = {
    "value": (),
    "diff": (),
    "seasonal": (("period", 24), ("cycles", 2)),
    "ewma": (("alpha", 0.2),),
}
SCORER_PARAMS = {
    "static": (),
    "band": (("center", 10.0),),
    "zscore": (("window", 30),),
    "robust_z": (("window", 30), ("min_scale", 0.0)),
    "relative": (("window", 20),),
    "level_shift": (("recent", 3), ("window", 30)),
    "variance_shift": (("recent", 5), ("window", 30)),
    "cusum": (("window", 30), ("drift", 0.5)),
    "flat": (),
    "spectral": (("window", 32),),
}


def _series(n: int = 1500, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    v = 10 + 3 * np.sin(2 * np.pi * t / 24) + rng.normal(0, 0.5, n)
    if n >= 1500:
        v[700] += 12  # spike
        v[1000:1030] = v[999]  # stuck
        v[1200:1260] += 5  # level shift
    return v, (1_600_000_000 + 3600 * t).astype(np.int64)


def _all_structures() -> list[Structure]:
    out = []
    for t in TRANSFORMS:
        for s, sc in SCORERS.items():
            for d in sc.directions:
                out.append(Structure(t, s, PARAMS_FOR[t] + SCORER_PARAMS[s], d, 2))
    return out


@pytest.mark.parametrize("st", _all_structures(), ids=lambda s: s.name)
def test_rendered_rule_passes_gate_and_equals_search_scores(st: Structure) -> None:
    values, ts = _series()
    fn = compile_score(st.transform, st.scorer)
    raw = fn(values, ts, st.param_dict)
    assert raw.shape == values.shape
    s = directional(raw, st.direction, st.persistence)
    finite = s[np.isfinite(s) & (s > -1e300)]
    thr = float(np.quantile(finite, 0.99)) if len(finite) else 1.0
    spec = RuleSpec(st, thr)
    src = render(spec)
    info = check_rule(src)
    assert info.lookback == spec.lookback() >= st.lookback()
    detect, params = load_rule(src)
    labels = detect(values, ts, params)
    assert labels.dtype == np.bool_ and labels.shape == values.shape
    np.testing.assert_array_equal(labels, s >= thr)
    # causal: labels of a prefix equal the prefix of the labels
    for cut in (50, 333, 1111):
        np.testing.assert_array_equal(detect(values[:cut], ts[:cut], params), labels[:cut])


def _streamed(st: Structure, lookback: int, ends: np.ndarray) -> np.ndarray:
    """The directional score at each end, computed from the ``lookback`` points ending there."""
    values, ts = _series()
    fn = compile_score(st.transform, st.scorer)
    return np.asarray(
        [
            directional(
                fn(values[e - lookback + 1 : e + 1], ts[e - lookback + 1 : e + 1], st.param_dict),
                st.direction,
                st.persistence,
            )[-1]
            for e in ends
        ]
    )


@pytest.mark.parametrize("st", _all_structures(), ids=lambda s: s.name)
def test_every_template_labels_a_point_from_its_lookback_alone(st: Structure) -> None:
    """Bounded memory: the score at t computed from the LOOKBACK points ending at t alone is the
    batch score at t, bit for bit (so the online detector's stream labels as the batch does; a
    run length, which grows without bound, gives the same labels); an unbounded recursion (the
    CUSUM over the whole history) fails this."""
    values, ts = _series()
    batch = directional(
        compile_score(st.transform, st.scorer)(values, ts, st.param_dict),
        st.direction,
        st.persistence,
    )
    if st.scorer != "flat":
        lookback = RuleSpec(st, 1.0).lookback()
        ends = np.unique(np.linspace(lookback - 1, len(values) - 1, 25).astype(int))
        ends = np.union1d(ends, [700, 1010, 1029, 1200, 1230, 1259, 1300])
        np.testing.assert_array_equal(_streamed(st, lookback, ends), batch[ends])
        return
    for thr in (2.0, 5.0, 20.0):
        lookback = RuleSpec(st, thr).lookback()
        ends = np.arange(lookback - 1, len(values))
        np.testing.assert_array_equal(_streamed(st, lookback, ends) >= thr, batch[ends] >= thr)


def _classic_cusum(z: np.ndarray, horizon: int) -> np.ndarray:
    """max(0, largest sum of the last 1..horizon values), by brute force."""
    out = np.full(len(z), np.nan)
    for t in range(horizon - 1, len(z)):
        sums = [z[t - m + 1 : t + 1].sum() for m in range(1, horizon + 1)]
        out[t] = max(0.0, max(sums))
    return out


@pytest.mark.parametrize("horizon", [1, 2, 3, 5, 8, 13, 30])
def test_window_cusum_is_the_cusum_restarted_at_most_horizon_points_back(horizon: int) -> None:
    ns: dict[str, Any] = {"np": np}
    exec(compile(score_source("value", "cusum"), "<cusum>", "exec"), ns)
    z = np.random.default_rng(horizon).normal(0.2, 1.0, 300)
    got = ns["window_cusum"](z, horizon)
    np.testing.assert_allclose(got, _classic_cusum(z, horizon), rtol=1e-12, atol=1e-12)
    # the classic recursion from the start of the series, where it restarted within the horizon
    hi, classic = 0.0, []
    for zi in z:
        hi = max(0.0, hi + zi)
        classic.append(hi)
    zero = np.flatnonzero(np.asarray(classic) == 0.0)
    for t in range(horizon, len(z)):
        if zero.size and t - zero[zero <= t].max() < horizon:
            assert got[t] == pytest.approx(classic[t], abs=1e-9)


def test_docstring_states_normal_and_abnormal_with_fitted_numbers() -> None:
    st = Structure("diff", "zscore", (("window", 60),), "down", 3)
    src = render(RuleSpec(st, 4.25, cooldown=10))
    info = check_rule(src)
    text = " ".join(info.docstring.split())
    assert (
        "Normal: The change from the previous point stays within 4.25 standard deviations" in text
    )
    assert "more than 4.25 standard deviations below the mean of the previous 60 points" in text
    assert "for 3 consecutive points" in text
    assert "alarms once per burst: only when the condition was off for the 10 points before" in text
    assert info.params["threshold"] == 4.25 and info.params["window"] == 60
    assert info.lookback == 1 + 61 + 2 + 10
    assert "import numpy as np" in src and "apply_cooldown(alarm, quiet)" in src
    plain = render(RuleSpec(st, 4.25))
    assert "import math" not in plain and "apply_cooldown" not in plain


def test_window_stats_match_numpy() -> None:
    values, ts = _series(400)
    p = {"window": 25}
    z = compile_score("value", "zscore")(values, ts, p)
    assert np.isnan(z[:25]).all()
    for t in (25, 100, 399):
        past = values[t - 25 : t]
        assert z[t] == pytest.approx((values[t] - past.mean()) / past.std(), rel=1e-7)


def test_robust_z_matches_numpy_median_and_mad() -> None:
    values, ts = _series(300)
    r = compile_score("value", "robust_z")(values, ts, {"window": 31, "min_scale": 0.0})
    for t in (31, 150, 299):
        past = values[t - 31 : t]
        med = np.median(past)
        mad = np.median(np.abs(past - med))
        assert r[t] == pytest.approx((values[t] - med) / (1.4826 * mad), rel=1e-9)


def test_downward_static_bound_reads_as_the_value_it_fires_at() -> None:
    """``-x >= threshold`` is ``x <= -threshold``: the docstring says that bound, of either sign."""
    for thr, bound in ((219.0, "-219"), (-1.997, "1.997")):
        st = Structure("value", "static", (), "down", 1)
        text = " ".join(check_rule(render(RuleSpec(st, thr))).docstring.split())
        assert f"at or below {bound}." in text
        assert f"Normal: The value stays above {bound}." in text  # not "within the bound"
        assert "--" not in text
    for direction, normal in (("up", "stays below 219."), ("both", "stays within +/- 219.")):
        st = Structure("value", "static", (), direction, 1)  # type: ignore[arg-type]
        assert normal in " ".join(check_rule(render(RuleSpec(st, 219.0))).docstring.split())


def test_robust_z_divides_by_at_least_the_min_scale() -> None:
    """A count that sat on one value has MAD 0: its robust z is counted in steps of min_scale (the
    data's resolution), not in units of a 1e-9 floor."""
    counts = np.array([5.0] * 40 + [9.0, 5.0, 12.0])
    ts = np.arange(len(counts), dtype=np.int64)
    r = compile_score("value", "robust_z")(counts, ts, {"window": 30, "min_scale": 1.0})
    assert r[40] == pytest.approx(4.0)
    assert r[42] == pytest.approx(7.0)
    tiny = compile_score("value", "robust_z")(counts, ts, {"window": 30, "min_scale": 0.0})
    assert tiny[40] > 1e8  # what the floor alone gives


def test_flat_run_length_and_seasonal_residual() -> None:
    v = np.array([1.0, 1, 2, 2, 2, 3, 3])
    ts = np.arange(7, dtype=np.int64)
    np.testing.assert_array_equal(compile_score("value", "flat")(v, ts, {}), [1, 2, 1, 2, 3, 1, 2])
    x = np.arange(10, dtype=float) ** 2
    s = compile_score("seasonal", "static")(
        x, np.arange(10, dtype=np.int64), {"period": 3, "cycles": 2}
    )
    assert np.isnan(s[:6]).all()
    # x[t] - median(x[t-3], x[t-6]) = t^2 - ((t-3)^2 + (t-6)^2) / 2
    for t in range(6, 10):
        assert s[t] == pytest.approx(t**2 - ((t - 3) ** 2 + (t - 6) ** 2) / 2)


def test_level_shift_and_relative_change_see_the_injected_anomalies() -> None:
    values, ts = _series()
    ls = compile_score("value", "level_shift")(values, ts, {"recent": 3, "window": 30})
    assert np.nanargmax(ls[1100:1300]) + 1100 in range(1200, 1210)
    rel = compile_score("value", "relative")(values, ts, {"window": 20})
    assert np.nanargmax(rel) == 700


def test_spectral_saliency_peaks_at_the_spike() -> None:
    values, ts = _series()
    s = compile_score("value", "spectral")(values, ts, {"window": 32})
    assert np.isnan(s[:31]).all() and np.isfinite(s[31:]).all()
    head = s[:900]  # before the stuck stretch (its end at 1030 is salient too)
    assert int(np.nanargmax(head)) == 700
    others = np.delete(head[31:], [700 - 31, 701 - 31])
    assert s[700] > 1.5 * others.max()


def test_cooldown_alarms_once_per_burst() -> None:
    st = Structure("value", "static", (), "up", 1)
    spec = RuleSpec(st, 5.0, cooldown=3)
    detect, params = load_rule(render(spec))
    # a burst, a gap of 3 quiet points (new alarm), a gap of only 2 (no new alarm)
    v = np.array([0, 9, 9, 0, 0, 0, 9, 9, 0, 0, 9], dtype=float)
    out = detect(v, np.arange(len(v), dtype=np.int64), params)
    assert np.flatnonzero(out).tolist() == [1, 6]
    # the cool-down looks back `cooldown` points beyond the condition's own lookback
    assert spec.lookback() == st.lookback() + 3


def test_persistence_needs_consecutive_points() -> None:
    s = np.array([0, 5, 5, 0, 5, 5, 5, np.nan])
    assert (directional(s, "up", 3) >= 5).tolist() == [False] * 6 + [True, False]
    assert (directional(-s, "down", 2) >= 5).tolist() == [
        False,
        False,
        True,
        False,
        False,
        True,
        True,
        False,
    ]
    assert directional(np.array([math.nan, -2.0]), "both", 1).tolist() == [-math.inf, 2.0]


def test_names_are_readable_identifiers() -> None:
    st = Structure(
        "seasonal", "zscore", (("period", 1440), ("cycles", 3), ("window", 60)), "both", 2
    )
    assert st.name == "zscore_seasonal_p1440_c3_w60_both_k2"
    assert st.name.isidentifier()


@pytest.mark.parametrize(("threshold", "persistence"), [(1.75, 1), (5.0, 1), (6.5, 3)])
def test_stuck_value_rule_lookback_holds_its_run(threshold: float, persistence: int) -> None:
    """The label at t depends only on the last LOOKBACK points, so streaming equals batch."""
    spec = RuleSpec(Structure("value", "flat", (), "up", persistence), threshold)
    source = render(spec)
    lookback = check_rule(source).lookback
    assert lookback >= math.ceil(threshold) + persistence - 1
    detect, params = load_rule(source)
    rng = np.random.default_rng(3)
    values = rng.normal(size=400).round(1)
    for start, length in ((50, 4), (120, 9), (300, 30)):  # stuck stretches of several lengths
        values[start : start + length] = values[start]
    batch = np.asarray(detect(values, np.arange(400), params), dtype=bool)
    assert batch.any()
    for t in range(400):
        a = max(0, t - lookback + 1)
        window = np.asarray(detect(values[a : t + 1], np.arange(a, t + 1), params), dtype=bool)
        assert window[-1] == batch[t], f"label at {t} needs more than LOOKBACK={lookback} points"


def test_band_rule_states_its_centre() -> None:
    st = Structure("value", "band", (("center", 42.125),), "up", 1)
    src = render(RuleSpec(st, 7.5))
    info = check_rule(src)
    text = " ".join(info.docstring.split())
    assert "Normal: The value stays at most 7.5 above 42.125 (the train median)" in text
    assert "more than 7.5 above 42.125 (the train median)" in text
    assert info.params["center"] == 42.125 and st.name == "band_value_up"
    both = render(RuleSpec(Structure("value", "band", (("center", -3.0),), "both", 1), 2.0))
    assert "stays within 2 of -3 (the train median)" in " ".join(check_rule(both).docstring.split())
    detect, params = load_rule(src)
    values = np.array([40.0, 49.0, 50.0, 30.0])
    assert detect(values, np.arange(4, dtype=np.int64), params).tolist() == [
        False,
        False,
        True,
        False,
    ]


@pytest.mark.parametrize("k", [2, 3, 5])
def test_persistence_is_the_minimum_over_the_last_k_points(k: int) -> None:
    rng = np.random.default_rng(k)
    s = rng.normal(size=400)
    s[rng.choice(400, 30, replace=False)] = np.nan  # warm-up gaps stay NaN -> never alarm
    ref = np.full(len(s), np.nan)
    ref[k - 1 :] = np.lib.stride_tricks.sliding_window_view(s, k).min(axis=1)
    np.testing.assert_array_equal(directional(s, "up", k), np.nan_to_num(ref, nan=-np.inf))
    assert (directional(s[: k - 1], "up", k) == -np.inf).all()  # too short for one window


@pytest.mark.parametrize(
    ("main", "gate"),
    [
        (
            Structure("value", "static", (), "up", 2),
            Structure("diff", "zscore", (("window", 30),), "both"),
        ),
        (
            Structure("ewma", "zscore", (("alpha", 0.2), ("window", 30)), "down"),
            Structure(
                "seasonal",
                "robust_z",
                (("period", 24), ("cycles", 2), ("window", 60), ("min_scale", 0.0)),
                "up",
            ),
        ),
        (
            Structure("value", "zscore", (("window", 30),), "up"),
            Structure("value", "flat", (), "up"),
        ),
    ],
    ids=lambda s: s.name,
)
def test_and_composition_renders_both_conditions_at_the_same_point(
    main: Structure, gate: Structure
) -> None:
    """A gated rule fires where both conditions hold (then the cool-down), on separate params
    (``gate_window`` next to ``window``), with a lookback covering both and a docstring that says
    both; it is causal and passes the contract."""
    values, ts = _series()
    s = directional(
        compile_score(main.transform, main.scorer)(values, ts, main.param_dict),
        main.direction,
        main.persistence,
    )
    g = directional(
        compile_score(gate.transform, gate.scorer)(values, ts, gate.param_dict), gate.direction, 1
    )
    thr = float(np.quantile(s[np.isfinite(s)], 0.9))
    g_thr = float(np.quantile(g[np.isfinite(g)], 0.8))
    spec = RuleSpec(main, thr, cooldown=3, gate=Gate(gate, g_thr))
    src = render(spec)
    info = check_rule(src)
    assert info.lookback == spec.lookback() >= max(main.lookback(), gate.lookback()) + 3
    assert info.params["gate_threshold"] == g_thr and info.params["threshold"] == thr
    for k, v in gate.params:
        assert info.params[f"gate_{k}"] == v
    assert spec.name == f"{main.name}_and_{gate.name}"
    text = " ".join(info.docstring.split())
    assert ", and at the same point " in text and "Normal: " in text and ", or " in text
    detect, params = load_rule(src)
    labels = detect(values, ts, params)
    both = (s >= thr) & (g >= g_thr)
    assert both.any()
    np.testing.assert_array_equal(labels, apply_cooldown(both, 3))
    for cut in (50, 333, 1111):
        np.testing.assert_array_equal(detect(values[:cut], ts[:cut], params), labels[:cut])


# --------------------------------------------------------------------------------------------------
# The robust z-score's rolling median/MAD: exactly what np.median gave over each window (the
# O(width) implementation the template had until the sorted-window one, kept here as the reference).
# --------------------------------------------------------------------------------------------------


def reference_past_median_mad(x: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    """The template's former ``past_median_mad``: np.median over every window, O(width) a point."""
    n = len(x)
    med = np.full(n, np.nan)
    mad = np.full(n, np.nan)
    if n <= width:
        return med, mad
    windows = np.lib.stride_tricks.sliding_window_view(x[:-1], width)
    for a in range(0, len(windows), 20000):
        block = windows[a : a + 20000]
        m = np.median(block, axis=1)
        med[width + a : width + a + len(block)] = m
        mad[width + a : width + a + len(block)] = np.median(np.abs(block - m[:, None]), axis=1)
    return med, mad


def reference_robust_z(x: np.ndarray, width: int, min_scale: float) -> np.ndarray:
    """The robust z-score as the template computes it, on the reference median/MAD."""
    median, mad = reference_past_median_mad(x, width)
    spread = np.maximum(1.4826 * mad, min_scale)
    return np.asarray((x - median) / np.maximum(spread, 1e-9 * (1.0 + np.abs(median))))


def template_past_median_mad() -> Any:
    """The ``past_median_mad`` helper exactly as rendered into rules."""
    ns: dict[str, Any] = {"np": np}
    exec(compile(score_source("value", "robust_z"), "<robust_z>", "exec"), ns)
    return ns["past_median_mad"]


_VALUES = hst.sampled_from([0.0, -0.0, 1.0, 1.5, 2.0, -3.0, 1e-300, 7.25e12, 0.1, 0.2, 0.3])


@hst.composite
def _median_case(draw: hst.DrawFn) -> tuple[np.ndarray, int]:
    """A short series over a few values (ties, constant runs, signed zeros), sometimes with NaN or
    infinities, and a width; long enough for the sorted-window path more often than not."""
    width = draw(hst.integers(1, 12))
    n = draw(hst.integers(1, 10 * width + 30))
    kind = draw(hst.sampled_from(["few", "walk", "constant", "nonfinite"]))
    if kind == "walk":
        steps = draw(hst.lists(hst.integers(-2, 2), min_size=n, max_size=n))
        x = np.cumsum(np.asarray(steps, dtype=float)) * 0.1
    elif kind == "constant":
        x = np.full(n, draw(_VALUES))
        for i in draw(hst.lists(hst.integers(0, n - 1), max_size=3)):
            x[i] = draw(_VALUES)
    else:
        x = np.asarray(draw(hst.lists(_VALUES, min_size=n, max_size=n)))
        if kind == "nonfinite":
            for i in draw(hst.lists(hst.integers(0, n - 1), min_size=1, max_size=4)):
                x[i] = draw(hst.sampled_from([np.nan, np.inf, -np.inf]))
    return x, width


@settings(max_examples=400, deadline=None)
@given(_median_case())
def test_rolling_median_mad_equals_numpy_median_of_every_window(
    case: tuple[np.ndarray, int],
) -> None:
    x, width = case
    with np.errstate(all="ignore"):
        want = reference_past_median_mad(x, width)
        got = template_past_median_mad()(x, width)
    for w, g in zip(want, got, strict=True):
        np.testing.assert_array_equal(g, w)  # NaN where NaN; -0.0 == 0.0


@settings(max_examples=150, deadline=None)
@given(
    _median_case(),
    hst.sampled_from([0.0, 1e-6, 0.1, 1.0]),
    hst.sampled_from(DIRECTIONS),
    hst.integers(1, 3),
    hst.floats(0.5, 8.0),
)
def test_robust_z_rule_labels_equal_the_reference_labels(
    case: tuple[np.ndarray, int], min_scale: float, direction: Direction, k: int, thr: float
) -> None:
    """The rendered rule's labels (persistence, direction, the min_scale floor) are those of the
    reference robust z-score, point for point."""
    x, width = case
    ts = np.arange(len(x), dtype=np.int64)
    params_ = (("window", width), ("min_scale", min_scale))
    shape = Structure("value", "robust_z", params_, direction, k)
    detect, params = load_rule(render(RuleSpec(shape, thr)))
    with np.errstate(all="ignore"):
        want = directional(reference_robust_z(x, width, min_scale), direction, k) >= thr
        got = detect(x, ts, params)
        np.testing.assert_array_equal(
            compile_score("value", "robust_z")(x, ts, shape.param_dict),
            reference_robust_z(x, width, min_scale),
        )
    np.testing.assert_array_equal(got, want)


def test_rolling_median_mad_is_exact_on_long_series_of_odd_and_even_widths() -> None:
    """Several lanes of windows (the sorted-window path), both parities, a wide window (ranks
    above 255), a level shift and a stuck stretch."""
    values, _ = _series(3000)
    values = np.round(values, 1)  # ties
    fast = template_past_median_mad()
    for width in (2, 3, 30, 31, 120, 129, 200):
        for x in (values, np.concatenate(([0.0], np.diff(values)))):
            for w, g in zip(reference_past_median_mad(x, width), fast(x, width), strict=True):
                np.testing.assert_array_equal(g, w)


REFERENCE_HELPER = """
def past_median_mad(x, width):
    n = len(x)
    med = np.full(n, np.nan)
    mad = np.full(n, np.nan)
    if n <= width:
        return med, mad
    windows = np.lib.stride_tricks.sliding_window_view(x[:-1], width)
    for a in range(0, len(windows), 20000):
        block = windows[a : a + 20000]
        m = np.median(block, axis=1)
        med[width + a : width + a + len(block)] = m
        mad[width + a : width + a + len(block)] = np.median(np.abs(block - m[:, None]), axis=1)
    return med, mad
"""
"""The template's former median/MAD helper (np.median over every window), as rule source."""


def _with_reference_median(code: str) -> str:
    """A committed rule's source with its median/MAD helpers (the sorted-window ones, or the
    former np.median one) replaced by :data:`REFERENCE_HELPER` (everything else as committed)."""
    helpers = re.compile(
        r"\n(def sorted_windows\(.*?\n        yield [^\n]*\n\n\n)?def past_median_mad\(.*?"
        r"\n    return med, mad\n",
        re.S,
    )
    assert helpers.search(code), "no median/MAD helper in the rule"
    return helpers.sub(lambda _: REFERENCE_HELPER, code)


def test_committed_kpi_robust_z_rules_label_real_series_as_np_median_does(
    kpi_dataset: Dataset,
) -> None:
    """Every committed KPI rule with a robust z-score, run on its own real series as committed and
    with the np.median helper in place of its median/MAD helpers: the same labels."""
    root = Path(__file__).resolve().parents[2] / "rules" / "kpi"
    series = {s.id: s for s in kpi_dataset.series}
    checked = 0
    for path in sorted(root.glob("*/*.py")):
        code = path.read_text()
        if "def past_median_mad(" not in code or path.parent.name not in series:
            continue
        s = series[path.parent.name]
        detect, params = load_rule(code)
        reference, _ = load_rule(_with_reference_median(code))
        np.testing.assert_array_equal(
            detect(s.values, s.timestamps, params), reference(s.values, s.timestamps, params)
        )
        checked += 1
    assert checked >= 6


def test_the_reference_substitution_replaces_the_sorted_window_helpers() -> None:
    spec = RuleSpec(Structure("value", "robust_z", (("window", 30), ("min_scale", 0.1)), "up"), 4)
    code = _with_reference_median(render(spec))
    assert "sorted_windows" not in code and "np.median(block, axis=1)" in code
    values, ts = _series()
    detect, params = load_rule(code)
    np.testing.assert_array_equal(
        detect(values, ts, params), load_rule(render(spec))[0](values, ts, params)
    )
