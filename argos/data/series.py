"""The data model: a labeled time series and a named dataset of them.

A :class:`Series` is plain numpy inside: ``timestamps`` (int64 Unix seconds, or an index when the
source has none), ``values`` (float64) and optional ``labels`` (bool, True = anomalous). It is
immutable; slicing returns views.

Policy for imperfect data (enforced by :func:`Series.create`, documented in ``datasets/README.md``):

- timestamps must be strictly increasing: duplicates and out-of-order rows are an error naming the
  first offending row (loaders sort nothing silently; a loader for a source known to carry such
  rows, like NAB, may call :func:`make_increasing` and record what it changed);
- missing values (NaN) are filled by linear interpolation between the nearest finite neighbours
  (constant extrapolation at the ends); how many were filled is recorded in ``meta["filled"]``.
  Labels of filled points are kept. Infinite values are an error;
- irregular sampling is kept as is: rules receive the real timestamps, and ``interval`` reports the
  median spacing. Nothing is resampled.

Row numbers in errors: when a series comes from a file, ``DataError.row`` is the line number a user
sees when opening the file (the header is line 1, so the first data row of a CSV is line 2) and the
message says ``line N``. A series built from arrays without a ``source`` reports the 0-based
``index`` of the element instead.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from argos._types import BoolArray, FloatArray, IntArray


class DataError(ValueError):
    """Bad input data. The message names the source (file), the row when known, and the problem.

    ``row`` is a line number in the file (header = line 1) when ``row_kind`` is ``"line"`` (the
    default), or a 0-based position when ``row_kind`` is ``"index"``.
    """

    def __init__(
        self,
        problem: str,
        *,
        source: str | None = None,
        row: int | None = None,
        row_kind: str = "line",
    ) -> None:
        self.problem = problem
        self.source = source
        self.row = row
        self.row_kind = row_kind
        where = ""
        if source is not None:
            where = f"{source}"
            if row is not None:
                where += f", {row_kind} {row}"
            where += ": "
        elif row is not None:
            where = f"{row_kind} {row}: "
        super().__init__(where + problem)


@dataclass(frozen=True, eq=False)
class Series:
    """One univariate metric series; build it with :meth:`create`, which validates it."""

    id: str
    timestamps: IntArray
    values: FloatArray
    labels: BoolArray | None = None
    meta: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def create(
        cls,
        id: str,
        timestamps: npt.ArrayLike,
        values: npt.ArrayLike,
        labels: npt.ArrayLike | None = None,
        meta: Mapping[str, Any] | None = None,
        *,
        source: str | None = None,
        first_row: int = 0,
        lines: npt.ArrayLike | None = None,
        row_kind: str | None = None,
    ) -> Series:
        """Validate and normalise arrays into a Series.

        ``source`` names the file for error messages. ``first_row`` is the line number in that file
        of element 0 (header = line 1, so a CSV's first data row is line 2); ``lines`` gives the
        line number of every element instead, for sources whose rows are not contiguous (KPI
        interleaves series in one file). Without a ``source``, errors report the 0-based index.
        ``row_kind`` overrides the word used in messages (``"row"`` for Parquet/HDF data rows).

        Raises:
            DataError: on a length mismatch, no points, non-integer or non-increasing timestamps,
                non-numeric or infinite values, all values missing, or labels other than 0/1.
        """
        src = source or f"series {id!r}"
        kind = row_kind or ("line" if source is not None else "index")
        line_of = _LineMap(first_row, lines)
        ts = np.asarray(timestamps)
        vals = np.asarray(values)
        if ts.ndim != 1 or vals.ndim != 1:
            raise DataError("timestamps and values must be one-dimensional", source=src)
        if len(ts) != len(vals):
            raise DataError(
                f"length mismatch: {len(ts)} timestamps but {len(vals)} values", source=src
            )
        if len(ts) == 0:
            raise DataError("no data points", source=src)
        if not np.issubdtype(ts.dtype, np.integer):
            if np.issubdtype(ts.dtype, np.floating) and np.all(np.isfinite(ts)):
                if not np.all(ts == np.round(ts)):
                    bad = int(np.flatnonzero(ts != np.round(ts))[0])
                    raise DataError(
                        f"timestamp {show_value(ts[bad])} is not a whole number of seconds",
                        source=src,
                        row=line_of(bad),
                        row_kind=kind,
                    )
            elif np.issubdtype(ts.dtype, np.floating):
                bad = int(np.flatnonzero(~np.isfinite(ts))[0])
                raise DataError(
                    "missing or infinite timestamp", source=src, row=line_of(bad), row_kind=kind
                )
            else:
                raise DataError(f"timestamps must be integers, got dtype {ts.dtype}", source=src)
        ts = ts.astype(np.int64, copy=False)
        if vals.dtype == np.bool_ or not np.issubdtype(vals.dtype, np.number):
            vals = _as_float(vals, src, line_of, kind)
        else:
            vals = vals.astype(np.float64, copy=False)
        diffs = np.diff(ts)
        if len(diffs) and diffs.min() <= 0:
            bad = int(np.flatnonzero(diffs <= 0)[0]) + 1
            what = "duplicate" if diffs[bad - 1] == 0 else "non-increasing"
            raise DataError(
                f"{what} timestamp {int(ts[bad])} (previous row has {int(ts[bad - 1])}); "
                "timestamps must be strictly increasing",
                source=src,
                row=line_of(bad),
                row_kind=kind,
            )
        if np.isinf(vals).any():
            bad = int(np.flatnonzero(np.isinf(vals))[0])
            raise DataError("infinite value", source=src, row=line_of(bad), row_kind=kind)
        meta_out: dict[str, Any] = dict(meta or {})
        nan = np.isnan(vals)
        if nan.any():
            if nan.all():
                raise DataError("every value is missing (NaN)", source=src)
            vals = _interpolate_missing(vals, nan)
            meta_out["filled"] = int(nan.sum())
        lab: BoolArray | None = None
        if labels is not None:
            lab_raw = np.asarray(labels)
            if lab_raw.ndim != 1 or len(lab_raw) != len(ts):
                raise DataError(
                    f"length mismatch: {len(lab_raw)} labels for {len(ts)} points", source=src
                )
            lab = _as_binary(lab_raw, src, line_of, kind)
        return cls(id=id, timestamps=ts, values=vals, labels=lab, meta=meta_out)

    def __len__(self) -> int:
        return int(self.values.shape[0])

    @property
    def has_labels(self) -> bool:
        return self.labels is not None

    @property
    def interval(self) -> int:
        """Median spacing of the timestamps (0 for a one-point series)."""
        if len(self) < 2:
            return 0
        return int(np.median(np.diff(self.timestamps)))

    @property
    def anomaly_ratio(self) -> float | None:
        if self.labels is None:
            return None
        return float(self.labels.mean())

    def slice(self, start: int, stop: int | None = None) -> Series:
        """Points ``start:stop`` as a new Series sharing memory with this one."""
        stop = len(self) if stop is None else stop
        return Series(
            id=self.id,
            timestamps=self.timestamps[start:stop],
            values=self.values[start:stop],
            labels=None if self.labels is None else self.labels[start:stop],
            meta=self.meta,
        )

    def without_labels(self) -> Series:
        """The same series with labels removed: what detectors see at test time."""
        return Series(id=self.id, timestamps=self.timestamps, values=self.values, meta=self.meta)


@dataclass(frozen=True)
class SplitSpec:
    """How each series is cut chronologically into train / validation / test.

    Attributes:
        train_fraction: share of each series used for training (the rest is test), unless a series
            carries an explicit ``meta["test_start"]`` index (KPI's official split does).
        validation_fraction: share of the train part, taken from its END, held out for reviewing and
            selecting rules.
        granularity: ``"series"`` trains one rule set per series; ``"partition"`` one per partition
            (e.g. Yahoo A1..A4) on the train parts of all its series.
    """

    train_fraction: float = 0.7
    validation_fraction: float = 0.2
    granularity: str = "series"

    def __post_init__(self) -> None:
        if not 0.0 < self.train_fraction < 1.0:
            raise ValueError(f"train_fraction must be in (0, 1), got {self.train_fraction}")
        if not 0.0 <= self.validation_fraction < 1.0:
            raise ValueError(
                f"validation_fraction must be in [0, 1), got {self.validation_fraction}"
            )
        if self.granularity not in ("series", "partition"):
            raise ValueError(
                f"granularity must be 'series' or 'partition', got {self.granularity!r}"
            )

    def bounds(self, series: Series) -> tuple[int, int]:
        """``(val_start, test_start)`` indices of ``series`` under this split.

        ``test_start`` is ``series.meta["test_start"]`` when present (an official split), else
        ``floor(len * f)`` where ``f`` is ``series.meta["train_fraction"]`` when present (a
        per-series convention, e.g. Yahoo A2 is 50/50) or this spec's ``train_fraction``.
        The validation part is the last
        ``floor(test_start * validation_fraction)`` points of the train part. Train is
        ``[0, val_start)``, validation ``[val_start, test_start)``, test ``[test_start, len)``.
        """
        n = len(series)
        official = series.meta.get("test_start")
        fraction = float(series.meta.get("train_fraction", self.train_fraction))
        test_start = int(official) if official is not None else int(n * fraction)
        test_start = min(max(test_start, 0), n)
        val_start = test_start - int(test_start * self.validation_fraction)
        return val_start, test_start


@dataclass(frozen=True)
class Dataset:
    """A named collection of series with the split that evaluation uses.

    ``partitions`` maps a partition name (e.g. ``"A1"``) to the ids of its series; datasets without
    partitions have a single one named after the dataset.
    """

    name: str
    series: Sequence[Series]
    split: SplitSpec = SplitSpec()
    partitions: Mapping[str, Sequence[str]] = field(default_factory=dict)
    meta: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        ids = [s.id for s in self.series]
        if len(set(ids)) != len(ids):
            dup = sorted({i for i in ids if ids.count(i) > 1})[:3]
            raise DataError(f"duplicate series ids in dataset {self.name!r}: {dup}")

    def __len__(self) -> int:
        return len(self.series)

    def __iter__(self) -> Iterator[Series]:
        return iter(self.series)

    def get(self, series_id: str) -> Series:
        """The series ``series_id``; raises :class:`UnknownSeries` with close matches."""
        for s in self.series:
            if s.id == series_id:
                return s
        raise UnknownSeries(series_id, [s.id for s in self.series], self.name)

    @property
    def n_points(self) -> int:
        return sum(len(s) for s in self.series)

    def partition_of(self, series_id: str) -> str:
        for name, ids in self.partitions.items():
            if series_id in ids:
                return name
        return self.name

    def groups(self) -> dict[str, list[Series]]:
        """Series grouped by training unit: one group per series, or per partition."""
        if self.split.granularity == "series":
            return {s.id: [s] for s in self.series}
        out: dict[str, list[Series]] = {}
        for s in self.series:
            out.setdefault(self.partition_of(s.id), []).append(s)
        return out


def _interpolate_missing(vals: FloatArray, nan: BoolArray) -> FloatArray:
    idx = np.arange(len(vals))
    good = ~nan
    out = vals.copy()
    out[nan] = np.interp(idx[nan], idx[good], vals[good])
    return out


class _LineMap:
    """Maps an element position to the row number reported in errors."""

    def __init__(self, first_row: int, lines: npt.ArrayLike | None) -> None:
        self.first_row = first_row
        self.lines = None if lines is None else np.asarray(lines)

    def __call__(self, pos: int) -> int:
        if self.lines is not None and pos < len(self.lines):
            return int(self.lines[pos])
        return self.first_row + pos


def _as_float(raw: npt.NDArray[Any], source: str, line_of: _LineMap, kind: str) -> FloatArray:
    """Convert to float64; name the first element that is not a number."""
    if raw.dtype == np.bool_:
        raise DataError("values must be numeric, got booleans", source=source)
    try:
        return raw.astype(np.float64)
    except (TypeError, ValueError):
        pass
    for i, item in enumerate(raw):
        try:
            float(item)
        except (TypeError, ValueError):
            raise DataError(
                f"value {show_value(item)} is not a number",
                source=source,
                row=line_of(i),
                row_kind=kind,
            ) from None
    raise DataError("values must be numeric", source=source)  # pragma: no cover


def _as_binary(
    raw: npt.NDArray[Any], source: str, line_of: _LineMap, kind: str = "line"
) -> BoolArray:
    if raw.dtype == np.bool_:
        return raw
    if np.issubdtype(raw.dtype, np.integer):  # fast path, no float copy
        bad_int = (raw != 0) & (raw != 1)
        if bad_int.any():
            i = int(np.flatnonzero(bad_int)[0])
            raise DataError(
                f"label {show_value(raw[i])} is not 0 or 1",
                source=source,
                row=line_of(i),
                row_kind=kind,
            )
        return np.asarray(raw == 1, dtype=np.bool_)
    try:
        num = raw.astype(np.float64)
    except (TypeError, ValueError):
        num = np.array([_float_or_nan(x) for x in raw], dtype=np.float64)
    bad = ~np.isin(num, (0.0, 1.0))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        what = (
            "missing label" if _is_missing(raw[i]) else f"label {show_value(raw[i])} is not 0 or 1"
        )
        raise DataError(
            what,
            source=source,
            row=line_of(i),
            row_kind=kind,
        )
    return num.astype(np.bool_)


class UnknownSeries(KeyError):
    """A series id that a dataset does not have. The message suggests the closest ids and where
    to see them all; ``str()`` is the message itself (a ``KeyError`` would quote it)."""

    def __init__(self, series_id: str, ids: Sequence[str], dataset: str) -> None:
        self.series_id = series_id
        self.suggestions = close_matches(series_id, ids)
        hint = (
            f"; did you mean {', '.join(map(repr, self.suggestions))}?" if self.suggestions else ""
        )
        self.message = (
            f"no series {series_id!r} in dataset {dataset!r}{hint} "
            f"(`argos datasets show {dataset} --series` lists its {len(ids)} ids)"
        )
        super().__init__(self.message)

    def __str__(self) -> str:
        return self.message


def close_matches(word: str, choices: Sequence[str], n: int = 3) -> list[str]:
    """Up to ``n`` of ``choices`` closest to ``word``, case-insensitively: ids that end in it
    after a ``/`` (``A1/real_1`` for ``real_1``), then by similarity (difflib), then ids that
    contain it."""
    key = word.lower()
    lowered = {c.lower(): c for c in choices}
    found = [c for c in choices if key and c.lower().endswith("/" + key)]
    found += [lowered[m] for m in difflib.get_close_matches(key, list(lowered), n, 0.6)]
    found += [c for c in choices if key and key in c.lower()]
    return list(dict.fromkeys(found))[:n]


def show_value(x: Any) -> str:
    """A cell as a user wrote it: ``2`` not ``np.float64(2.0)``, strings quoted."""
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float) and x.is_integer():
        return str(int(x))
    if isinstance(x, str):
        return repr(x)
    return str(x)


def _is_missing(x: Any) -> bool:
    if x is None:
        return True
    if isinstance(x, str):
        return x.strip() == ""
    try:
        return bool(np.isnan(x))
    except TypeError:
        return False


def _float_or_nan(x: Any) -> float:
    try:
        return float(x)
    except (TypeError, ValueError):
        return float("nan")


def make_increasing(timestamps: npt.ArrayLike) -> tuple[IntArray, int]:
    """Nudge timestamps forward so they strictly increase, keeping every row in file order.

    Each timestamp becomes ``max(t[i], out[i-1] + 1)``: a duplicate or a step backwards is moved
    to one second after its predecessor (and the rows after it follow while they would still
    collide). Returns the new timestamps and how many were changed. Meant for sources known to
    contain such rows (NAB); everything else treats them as errors.
    """
    ts = np.asarray(timestamps, dtype=np.int64)
    if len(ts) < 2:
        return ts.copy(), 0
    idx = np.arange(len(ts), dtype=np.int64)
    out = np.maximum.accumulate(ts - idx) + idx
    return out, int(np.count_nonzero(out != ts))
