"""The synthetic demo dataset: deterministic, realistic ranges, incidents in every split part."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from argos.data.demo import DEMO_INTERVAL, DEMO_POINTS, DEMO_SERIES, make_demo_dataset
from argos.data.series import Dataset, Series

ALL_KINDS = {
    "spike",
    "dip",
    "level_shift",
    "variance_burst",
    "stuck",
    "drop_to_zero",
    "broken_seasonality",
}


def test_same_seed_same_arrays_other_seed_differs(demo_dataset: Dataset) -> None:
    again = make_demo_dataset(seed=0)
    other = make_demo_dataset(seed=1)
    for a, b, c in zip(demo_dataset, again, other, strict=True):
        assert np.array_equal(a.values, b.values) and np.array_equal(a.timestamps, b.timestamps)
        assert a.labels is not None and b.labels is not None and c.labels is not None
        assert np.array_equal(a.labels, b.labels)
        assert not np.array_equal(a.values, c.values)
        assert not np.array_equal(a.labels, c.labels)


def test_shape_names_and_clock(demo_dataset: Dataset) -> None:
    assert demo_dataset.name == "demo"
    assert [s.id for s in demo_dataset] == list(DEMO_SERIES)
    assert len(demo_dataset) == 6 and DEMO_POINTS == 4032
    start = datetime.fromtimestamp(int(demo_dataset.series[0].timestamps[0]), tz=UTC)
    assert start.weekday() == 0 and (start.hour, start.minute) == (0, 0)  # a Monday, midnight
    for s in demo_dataset:
        assert len(s) == 4032 and s.interval == DEMO_INTERVAL
        assert np.all(np.diff(s.timestamps) == DEMO_INTERVAL)
        assert "filled" not in s.meta


def test_every_series_has_anomalies_in_train_validation_and_test(
    demo_dataset: Dataset,
) -> None:
    for s in demo_dataset:
        val_start, test_start = demo_dataset.split.bounds(s)
        assert (val_start, test_start) == (2258, 2822)
        assert s.labels is not None
        assert s.labels[:val_start].any(), s.id
        assert s.labels[val_start:test_start].any(), s.id
        assert s.labels[test_start:].any(), s.id
        assert 0.005 < float(s.labels.mean()) < 0.08, s.id


def test_labels_are_exactly_the_listed_events(demo_dataset: Dataset) -> None:
    seen: set[str] = set()
    for s in demo_dataset:
        mask = np.zeros(len(s), dtype=bool)
        for e in s.meta["events"]:
            assert 1 <= e["stop"] - e["start"] <= 120  # a few points to a few hours
            mask[e["start"] : e["stop"]] = True
            seen.add(e["kind"])
        assert s.labels is not None and np.array_equal(mask, s.labels)
        assert {e["kind"] for e in s.meta["events"]} == set(DEMO_SERIES[s.id])
    assert seen == ALL_KINDS


def _events(s: Series, kind: str) -> list[tuple[int, int]]:
    return [(e["start"], e["stop"]) for e in s.meta["events"] if e["kind"] == kind]


def _normal(s: Series) -> np.ndarray:
    assert s.labels is not None
    return s.values[~s.labels]


def test_incidents_look_like_what_they_claim(demo_dataset: Dataset) -> None:
    req = demo_dataset.get("requests_per_s")
    for a, b in _events(req, "drop_to_zero"):
        assert np.all(req.values[a:b] == 0.0)
    assert _normal(req).min() > 0.0  # zero never happens outside an incident
    cpu = demo_dataset.get("cpu_util")
    for a, b in _events(cpu, "stuck"):
        assert np.all(cpu.values[a:b] == cpu.values[a - 1])
    lat = demo_dataset.get("api_latency_ms")
    for a, b in _events(lat, "spike"):
        assert lat.values[a:b].min() > np.quantile(_normal(lat), 0.999)
    for a, b in _events(lat, "level_shift"):
        before = lat.values[a - 12 : a].mean()
        assert lat.values[a:b].mean() > 1.3 * before


def test_disk_backup_runs_nightly_except_when_broken(demo_dataset: Dataset) -> None:
    disk = demo_dataset.get("disk_io")
    day = 24 * 12
    broken = {a // day for a, _ in _events(disk, "broken_seasonality")}
    assert len(broken) == 3
    for d in range(14):
        slot = disk.values[d * day + 24 : d * day + 33]  # 02:00-02:45
        assert d in broken or slot.min() > 150, d
        if d in broken:
            assert slot.max() < 120


def test_metrics_stay_in_physical_ranges(demo_dataset: Dataset) -> None:
    for s in demo_dataset:
        assert s.values.min() >= 0.0
    assert demo_dataset.get("cpu_util").values.max() <= 100.0
    q = demo_dataset.get("queue_depth").values
    assert np.array_equal(q, np.round(q))


def test_daily_and_weekly_pattern(demo_dataset: Dataset) -> None:
    req = demo_dataset.get("requests_per_s")
    by_hour = _normal(req)  # rough check on all points, incidents are few
    hours = (req.timestamps % 86400) // 3600
    afternoon = req.values[(hours >= 13) & (hours <= 16)].mean()
    night = req.values[(hours >= 2) & (hours <= 4)].mean()
    assert afternoon > 3 * night
    weekday = (req.timestamps // 86400 + 3) % 7  # 1970-01-01 was a Thursday -> 0 = Monday
    assert req.values[weekday < 5].mean() > 1.3 * req.values[weekday >= 5].mean()
    assert by_hour.size > 0.9 * len(req)


@pytest.mark.parametrize("seed", [1, 7, 123])
def test_other_seeds_keep_the_coverage_guarantee(seed: int) -> None:
    ds = make_demo_dataset(seed=seed)
    for s in ds:
        val_start, test_start = ds.split.bounds(s)
        assert s.labels is not None
        assert s.labels[:val_start].any() and s.labels[val_start:test_start].any()
        assert s.labels[test_start:].any()
