"""Parameter fitting through the sandbox: candidates, search on synthetic and real data."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from argos.sandbox.pool import Sandbox, SandboxLimits
from argos.training.fitting import candidate_params, fit_params, score_predictions

ROOT = Path(__file__).resolve().parents[2]
LIMITS = SandboxLimits(cpu_seconds=2.0, wall_seconds=10.0, memory_mb=512)

THRESHOLD = '''"""Normal: value below t. Abnormal: value at or above t."""
import numpy as np

PARAMS = {"t": 20.0}
PARAM_RANGES = {"t": (1.0, 30.0)}
LOOKBACK = 0


def detect(values, timestamps, params):
    if params["t"] > 29:
        raise ValueError("t too large")
    return values >= params["t"]
'''


def _data_dir() -> Path | None:
    env = os.environ.get("ARGOS_DATA_DIR")
    for cand in ([Path(env)] if env else []) + [ROOT.parent / "shared" / "datasets"]:
        if cand.is_dir():
            return cand
    return None


@pytest.fixture(scope="module")
def sb() -> Iterator[Sandbox]:
    with Sandbox(limits=LIMITS) as s:
        yield s


def test_candidates_defaults_first_unique_within_budget() -> None:
    c = candidate_params(
        {"k": 4.0, "w": 50, "flag": True, "mode": "up"}, {"k": (2.0, 10.0)}, budget=20
    )
    assert c[0] == {"k": 4.0, "w": 50, "flag": True, "mode": "up"}
    assert len(c) == 20
    assert len({tuple(sorted(p.items())) for p in c}) == 20
    assert all(2.0 <= p["k"] <= 10.0 for p in c)
    assert all(isinstance(p["w"], int) and 12 <= p["w"] <= 200 for p in c)  # 50/4 .. 50*4
    assert {p["flag"] for p in c} == {True, False}
    assert {p["mode"] for p in c} == {"up"}


def test_candidates_grid_when_it_fits() -> None:
    c = candidate_params({"t": 5.0}, {"t": (0.0, 10.0)}, budget=11)
    assert sorted(p["t"] for p in c) == pytest.approx([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10])


def test_candidates_random_is_seeded() -> None:
    d = {"a": 1.0, "b": 2.0, "c": 3.0}
    one = candidate_params(d, {}, budget=10, seed=3)
    assert one == candidate_params(d, {}, budget=10, seed=3)
    assert one != candidate_params(d, {}, budget=10, seed=4)
    # multiplicative ranges: log-uniform in default/4 .. default*4
    assert all(0.25 <= p["a"] <= 4.0 and 0.75 <= p["c"] <= 12.0 for p in one)


def test_candidates_explicit_space_and_zero_defaults() -> None:
    c = candidate_params({"t": 1.0, "z": 0.0}, {}, space={"t": [1.0, 2.0, 3.0]}, budget=10)
    assert [p["t"] for p in c] == [1.0, 2.0, 3.0]
    assert candidate_params({"z": 0.0}, {}, budget=10) == [{"z": 0.0}]
    with pytest.raises(ValueError, match="not in PARAMS"):
        candidate_params({"t": 1.0}, {}, space={"q": [1]})


def test_score_predictions_pooled_and_no_anomaly_case() -> None:
    truth = [np.array([0, 1, 1, 0, 0], bool), np.zeros(5, bool)]
    pred = [np.array([0, 0, 1, 0, 0], bool), np.array([1, 0, 0, 0, 0], bool)]
    # event-PA: 1 event hit (tp=1), 1 false point (fp=1) -> P=.5 R=1 F1=2/3
    assert score_predictions(truth, pred) == pytest.approx(2 / 3)
    assert score_predictions([np.zeros(4, bool)], [np.array([1, 0, 0, 0], bool)]) == -0.25


@pytest.mark.timeout(120)
def test_fit_finds_threshold_between_noise_and_spikes(sb: Sandbox) -> None:
    rng = np.random.default_rng(0)
    inputs, labels = [], []
    for _ in range(3):
        v = rng.uniform(0, 3, 500)
        lab = np.zeros(500, bool)
        idx = rng.choice(np.arange(20, 480), 5, replace=False)
        v[idx] = 8.0
        lab[idx] = True
        inputs.append((v, np.arange(500, dtype=np.int64)))
        labels.append(lab)
    res = fit_params(sb, THRESHOLD, inputs, labels, budget=30, seed=0)
    assert res.trace[0].params == {"t": 20.0} and res.trace[0].score == 0.0
    assert res.best_score == pytest.approx(1.0)
    assert 3.0 < float(res.best_params["t"]) <= 8.0
    assert len(res.trace) == 30
    # t > 29 raises in the rule: recorded as failed trials, never chosen
    failed = [t for t in res.trace if t.score is None]
    assert failed and all(t.status == "runtime_error" and "t too large" in t.detail for t in failed)
    assert res.n_failed == len(failed)


@pytest.mark.timeout(60)
def test_fit_rejects_mismatched_labels(sb: Sandbox) -> None:
    with pytest.raises(ValueError, match="do not match"):
        fit_params(sb, THRESHOLD, [(np.zeros(5), np.arange(5))], [np.zeros(4, bool)])


@pytest.mark.timeout(300)
def test_fit_robust_zscore_on_yahoo_a1_train_split(sb: Sandbox) -> None:
    data = _data_dir()
    if data is None:
        pytest.skip("benchmark data not found (set ARGOS_DATA_DIR or provide ../shared/datasets)")
    inputs, labels = [], []
    for i in (3, 5, 9, 12, 13, 14, 15):  # A1 series with anomalies in their train part
        raw = np.genfromtxt(
            data / "yahoo_s5" / "A1Benchmark" / f"real_{i}.csv", delimiter=",", skip_header=1
        )
        n_train = int(len(raw) * 0.7)  # chronological 70% train; the test part is never seen
        inputs.append((raw[:n_train, 1], raw[:n_train, 0].astype(np.int64)))
        labels.append(raw[:n_train, 2] > 0)
    code = (ROOT / "rules" / "examples" / "robust_zscore.py").read_text()
    res = fit_params(sb, code, sb.preload(inputs), labels, budget=24, seed=1)
    default_score = res.trace[0].score
    assert default_score is not None and res.best_score is not None
    assert res.best_score >= default_score
    assert res.best_score > 0.5, res.best_score
    assert res.n_failed == 0
