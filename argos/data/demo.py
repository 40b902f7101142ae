"""The deterministic synthetic ``demo`` dataset: six cloud-service metrics with labeled incidents.

No files are needed: :func:`make_demo_dataset` builds 14 days at a 5-minute interval (4,032 points
per series) of correlated service metrics driven by one load curve (daily business-hours shape,
quieter weekends, slow growth, noise), then injects the incidents operators meet:

========================  =============================================================  ===========
kind                      what happens                                                   length
========================  =============================================================  ===========
``spike``                 a few points jump far above normal                             1-3 points
``dip``                   a few points fall far below normal                             2-6 points
``level_shift``           the level moves by a large step, then recovers                 2-3 hours
``variance_burst``        same level, much noisier                                       1-3 hours
``stuck``                 the metric repeats one value (a hung exporter)                 2-4 hours
``drop_to_zero``          the metric reads 0 (an outage or a dead agent)                 30-90 min
``broken_seasonality``    the daily pattern is missing (a flat day-time curve, or the    45 min-10 h
                          nightly backup burst of ``disk_io`` does not happen)
========================  =============================================================  ===========

Every series has at least one incident in each part of the default split (train, validation =
last 20% of train, test = last 30%), so fitting, reviewing and scoring all see anomalies. Labels
cover exactly the injected interval; ``series.meta["events"]`` lists them.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import numpy as np

from argos._types import FloatArray
from argos.data.series import Dataset, Series, SplitSpec

__all__ = ["DEMO_INTERVAL", "DEMO_POINTS", "DEMO_SERIES", "DEMO_START", "make_demo_dataset"]

DEMO_INTERVAL = 300
"""Seconds between points."""
DEMO_POINTS = 14 * 24 * 12
"""Points per series: 14 days at 5 minutes."""
DEMO_START = int(datetime(2026, 1, 5, tzinfo=UTC).timestamp())
"""First timestamp: Monday 2026-01-05 00:00 UTC."""

_DAY = 24 * 12  # points per day
_SPLIT = SplitSpec(train_fraction=0.7, validation_fraction=0.2, granularity="series")

# Incident kinds per series; each kind occurs once in train and once in test, and the series'
# first kind also once in validation.
DEMO_SERIES: dict[str, tuple[str, ...]] = {
    "requests_per_s": ("dip", "drop_to_zero", "broken_seasonality"),
    "api_latency_ms": ("spike", "level_shift", "variance_burst"),
    "error_rate": ("spike", "level_shift"),
    "cpu_util": ("stuck", "spike", "variance_burst"),
    "disk_io": ("broken_seasonality", "drop_to_zero"),
    "queue_depth": ("spike", "stuck"),
}
"""Series names and the incident kinds injected into each."""

_LENGTHS: dict[str, tuple[int, int]] = {
    "spike": (1, 3),
    "dip": (2, 6),
    "level_shift": (24, 36),
    "variance_burst": (12, 36),
    "stuck": (24, 48),
    "drop_to_zero": (6, 18),
    "broken_seasonality": (72, 120),
}

_BACKUP_START, _BACKUP_LEN = 24, 9  # disk_io backup burst: 02:00-02:45 every night


def make_demo_dataset(seed: int = 0) -> Dataset:
    """Build the ``demo`` dataset; the same ``seed`` always gives identical arrays."""
    rng = np.random.default_rng(seed)
    idx = np.arange(DEMO_POINTS)
    timestamps = DEMO_START + DEMO_INTERVAL * idx.astype(np.int64)
    load = _load_curve(idx, rng)
    val_start, test_start = _SPLIT.bounds(_placeholder(timestamps))
    segments = {"train": (0, val_start), "validation": (val_start, test_start)}
    segments["test"] = (test_start, DEMO_POINTS)
    series: list[Series] = []
    for name, kinds in DEMO_SERIES.items():
        base, noise_sd = _BASES[name](idx, load, rng)
        values = base + rng.normal(0.0, 1.0, DEMO_POINTS) * noise_sd
        values = _post(name, values)
        labels = np.zeros(DEMO_POINTS, dtype=np.bool_)
        plan = [(k, "train") for k in kinds] + [(kinds[0], "validation")]
        plan += [(k, "test") for k in kinds]
        taken: list[tuple[int, int]] = []
        events: list[dict[str, Any]] = []
        for kind, part in plan:
            start, stop = _place(name, kind, segments[part], taken, rng)
            _inject(name, kind, values, base, noise_sd, start, stop, rng)
            labels[start:stop] = True
            taken.append((start, stop))
            events.append({"kind": kind, "part": part, "start": start, "stop": stop})
        values = _post(name, values)
        events.sort(key=lambda e: int(e["start"]))
        series.append(
            Series.create(
                name, timestamps, values, labels, {"events": events, "unit": _UNITS[name]}
            )
        )
    return Dataset(
        name="demo",
        series=series,
        split=_SPLIT,
        meta={"layout": "demo", "seed": seed, "interval": DEMO_INTERVAL},
    )


def _placeholder(timestamps: np.ndarray[Any, Any]) -> Series:
    return Series.create("_", timestamps, np.zeros(len(timestamps)))


def _load_curve(idx: np.ndarray[Any, Any], rng: np.random.Generator) -> FloatArray:
    """Shared traffic shape in [~0.15, ~1.1]: business-hours peak, weekends at 60%, slow growth."""
    hour = (idx % _DAY) / 12.0
    daily = 0.5 - 0.5 * np.cos(2 * np.pi * (hour - 3.0) / 24.0)  # trough 03:00, peak 15:00
    daily = 0.2 + 0.8 * daily**1.5
    weekday = (idx // _DAY) % 7  # day 0 is a Monday
    weekly = np.where(weekday >= 5, 0.6, 1.0)
    trend = 1.0 + 0.004 * idx / _DAY * (1.0 + 0.25 * rng.random())
    wobble = 1.0 + 0.03 * np.sin(2 * np.pi * idx / (_DAY * 3.3) + rng.uniform(0, 2 * np.pi))
    return np.asarray(daily * weekly * trend * wobble, dtype=np.float64)


Base = tuple[FloatArray, FloatArray]


def _requests(idx: np.ndarray[Any, Any], load: FloatArray, rng: np.random.Generator) -> Base:
    base = 900.0 * load + 40.0
    return base, 0.03 * base + 4.0


def _latency(idx: np.ndarray[Any, Any], load: FloatArray, rng: np.random.Generator) -> Base:
    base = 95.0 + 45.0 * load**2
    return base, 0.05 * base


def _errors(idx: np.ndarray[Any, Any], load: FloatArray, rng: np.random.Generator) -> Base:
    base = 0.35 + 0.25 * load
    return base, np.full_like(base, 0.06)


def _cpu(idx: np.ndarray[Any, Any], load: FloatArray, rng: np.random.Generator) -> Base:
    base = 18.0 + 52.0 * load
    return base, np.full_like(base, 2.0)


def _disk(idx: np.ndarray[Any, Any], load: FloatArray, rng: np.random.Generator) -> Base:
    base = 35.0 + 25.0 * load
    slot = idx % _DAY
    backup = (slot >= _BACKUP_START) & (slot < _BACKUP_START + _BACKUP_LEN)
    base = base + np.where(backup, 160.0, 0.0)
    return base, 0.06 * base


def _queue(idx: np.ndarray[Any, Any], load: FloatArray, rng: np.random.Generator) -> Base:
    base = 2.0 + 10.0 * load
    return base, np.sqrt(base)


_BASES: dict[str, Callable[[np.ndarray[Any, Any], FloatArray, np.random.Generator], Base]] = {
    "requests_per_s": _requests,
    "api_latency_ms": _latency,
    "error_rate": _errors,
    "cpu_util": _cpu,
    "disk_io": _disk,
    "queue_depth": _queue,
}

_UNITS = {
    "requests_per_s": "requests/s",
    "api_latency_ms": "ms (p95)",
    "error_rate": "% of requests",
    "cpu_util": "% CPU",
    "disk_io": "MB/s",
    "queue_depth": "messages",
}


def _post(name: str, values: FloatArray) -> FloatArray:
    """Keep each metric in its physical range (non-negative, CPU <= 100, whole queue lengths)."""
    out: FloatArray = np.clip(values, 0.0, 100.0 if name == "cpu_util" else np.inf)
    return np.round(out, 0 if name == "queue_depth" else 3)


def _place(
    name: str,
    kind: str,
    segment: tuple[int, int],
    taken: list[tuple[int, int]],
    rng: np.random.Generator,
) -> tuple[int, int]:
    """A random interval for an incident inside ``segment``, 3 hours clear of the others."""
    lo, hi = segment
    margin, gap = 12, 36
    for _ in range(10_000):
        if name == "disk_io" and kind == "broken_seasonality":
            # the backup of one night does not run: label the slot where it should have been
            days = np.arange(lo // _DAY, hi // _DAY + 1)
            starts = days * _DAY + _BACKUP_START
            first = max(lo + margin, _DAY)  # the rule has seen at least one backup before
            starts = starts[(starts >= first) & (starts + _BACKUP_LEN <= hi - margin)]
            start, length = int(rng.choice(starts)), _BACKUP_LEN
        else:
            a, b = _LENGTHS[kind]
            length = int(rng.integers(a, b + 1))
            if kind == "broken_seasonality":  # flatten a day-time stretch, where the curve moves
                days = np.arange(lo // _DAY, hi // _DAY + 1)
                starts = days * _DAY + int(rng.integers(7 * 12, 11 * 12))
                starts = starts[(starts >= lo + margin) & (starts + length <= hi - margin)]
                if len(starts) == 0:
                    continue
                start = int(rng.choice(starts))
            else:
                start = int(rng.integers(lo + margin, hi - margin - length))
        stop = start + length
        if all(stop + gap <= s or start >= e + gap for s, e in taken):
            return start, stop
    raise RuntimeError(f"cannot place {kind} in {segment}")  # pragma: no cover


def _inject(
    name: str,
    kind: str,
    values: FloatArray,
    base: FloatArray,
    noise_sd: FloatArray,
    start: int,
    stop: int,
    rng: np.random.Generator,
) -> None:
    """Overwrite ``values[start:stop]`` with the incident (in place)."""
    n = stop - start
    seg = slice(start, stop)
    sd = noise_sd[seg]
    if kind == "spike":
        values[seg] = base[seg] + sd * rng.uniform(10.0, 16.0) + 0.6 * base[seg]
    elif kind == "dip":
        values[seg] = base[seg] * rng.uniform(0.25, 0.45) + rng.normal(0.0, 1.0, n) * sd
    elif kind == "level_shift":
        factor = rng.uniform(1.5, 1.9) if name != "error_rate" else rng.uniform(3.0, 5.0)
        values[seg] = base[seg] * factor + rng.normal(0.0, 1.0, n) * sd
    elif kind == "variance_burst":
        burst = base[seg] + rng.normal(0.0, 1.0, n) * sd * rng.uniform(6.0, 9.0)
        values[seg] = np.maximum(burst, 0.3 * base[seg])
    elif kind == "stuck":
        values[seg] = values[start - 1]
    elif kind == "drop_to_zero":
        values[seg] = 0.0
    elif kind == "broken_seasonality":
        if name == "disk_io":
            normal = base[seg] - 160.0  # the backup burst is missing
            values[seg] = normal + rng.normal(0.0, 1.0, n) * 0.06 * normal
        else:
            values[seg] = base[start] + rng.normal(0.0, 1.0, n) * sd
    else:  # pragma: no cover - DEMO_SERIES and _inject are kept in step by the tests
        raise ValueError(f"unknown incident kind {kind!r}")
