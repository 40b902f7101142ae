"""evaluate(): aggregation conventions, trials, parallel == serial, output files, failures."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest

from argos._types import BoolArray
from argos.data.series import Dataset, Series, SplitSpec
from argos.evaluation.harness import EvaluationError, evaluate
from argos.evaluation.results import markdown_table, write_results
from argos.methods import register_method, unregister_method
from argos.metrics import aggregate_mean, aggregate_pooled, event_pa

# Predictions the replay double returns, by series id (meta carries only scalars to detectors).
_PREDS: dict[str, list[int]] = {}


class _Replay:
    """Detector returning the predictions stored in ``_PREDS`` (a test double)."""

    name = "replay"

    def __init__(self, flip_seed: int | None = None) -> None:
        self.flip_seed = flip_seed

    def fit(self, train: Sequence[Series], validation: Sequence[Series]) -> _Replay:
        return self

    def detect(self, series: Series) -> BoolArray:
        pred = np.asarray(_PREDS[series.id], dtype=bool).copy()
        if self.flip_seed:  # trials > 0 flag the last point (a false alarm except in "a")
            pred[-1] = True
        return pred


class _Broken:
    name = "broken"

    def fit(self, train: Sequence[Series], validation: Sequence[Series]) -> _Broken:
        raise RuntimeError("boom in fit")

    def detect(self, series: Series) -> BoolArray:  # pragma: no cover - never reached
        return np.zeros(len(series), dtype=bool)


class _WrongShape(_Replay):
    def detect(self, series: Series) -> BoolArray:
        return np.zeros(len(series) - 1, dtype=bool)


@pytest.fixture(autouse=True)
def _methods() -> Iterator[None]:
    register_method("replay", lambda *, seed=0: _Replay(), replace=True)
    register_method("replay-seeded", lambda *, seed=0: _Replay(seed), replace=True)
    register_method("broken", lambda *, seed=0: _Broken(), replace=True)
    register_method("wrong-shape", lambda *, seed=0: _WrongShape(), replace=True)
    yield
    for name in ("replay", "replay-seeded", "broken", "wrong-shape"):
        unregister_method(name)


def _series(sid: str, truth: list[int], pred: list[int], train_anomaly: bool = True) -> Series:
    """10 train points (one anomaly if ``train_anomaly``) followed by the given test part."""
    train_labels = [0] * 10
    if train_anomaly:
        train_labels[3] = 1
    labels = np.array(train_labels + truth, dtype=bool)
    _PREDS[sid] = [0] * 10 + pred
    n = len(labels)
    return Series.create(
        sid,
        np.arange(n, dtype=np.int64),
        np.arange(n, dtype=float),
        labels,
        meta={"test_start": 10},
    )


def _dataset() -> Dataset:
    return Dataset(
        "toy",
        [
            # vector A of docs/evaluation.md as the test part
            _series("a", [0, 1, 1, 0, 1, 1, 1, 1, 0, 0], [1, 1, 0, 0, 0, 0, 0, 1, 1, 1]),
            # perfect detection
            _series("b", [0, 0, 1, 1, 0, 0], [0, 0, 1, 0, 0, 0]),
            # no test anomaly, one false alarm: precision 0, recall/F1 undefined
            _series("c", [0, 0, 0, 0], [0, 1, 0, 0]),
            # test anomalies but none in train: excluded from the peer convention
            _series("d", [0, 1, 0, 0], [0, 0, 0, 0], train_anomaly=False),
        ],
        split=SplitSpec(),
    )


def test_mean_pooled_and_both_splits_conventions() -> None:
    result = evaluate(_dataset(), ["replay"], workers=1)
    ev = result.summary()["replay"]["event_pa"]
    # per series event-PA: a P .4 R 1 F1 .5714; b 1/1/1; c P 0 (R, F1 undefined); d P 0 R 0 F1 0
    assert ev["mean"]["precision"] == pytest.approx((0.4 + 1 + 0 + 0) / 4)
    assert ev["mean"]["recall"] == pytest.approx((1 + 1 + 0) / 3)
    assert ev["mean"]["f1"] == pytest.approx((0.571428571 + 1 + 0) / 3)
    # pooled: TP 2+1+0+0, FP 3+0+1+0, FN 0+0+0+1
    assert (ev["pooled"]["tp"], ev["pooled"]["fp"], ev["pooled"]["fn"]) == (3, 4, 1)
    assert ev["pooled"]["precision"] == pytest.approx(3 / 7)
    assert ev["pooled"]["recall"] == pytest.approx(3 / 4)
    # peer convention: only a and b have anomalies in both parts
    assert ev["mean_both"]["f1"] == pytest.approx((0.571428571 + 1) / 2)
    assert result.series_counts() == {
        "series": 4,
        "with_test_anomalies": 3,
        "without_test_anomalies": 1,
        "with_anomalies_in_both": 2,
    }
    # the same numbers straight from the metric functions
    rows = result.rows_of("replay")
    truth = [0, 1, 1, 0, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0]
    pred = [1, 1, 0, 0, 0, 0, 0, 1, 1, 1, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0]
    assert aggregate_pooled([r.scores["event_pa"] for r in rows]) == event_pa(truth, pred)
    assert aggregate_mean([r.scores["event_pa"] for r in rows]).n_f1 == 3


def test_only_the_test_part_is_scored() -> None:
    result = evaluate(_dataset(), ["replay"], workers=1)
    a = result.rows_of("replay")[0]
    assert a.series_id == "a" and a.n_test == 10 and a.train_anomalies == 1
    point = a.scores["point"]
    assert (round(point.precision or 0, 4), round(point.recall or 0, 4)) == (0.4, 0.3333)


def test_trials_report_mean_and_spread() -> None:
    result = evaluate(_dataset(), ["replay", "replay-seeded"], trials=3, workers=1)
    doc = result.to_json()
    assert doc["trials"] == 3
    stable = doc["methods"]["replay"]["event_pa"]
    assert stable["spread"]["mean"]["f1"] == 0.0
    varying = doc["methods"]["replay-seeded"]["event_pa"]
    # trial 0 equals replay; trials 1, 2 add a false alarm to b, c and d
    assert varying["spread"]["pooled"]["precision"] > 0
    assert varying["pooled"]["fp"] == pytest.approx((4 + 7 + 7) / 3)


def test_parallel_equals_serial() -> None:
    ds = _dataset()
    serial = evaluate(ds, ["replay", "replay-seeded"], trials=2, workers=1)
    parallel = evaluate(ds, ["replay", "replay-seeded"], trials=2, workers=2)
    assert serial.summary().keys() == parallel.summary().keys()
    for a, b in zip(serial.rows, parallel.rows, strict=True):
        assert (a.method, a.trial, a.series_id, a.scores) == (
            b.method,
            b.trial,
            b.series_id,
            b.scores,
        )


def test_failures_name_the_method_and_the_unit() -> None:
    with pytest.raises(EvaluationError, match=r"'broken' failed on 'a'.*boom in fit"):
        evaluate(_dataset(), ["broken"], workers=1)
    with pytest.raises(EvaluationError, match="shape"):
        evaluate(_dataset(), ["wrong-shape"], workers=2)


def test_unknown_method_lists_the_known_ones() -> None:
    with pytest.raises(KeyError, match=r"known methods: .*robust-zscore"):
        evaluate(_dataset(), ["nope"])


def test_partition_granularity_fits_once_per_partition() -> None:
    ds = _dataset()
    ds = Dataset(
        ds.name,
        ds.series,
        split=SplitSpec(granularity="partition"),
        partitions={"P": ["a", "b"], "Q": ["c", "d"]},
    )
    result = evaluate(ds, ["replay"], workers=1)
    assert [r.group for r in result.rows] == ["P", "P", "Q", "Q"]
    assert result.granularity == "partition"
    by_part = result.to_json()["by_partition"]
    assert set(by_part) == {"P", "Q"}
    assert by_part["P"]["series"]["series"] == 2
    # P holds a (vector A, event-PA F1 .5714) and b (perfect): mean F1 over the two
    assert by_part["P"]["methods"]["replay"]["event_pa"]["mean"]["f1"] == pytest.approx(
        (0.571428571 + 1) / 2
    )
    assert "per partition" in markdown_table(result)


def test_written_files(tmp_path: Path) -> None:
    result = evaluate(_dataset(), ["replay", "robust-zscore"], workers=1)
    paths = write_results(result, tmp_path / "out", {"command": "argos eval --dataset toy"})
    names = sorted(p.name for p in paths)
    assert names == ["command.txt", "per_series.csv", "results.csv", "results.json", "results.md"]
    doc = json.loads((tmp_path / "out" / "results.json").read_text())
    assert doc["dataset"] == "toy"
    block = doc["methods"]["replay"]["event_pa"]
    assert set(block["mean"]) == {"precision", "recall", "f1"}
    assert {"precision", "recall", "f1"} <= set(block["pooled"])
    with (tmp_path / "out" / "results.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 2 * 4 * 3
    md = (tmp_path / "out" / "results.md").read_text()
    assert "Mean over series" in md and "Pooled" in md
    assert "1 of 4 series have no anomaly in the test part" in md
    assert "argos eval --dataset toy" in md
    assert "command: argos eval --dataset toy" in (tmp_path / "out" / "command.txt").read_text()


def test_markdown_shows_spreads_with_trials() -> None:
    result = evaluate(_dataset(), ["replay-seeded"], trials=2, workers=1)
    assert "±" in markdown_table(result)


@pytest.mark.slow
def test_robust_zscore_on_kpi_lands_near_the_peer_number(kpi_dataset: Dataset) -> None:
    """Regression anchor: docs/evaluation.md quotes 0.366 for a peer robust z-score (window 60)."""
    result = evaluate(kpi_dataset, ["robust-zscore"], workers=2, with_scores=False)
    ev = result.summary()["robust-zscore"]["event_pa"]
    assert result.series_counts()["with_anomalies_in_both"] == 29
    assert ev["mean_both"]["f1"] == pytest.approx(0.391, abs=0.01)
    assert 0.3 < ev["mean_both"]["f1"] < 0.45
