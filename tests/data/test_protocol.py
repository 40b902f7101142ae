"""Splits, and the guarantee that the fitting side never holds a test point or label."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import numpy as np
import pytest

from argos._types import BoolArray
from argos.data.protocol import (
    detection_input,
    fit_inputs,
    merge_slices,
    split_series,
    test_truth,
)
from argos.data.series import DataError, Dataset, Series, SplitSpec
from argos.evaluation.harness import evaluate
from argos.methods import register_method, unregister_method


def _series(n: int, sid: str = "s", **meta: object) -> Series:
    rng = np.random.default_rng(0)
    labels = np.zeros(n, dtype=bool)
    labels[n // 10 : n // 10 + 3] = True  # one event in train
    labels[-n // 10 : -n // 10 + 4] = True  # one event in test
    return Series.create(
        sid, np.arange(n) * 60 + 1_600_000_000, rng.normal(size=n), labels, meta=dict(meta)
    )


def test_default_split_is_70_30_with_last_20_percent_of_train_as_validation() -> None:
    sp = split_series(_series(1000), SplitSpec())
    assert (sp.train_end, sp.val_start, sp.test_start) == (560, 560, 700)
    assert (sp.n_train, sp.n_validation, sp.n_test) == (560, 140, 300)
    assert sp.source == "spec"


def test_official_split_wins_over_fractions() -> None:
    s = _series(1000, test_start=400, train_fraction=0.5)
    sp = split_series(s, SplitSpec(train_fraction=0.9))
    assert sp.test_start == 400 and sp.val_start == 320 and sp.source == "official"


def test_per_series_train_fraction_overrides_the_spec() -> None:
    sp = split_series(_series(1000, train_fraction=0.5), SplitSpec(train_fraction=0.7))
    assert sp.test_start == 500 and sp.val_start == 400 and sp.source == "series"


def test_no_validation_part() -> None:
    sp = split_series(_series(100), SplitSpec(validation_fraction=0.0))
    assert sp.val_start == sp.test_start == 70 and sp.n_validation == 0


@pytest.mark.parametrize("test_start", [0, 1000, 5000])
def test_impossible_official_split_is_an_error(test_start: int) -> None:
    with pytest.raises(DataError, match="empty train or test"):
        split_series(_series(1000, test_start=test_start), SplitSpec())


def test_fit_inputs_end_before_test_and_do_not_share_memory() -> None:
    s = _series(1000)
    inputs = fit_inputs([s], SplitSpec())
    (train,), (val,) = inputs.train, inputs.validation
    assert len(train) == 560 and len(val) == 140
    np.testing.assert_array_equal(val.timestamps, s.timestamps[560:700])
    for part in (train, val):
        for arr in (part.values, part.timestamps, part.labels):
            assert arr is not None
            assert not np.shares_memory(arr, s.values)
            assert not np.shares_memory(arr, s.timestamps)
            assert s.labels is not None and not np.shares_memory(arr, s.labels)
            # a view's base must not reach beyond test_start either
            base = arr.base if arr.base is not None else arr
            assert base.shape[0] <= 700


def test_detection_input_has_no_labels_and_test_truth_is_the_tail() -> None:
    s = _series(1000, test_start=700, note="x", label_copy=[1, 0, 1])
    assert detection_input(s).labels is None and len(detection_input(s)) == 1000
    assert dict(detection_input(s).meta) == {"test_start": 700, "note": "x"}  # scalars only
    truth = test_truth(s, split_series(s, SplitSpec()))
    assert s.labels is not None
    np.testing.assert_array_equal(truth, s.labels[700:])


def test_merge_slices_restores_the_history() -> None:
    s = _series(100)
    merged = merge_slices([s.slice(0, 40), s.slice(40, 40), s.slice(40, 70)])
    np.testing.assert_array_equal(merged.values, s.values[:70])
    with pytest.raises(ValueError, match="different series"):
        merge_slices([s.slice(0, 10), _series(100, sid="other").slice(10, 20)])


class _Snooper:
    """A method that records everything its fit() and its detector receive."""

    seen_fit: ClassVar[list[tuple[str, np.ndarray, BoolArray | None]]] = []
    seen_detect: ClassVar[list[Series]] = []

    name = "snooper"

    def fit(self, train: Sequence[Series], validation: Sequence[Series]) -> _Snooper:
        for part in (*train, *validation):
            ts = part.timestamps if part.timestamps.base is None else part.timestamps.base
            _Snooper.seen_fit.append((part.id, np.asarray(ts).copy(), part.labels))
        return self

    def detect(self, series: Series) -> BoolArray:
        _Snooper.seen_detect.append(series)
        return np.zeros(len(series), dtype=bool)


@pytest.mark.parametrize("granularity", ["series", "partition"])
def test_harness_never_shows_test_points_to_fit_nor_labels_to_detect(granularity: str) -> None:
    series = [_series(500, "a"), _series(800, "b", test_start=300), _series(300, "c")]
    ds = Dataset(
        "toy",
        series,
        split=SplitSpec(granularity=granularity),
        partitions={"P1": ["a", "b"], "P2": ["c"]},
    )
    first_test_ts = {s.id: s.timestamps[split_series(s, ds.split).test_start] for s in series}
    _Snooper.seen_fit.clear()
    _Snooper.seen_detect.clear()
    register_method("snooper", lambda *, seed=0: _Snooper(), replace=True)
    try:
        evaluate(ds, ["snooper"], workers=1)
    finally:
        unregister_method("snooper")
    assert {sid for sid, _, _ in _Snooper.seen_fit} == {"a", "b", "c"}
    for sid, ts, _labels in _Snooper.seen_fit:
        assert ts.max() < first_test_ts[sid], f"fit saw a test timestamp of {sid}"
    assert len(_Snooper.seen_detect) == 3
    assert all(s.labels is None for s in _Snooper.seen_detect)
    assert sorted(len(s) for s in _Snooper.seen_detect) == [300, 500, 800]  # whole series
