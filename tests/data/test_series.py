"""The data model: validation, the NaN and irregular-sampling policy, splits, error wording."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from argos.data.series import DataError, Dataset, Series, SplitSpec, make_increasing, show_value


def test_create_normalises_dtypes() -> None:
    s = Series.create("a", [1, 2, 3], [1, 2, 3], [0, 1, 0])
    assert s.timestamps.dtype == np.int64
    assert s.values.dtype == np.float64
    assert s.labels is not None and s.labels.dtype == np.bool_
    assert s.labels.tolist() == [False, True, False]
    assert len(s) == 3
    assert s.anomaly_ratio == pytest.approx(1 / 3)


def test_whole_float_timestamps_are_accepted() -> None:
    s = Series.create("a", [10.0, 20.0], [1.0, 2.0])
    assert s.timestamps.tolist() == [10, 20]


def test_nan_values_are_interpolated_and_counted() -> None:
    s = Series.create("a", [0, 1, 2, 3, 4, 5], [np.nan, 2.0, np.nan, np.nan, 8.0, np.nan])
    # linear between neighbours, constant at the ends
    assert s.values.tolist() == [2.0, 2.0, 4.0, 6.0, 8.0, 8.0]
    assert s.meta["filled"] == 4


def test_labels_of_filled_points_are_kept() -> None:
    s = Series.create("a", [0, 1, 2], [1.0, np.nan, 3.0], [0, 1, 0])
    assert s.labels is not None and s.labels.tolist() == [False, True, False]
    assert s.values[1] == 2.0


def test_no_nan_means_no_filled_key() -> None:
    assert "filled" not in Series.create("a", [0, 1], [1.0, 2.0]).meta


def test_irregular_sampling_is_kept_and_interval_is_the_median() -> None:
    ts = [0, 60, 120, 180, 600, 660]
    s = Series.create("a", ts, np.arange(6.0))
    assert s.timestamps.tolist() == ts  # nothing resampled
    assert s.interval == 60
    assert Series.create("b", [5], [1.0]).interval == 0


def test_duplicate_timestamp_names_index_without_source() -> None:
    with pytest.raises(DataError, match=r"^series 'a', index 2: duplicate timestamp 20") as err:
        Series.create("a", [10, 20, 20], [1, 2, 3])
    assert err.value.row == 2 and err.value.row_kind == "index"


def test_non_increasing_timestamp_names_file_line() -> None:
    with pytest.raises(DataError, match=r"^f\.csv, line 4: non-increasing timestamp 5") as err:
        Series.create("a", [10, 20, 5], [1, 2, 3], source="f.csv", first_row=2)
    assert err.value.row == 4 and err.value.source == "f.csv"


def test_lines_map_points_to_their_own_file_lines() -> None:
    with pytest.raises(DataError, match=r"line 9: label 3 is not 0 or 1"):
        Series.create("a", [1, 2, 3], [1, 2, 3], [0, 0, 3], source="k.csv", lines=[2, 5, 9])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"timestamps": [1, 2], "values": [1.0]}, "length mismatch: 2 timestamps but 1 values"),
        ({"timestamps": [1, 2], "values": [1, 2], "labels": [0]}, "length mismatch: 1 labels"),
        ({"timestamps": [], "values": []}, "no data points"),
        ({"timestamps": [1.5, 2], "values": [1, 2]}, "index 0: timestamp 1.5 is not a whole"),
        ({"timestamps": [1, np.nan], "values": [1, 2]}, "index 1: missing or infinite timestamp"),
        ({"timestamps": ["a", "b"], "values": [1, 2]}, "timestamps must be integers"),
        ({"timestamps": [1, 2], "values": [1.0, np.inf]}, "index 1: infinite value"),
        ({"timestamps": [1, 2], "values": [np.nan, np.nan]}, "every value is missing"),
        ({"timestamps": [1, 2], "values": ["1", "x"]}, "index 1: value 'x' is not a number"),
        ({"timestamps": [1, 2], "values": [True, False]}, "values must be numeric"),
        ({"timestamps": [1, 2], "values": [1, 2], "labels": [0, 0.5]}, "label 0.5 is not 0 or 1"),
        ({"timestamps": [1, 2], "values": [1, 2], "labels": ["0", "y"]}, "label 'y' is not 0"),
        ({"timestamps": [[1, 2]], "values": [[1, 2]]}, "one-dimensional"),
    ],
)
def test_create_rejects_bad_input(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(DataError, match=message):
        Series.create("a", **kwargs)  # type: ignore[arg-type]


def test_string_values_that_are_numbers_are_accepted() -> None:
    s = Series.create("a", [1, 2], np.array(["1.5", "2"], dtype=object))
    assert s.values.tolist() == [1.5, 2.0]


def test_show_value() -> None:
    assert show_value(np.float64(2.0)) == "2"
    assert show_value(np.float64(0.5)) == "0.5"
    assert show_value("x") == "'x'"


def test_make_increasing_moves_duplicates_and_steps_back() -> None:
    out, n = make_increasing([0, 300, 300, 600, 100, 200, 900])
    assert out.tolist() == [0, 300, 301, 600, 601, 602, 900]
    assert n == 3


@given(st.lists(st.integers(-(10**9), 10**9), min_size=0, max_size=60))
def test_make_increasing_properties(ts: list[int]) -> None:
    out, n = make_increasing(ts)
    assert len(out) == len(ts)
    assert np.all(np.diff(out) > 0)
    assert np.all(out >= np.asarray(ts, dtype=np.int64))
    assert n == int(np.count_nonzero(out != np.asarray(ts, dtype=np.int64)))
    if len(ts) < 2 or all(b > a for a, b in itertools.pairwise(ts)):
        assert n == 0


def _series(n: int, **meta: object) -> Series:
    return Series.create("s", np.arange(n), np.zeros(n), meta=meta)


def test_split_bounds_default_fraction() -> None:
    assert SplitSpec().bounds(_series(100)) == (56, 70)  # val = last 14 of the first 70
    assert SplitSpec(train_fraction=0.5, validation_fraction=0.0).bounds(_series(11)) == (5, 5)


def test_split_bounds_official_and_per_series() -> None:
    assert SplitSpec().bounds(_series(100, test_start=40)) == (32, 40)
    assert SplitSpec().bounds(_series(100, train_fraction=0.5)) == (40, 50)
    # the official split wins over a per-series fraction
    assert SplitSpec().bounds(_series(100, test_start=90, train_fraction=0.5)) == (72, 90)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"train_fraction": 0.0},
        {"train_fraction": 1.0},
        {"validation_fraction": 1.0},
        {"granularity": "global"},
    ],
)
def test_split_spec_validates(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        SplitSpec(**kwargs)  # type: ignore[arg-type]


def test_slice_and_without_labels_share_memory() -> None:
    s = Series.create("a", [1, 2, 3, 4], [1.0, 2.0, 3.0, 4.0], [0, 0, 1, 0], {"k": 1})
    part = s.slice(1, 3)
    assert part.values.tolist() == [2.0, 3.0]
    assert np.shares_memory(part.values, s.values)
    bare = s.without_labels()
    assert bare.labels is None and bare.meta["k"] == 1 and len(bare) == 4


def test_dataset_rejects_duplicate_ids_and_groups_by_partition() -> None:
    a = Series.create("a", [1, 2], [1.0, 2.0])
    b = Series.create("b", [1, 2], [1.0, 2.0])
    with pytest.raises(DataError, match="duplicate series ids"):
        Dataset("d", [a, a])
    ds = Dataset("d", [a, b], SplitSpec(granularity="partition"), {"P": ["a"]})
    assert {k: [s.id for s in v] for k, v in ds.groups().items()} == {"P": ["a"], "d": ["b"]}
    assert ds.n_points == 4 and ds.get("b") is b
    with pytest.raises(KeyError):
        ds.get("zzz")
