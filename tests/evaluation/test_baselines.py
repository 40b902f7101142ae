"""Baselines: causal, vectorised residuals equal to naive definitions, thresholds fit on train."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from argos.data.protocol import fit_inputs, split_series
from argos.data.series import Series, SplitSpec
from argos.evaluation import baselines as B
from argos.methods import get_method, method_names
from argos.metrics import event_pa

NAMES = [cls.name for cls in B.BASELINES]


def _spiky(n: int = 3000, seed: int = 0, period: int = 288) -> Series:
    """Daily-seasonal noisy series (5-minute data) with isolated spikes labeled as anomalies."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    values = 10 + 3 * np.sin(2 * np.pi * t / period) + rng.normal(0, 0.3, n)
    labels = np.zeros(n, dtype=bool)
    for i in range(200, n, 250):
        values[i] += 10.0
        labels[i] = True
    return Series.create("spiky", 1_600_000_000 + 300 * t, values, labels)


def test_all_baselines_are_registered() -> None:
    assert set(NAMES) <= set(method_names("baseline"))
    assert len(NAMES) == 7
    for name in NAMES:
        assert get_method(name).description


def test_best_threshold_maximises_event_pa_f1_on_a_hand_example() -> None:
    score = np.array([0.1, 0.9, 0.2, 0.8, 0.85, 0.3, 0.95, 0.1])
    labels = np.array([0, 1, 0, 0, 1, 0, 0, 0], dtype=bool)
    thr, f1 = B.best_threshold([score], [labels])
    # thresholds in the grid: > 0.85 keeps 1 event + 1 FP (F1 .667) ... > 0.3 catches both
    # events with 2 FPs (0.8, 0.95): F1 = 4 / (4 + 2) = .667; > 0.8 catches both with 1 FP: .8
    pred = score > thr
    assert f1 == pytest.approx(0.8)
    assert pred[1] and pred[4] and pred[6] and not pred[3]


def test_best_threshold_without_train_anomalies_is_the_max() -> None:
    thr, f1 = B.best_threshold([np.array([1.0, 5.0, np.nan, 2.0])], [np.zeros(4, dtype=bool)])
    assert thr == 5.0 and f1 is None


def test_robust_zscore_equals_the_naive_definition() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=300).round(1)  # ties, so the median/MAD definitions matter
    w = 20
    got = B.robust_zscore(x, w)
    assert np.isnan(got[:w]).all()
    for t in range(w, 300):
        past = x[t - w : t]
        med = np.median(past)
        mad = np.median(np.abs(past - med))
        want = (x[t] - med) / max(1.4826 * mad, 1e-9 * (1 + abs(med)))
        assert got[t] == pytest.approx(want, rel=1e-9, abs=1e-9)


def test_rolling_zscore_equals_the_naive_definition() -> None:
    x = np.random.default_rng(2).normal(size=200)
    got = B.rolling_zscore(x, 30)
    for t in range(30, 200):
        past = x[t - 30 : t]
        assert got[t] == pytest.approx((x[t] - past.mean()) / past.std(), rel=1e-7)


def test_seasonal_residual_uses_past_periods_only() -> None:
    x = np.random.default_rng(3).normal(size=500)
    got = B.seasonal_residual(x, period=24, n_periods=4)
    t = 300
    expected = x[t] - np.mean([x[t - 24], x[t - 48], x[t - 72], x[t - 96]])
    resid = np.array(
        [x[i] - np.mean([x[i - 24 * j] for j in range(1, 5)]) for i in range(t - 30, t)]
    )
    assert got[t] == pytest.approx(expected / resid.std(), rel=1e-6)


def _naive_sr_score(window: np.ndarray, m: int = 5, q: int = 3, z: int = 21) -> float:
    """The SR score of the last point of one window, written plainly."""
    before = window[-(m + 2) : -1]
    slopes = [(before[-1] - before[i]) / (m - i) for i in range(m)]
    ext = np.concatenate([window, np.full(m, before[1] + sum(slopes))])
    spec = np.fft.rfft(ext)
    amp = np.abs(spec)
    log_amp = np.log(amp + 1e-9)
    padded = np.pad(log_amp, q // 2, mode="edge")
    avg = np.array([padded[i : i + q].mean() for i in range(len(log_amp))])
    phase = spec / np.maximum(amp, 1e-9)
    sal = np.abs(np.fft.irfft(np.exp(log_amp - avg) * phase, n=len(ext)))
    w = len(window)
    ref = sal[w - 1 - z : w - 1].mean()
    return float((sal[w - 1] - ref) / (ref + 1e-9))


def test_spectral_residual_equals_a_per_window_computation() -> None:
    x = _spiky(400).values
    got = B.spectral_residual(x, window=64)
    assert np.isnan(got[:63]).all() and np.isfinite(got[63:]).all()
    for t in (63, 100, 200, 399):
        assert got[t] == pytest.approx(_naive_sr_score(x[t - 63 : t + 1]), rel=1e-6)
    # the labeled spike at 200 stands out
    assert got[200] > np.nanpercentile(got, 99)


@pytest.mark.parametrize("name", NAMES)
def test_baselines_are_causal(name: str) -> None:
    s = _spiky(2000)
    inputs = fit_inputs([s], SplitSpec())
    det = get_method(name).build(seed=0).fit(inputs.train, inputs.validation)
    full_pred = det.detect(s.without_labels())
    full_score = det.score(s.without_labels())
    for cut in (1500, 1713, 1999):
        prefix = s.slice(0, cut).without_labels()
        np.testing.assert_array_equal(det.detect(prefix), full_pred[:cut])
        np.testing.assert_allclose(det.score(prefix), full_score[:cut], rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("name", NAMES)
def test_baselines_find_obvious_spikes_with_thresholds_from_train(name: str) -> None:
    s = _spiky(3000)
    spec = SplitSpec()
    inputs = fit_inputs([s], spec)
    det = get_method(name).build(seed=0).fit(inputs.train, inputs.validation)
    pred = det.detect(s.without_labels())
    assert pred.dtype == np.bool_ and pred.shape == (3000,)
    test_start = split_series(s, spec).test_start
    assert s.labels is not None
    truth = s.labels[test_start:]
    hits = pred[test_start:][truth]
    false_alarms = int(np.count_nonzero(pred[test_start:] & ~truth))
    minimum = 2 if name == "static-threshold" else 3  # the seasonal swing hides some spikes
    assert hits.sum() >= minimum, f"{name} caught {hits.sum()} of {truth.sum()} spikes"
    assert false_alarms <= 15, f"{name} raised {false_alarms} false alarms"


def test_threshold_does_not_depend_on_the_test_part() -> None:
    s = _spiky(3000)
    other = s.values.copy()
    other[2500:] = 1e6  # wreck the test part
    s2 = Series.create("spiky", s.timestamps, other, s.labels)
    for name in ("robust-zscore", "isolation-forest", "seasonal-residual"):
        fits = []
        for series in (s, s2):
            inputs = fit_inputs([series], SplitSpec())
            fits.append(get_method(name).build(seed=0).fit(inputs.train, inputs.validation).fit)
        assert fits[0] == fits[1], name


def test_isolation_forest_is_deterministic_per_seed() -> None:
    s = _spiky(2000)
    inputs = fit_inputs([s], SplitSpec())
    scores = [
        get_method("isolation-forest")
        .build(seed=seed)
        .fit(inputs.train, inputs.validation)
        .score(s.without_labels())
        for seed in (0, 0, 1)
    ]
    np.testing.assert_array_equal(scores[0], scores[1])
    assert not np.allclose(scores[0], scores[2], equal_nan=True)


def test_candidate_periods_from_the_interval() -> None:
    five_min = 1_600_000_000 + 300 * np.arange(10, dtype=np.int64)
    assert B.candidate_periods(five_min) == [288, 2016]
    daily = 1_600_000_000 + 86_400 * np.arange(10, dtype=np.int64)
    assert B.candidate_periods(daily) == [7]
    index = np.arange(1, 10, dtype=np.int64)
    assert B.candidate_periods(index) == [24, 168]


def test_fit_needs_labels() -> None:
    s = _spiky(500).without_labels()
    with pytest.raises(ValueError, match="no labels"):
        B.RobustZScore().fit([s.slice(0, 300)], [s.slice(300, 350)])


def test_pyod_peer_scores_are_pyods_own() -> None:
    sr = pytest.importorskip("pyod.models.ts_spectral_residual", reason="optional extra 'peers'")
    info = get_method("pyod-spectral-residual")
    assert info.kind == "peer"
    s = _spiky(1500)
    want = sr.SpectralResidual().fit(s.values).decision_scores_
    np.testing.assert_allclose(B.PyodSpectralResidual().residual(s.values, s.timestamps), want)


def test_unknown_pyod_method_hints_at_the_extra() -> None:
    with pytest.raises(KeyError, match=r"argos-rules\[peers\]"):
        get_method("pyod-nonexistent")


@pytest.mark.parametrize("name", NAMES)
def test_series_shorter_than_the_windows_give_no_alarms_not_errors(name: str) -> None:
    s = _spiky(40)
    inputs = fit_inputs([s], SplitSpec())
    det = get_method(name).build(seed=0).fit(inputs.train, inputs.validation)
    pred = det.detect(s.without_labels())
    assert pred.shape == (40,) and pred.dtype == np.bool_
    if name != "static-threshold":  # the only one without a warm-up
        assert not pred.any()


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.floats(-5, 5, allow_nan=False), st.booleans()), min_size=2, max_size=80)
)
def test_best_threshold_f1_is_the_event_pa_f1_of_its_labels(rows: list[tuple[float, bool]]) -> None:
    score = np.array([r[0] for r in rows])
    labels = np.array([r[1] for r in rows], dtype=bool)
    thr, f1 = B.best_threshold([score], [labels])
    if not labels.any():
        assert f1 is None and thr == score.max()
        return
    got = event_pa(labels, score > thr).f1
    assert got is not None and f1 is not None
    assert got == pytest.approx(f1)
    # no candidate of the grid does better
    for q in np.quantile(score, B.QUANTILE_LEVELS):
        assert (event_pa(labels, score > q).f1 or 0.0) <= f1 + 1e-12


def test_window_baselines_share_one_window_parameter() -> None:
    assert B.RollingZScore().window == 60
    assert B.RobustZScore(window=30).window == 30
    assert B.SpectralResidual().window == 64
    s = np.arange(100, dtype=np.float64)
    np.testing.assert_array_equal(
        B.RobustZScore(window=30).residual(s, s.astype(np.int64)), B.robust_zscore(s, 30)
    )
