"""Readers for the benchmark layouts: KPI, Yahoo S5, NAB, the UCR anomaly archive, generic folders.

Every loader returns a :class:`~argos.data.series.Dataset` and turns bad input into a
:class:`~argos.data.series.DataError` naming the file, the line (header = line 1) and the problem;
no pandas traceback reaches the user. The layouts, split conventions and the NaN /
irregular-sampling policy are documented in ``datasets/README.md``.

Reading is columnar: one ``pandas.read_csv`` per file (C engine, categorical ids for KPI), then
numpy; no per-row Python except in the error path, which re-reads a file to name the bad line. The
primitives every layout shares (columns by header spelling, numbers, timestamps) are in
:mod:`argos.data.reading`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from argos._types import FloatArray, IntArray
from argos.data.reading import (
    LABEL_OPTIONAL,
    LABEL_REQUIRED,
    TIMESTAMP,
    VALUE,
    Column,
    brief_error,
    file_stem,
    natural_key,
    numeric_column,
    read_csv_columns,
    reject_first,
    resolve_columns,
    timestamp_column,
    track_progress,
)
from argos.data.series import DataError, Dataset, Series, SplitSpec, make_increasing

__all__ = [
    "UCR_NAME",
    "YAHOO_PARTITIONS",
    "detect_layout",
    "load_generic",
    "load_kpi",
    "load_nab",
    "load_path",
    "load_ucr",
    "load_yahoo",
    "read_series_file",
]

YAHOO_PARTITIONS = ("A1", "A2", "A3", "A4")
"""Yahoo S5 partitions, read from the folders ``A1Benchmark`` .. ``A4Benchmark``."""

UCR_NAME = re.compile(
    r"^(?P<num>\d+)_UCR_Anomaly_(?P<name>.+)_(?P<train>\d+)_(?P<a>\d+)_(?P<b>\d+)$"
)
"""A UCR archive file stem: ``NNN_UCR_Anomaly_<name>_<trainEnd>_<anomStart>_<anomEnd>``."""

_KPI_ID = "KPI ID"


# ------------------------------------------------------------------------------------- generic


def read_series_file(
    path: Path, *, series_id: str | None = None, require_labels: bool = False
) -> Series:
    """Read one series from a CSV(.gz) or Parquet file with columns ``timestamp,value[,label]``.

    ``timestamps`` may be spelled ``timestamps`` and the label ``is_anomaly`` or ``anomaly``
    (Yahoo's headers); other columns are ignored. Timestamps are integer seconds or date strings
    (parsed to Unix seconds, UTC). Empty values are filled as described in ``datasets/README.md``.
    """
    wanted = (TIMESTAMP, VALUE, LABEL_REQUIRED if require_labels else LABEL_OPTIONAL)
    sid = series_id or file_stem(path)
    if path.name.lower().endswith((".parquet", ".pq")):
        return _read_parquet_series(path, sid, wanted)
    df, cols = read_csv_columns(path, wanted)
    source = str(path)
    ts = timestamp_column(df[cols["timestamp"]], source, first_line=2)
    labels = df[cols["label"]].to_numpy() if "label" in cols else None
    return Series.create(sid, ts, df[cols["value"]].to_numpy(), labels, source=source, first_row=2)


def _read_parquet_series(path: Path, sid: str, wanted: Sequence[Column]) -> Series:
    source = str(path)
    try:
        df = pd.read_parquet(path)
    except ImportError:
        raise DataError(
            "reading Parquet needs pyarrow: pip install 'argos-rules[parquet]'", source=source
        ) from None
    except Exception as exc:  # pyarrow raises many unrelated types for a broken file
        raise DataError(f"cannot read Parquet file ({brief_error(exc)})", source=source) from None
    cols = resolve_columns(list(df.columns), wanted, source)
    if len(df) == 0:
        raise DataError("no data rows", source=source)
    values = numeric_column(df[cols["value"]], "value", source, first_line=1)
    labels = (
        numeric_column(df[cols["label"]], "label", source, first_line=1)
        if "label" in cols
        else None
    )
    ts = timestamp_column(df[cols["timestamp"]], source, first_line=1)
    return Series.create(sid, ts, values, labels, source=source, first_row=1, row_kind="row")


def _read_file_or_folder(
    path: Path,
    *,
    accept: Callable[[Path], bool],
    none_accepted: str,
    read: Callable[[Path], Series],
    progress: bool,
) -> tuple[str, list[Series]]:
    """The dataset name and series of ``path``: one file (named by its stem), or the files of a
    folder that ``accept`` takes, in natural order (named by the folder; ``none_accepted`` is the
    error when there are none)."""
    if path.is_file():
        files, name = [path], file_stem(path)
    elif path.is_dir():
        files = sorted((p for p in path.iterdir() if accept(p)), key=natural_key)
        name = path.name
        if not files:
            raise DataError(none_accepted, source=str(path))
    else:
        raise DataError("no such file or folder", source=str(path))
    return name, [read(f) for f in track_progress(files, f"reading {name}", progress)]


def _is_generic_file(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith((".csv", ".csv.gz", ".parquet", ".pq"))


def load_generic(
    path: Path, *, train_fraction: float | None = None, progress: bool = False
) -> Dataset:
    """A folder of CSV/Parquet files (one series per file, id = file name), or a single such file.

    Split chronologically by ``train_fraction`` (default 0.7), one rule set per series.
    """
    name, series = _read_file_or_folder(
        path,
        accept=_is_generic_file,
        none_accepted="no .csv, .csv.gz or .parquet files in folder",
        read=read_series_file,
        progress=progress,
    )
    return Dataset(
        name=name,
        series=series,
        split=SplitSpec(train_fraction=0.7 if train_fraction is None else train_fraction),
        meta={"layout": "generic", "path": str(path)},
    )


# ----------------------------------------------------------------------------------------- KPI


_KPI_COLUMNS = (
    TIMESTAMP,
    VALUE,
    Column("label", ("label",)),
    Column("kpi", (_KPI_ID.lower(), "kpi_id", "kpi"), numeric=False),
)


def _find_file(root: Path, stem: str, suffixes: Sequence[str]) -> Path:
    for suffix in suffixes:
        candidate = root / f"{stem}{suffix}"
        if candidate.is_file():
            return candidate
    names = ", ".join(f"{stem}{s}" for s in suffixes)
    raise DataError(f"KPI file missing: expected one of {names}", source=str(root))


@dataclass
class _KpiPart:
    """One KPI file as flat arrays; rows of a KPI are found through ``codes``."""

    source: str
    ts: npt.NDArray[Any]
    values: npt.NDArray[Any]
    labels: npt.NDArray[Any]
    ids: list[str]
    codes: IntArray
    row_kind: str
    first_line: int

    def rows_by_id(self) -> dict[str, IntArray]:
        order = np.argsort(self.codes, kind="stable")
        counts = np.bincount(self.codes, minlength=len(self.ids))
        bounds = np.concatenate(([0], np.cumsum(counts)))
        return {
            kid: order[bounds[i] : bounds[i + 1]] for i, kid in enumerate(self.ids) if counts[i] > 0
        }


def _read_kpi_part(path: Path) -> _KpiPart:
    source = str(path)
    if path.suffix.lower() in (".hdf", ".h5"):
        df, cols = _read_kpi_hdf(path)
        row_kind, first_line = "row", 1
    else:
        df, cols = read_csv_columns(path, _KPI_COLUMNS, categorical=("kpi",))
        row_kind, first_line = "line", 2
    ts = timestamp_column(df[cols["timestamp"]], source, first_line=first_line)
    kpi = df[cols["kpi"]]
    reject_first(kpi.isna().to_numpy(), kpi, "missing KPI ID", source, first_line, row_kind)
    cat = kpi.astype("category").cat
    return _KpiPart(
        source=source,
        ts=ts,
        values=numeric_column(df[cols["value"]], "value", source, first_line=first_line),
        labels=numeric_column(df[cols["label"]], "label", source, first_line=first_line),
        ids=[_text(c) for c in cat.categories],
        codes=cat.codes.to_numpy().astype(np.int64),
        row_kind=row_kind,
        first_line=first_line,
    )


def _text(x: Any) -> str:
    """An id as text; HDF files written by Python 2 era pandas may hold bytes."""
    return x.decode("utf-8", errors="replace") if isinstance(x, bytes) else str(x)


def _read_kpi_hdf(path: Path) -> tuple[pd.DataFrame, dict[str, str]]:
    source = str(path)
    try:
        import tables  # noqa: F401
    except ImportError:
        raise DataError(
            "reading the KPI .hdf file needs PyTables: pip install 'argos-rules[hdf]' "
            "(or use the CSV files)",
            source=source,
        ) from None
    try:
        obj = pd.read_hdf(path)
    except Exception as exc:  # PyTables raises many types for a broken file
        raise DataError(f"cannot read HDF file ({brief_error(exc)})", source=source) from None
    if not isinstance(obj, pd.DataFrame):
        raise DataError("HDF file does not hold a table", source=source)
    cols = resolve_columns(list(obj.columns), _KPI_COLUMNS, source)
    if len(obj) == 0:
        raise DataError("no data rows", source=source)
    return obj.reset_index(drop=True), cols


def _kpi_series(part: _KpiPart, kid: str, rows: IntArray) -> Series:
    return Series.create(
        kid,
        part.ts[rows],
        part.values[rows],
        part.labels[rows],
        source=part.source,
        lines=rows + part.first_line,
        row_kind=part.row_kind,
    )


def load_kpi(root: Path, *, progress: bool = False) -> Dataset:
    """The AIOps 2018 KPI set: one series per KPI ID, train then test, official split.

    Reads ``phase2_train.csv[.gz]`` (or ``.hdf``) and ``phase2_ground_truth.csv[.gz]`` (or
    ``.hdf``, as officially released) from ``root``. Each series carries
    ``meta["test_start"]`` = number of its train points. One rule set per KPI.
    """
    if not root.is_dir():
        raise DataError("KPI folder not found", source=str(root))
    suffixes = (".csv", ".csv.gz", ".hdf", ".h5")
    train_path = _find_file(root, "phase2_train", suffixes)
    test_path = _find_file(root, "phase2_ground_truth", suffixes)
    parts = [
        _read_kpi_part(p) for p in track_progress([train_path, test_path], "reading KPI", progress)
    ]
    train, test = parts
    train_rows, test_rows = train.rows_by_id(), test.rows_by_id()
    only_train = sorted(set(train_rows) - set(test_rows))
    only_test = sorted(set(test_rows) - set(train_rows))
    if only_train or only_test:
        raise DataError(
            f"KPI IDs differ between train and test files: only in train {only_train[:3]}, "
            f"only in test {only_test[:3]}",
            source=str(root),
        )
    series: list[Series] = []
    for kid in sorted(train_rows, key=lambda k: int(train_rows[k][0])):
        tr = _kpi_series(train, kid, train_rows[kid])
        te = _kpi_series(test, kid, test_rows[kid])
        if te.timestamps[0] <= tr.timestamps[-1]:
            first = int(test_rows[kid][0]) + test.first_line
            raise DataError(
                f"KPI {kid}: first test timestamp {int(te.timestamps[0])} is not after the last "
                f"train timestamp {int(tr.timestamps[-1])}",
                source=test.source,
                row=first,
                row_kind=test.row_kind,
            )
        assert tr.labels is not None and te.labels is not None
        meta: dict[str, Any] = {"test_start": len(tr), "layout": "kpi"}
        filled = int(tr.meta.get("filled", 0)) + int(te.meta.get("filled", 0))
        if filled:
            meta["filled"] = filled
        series.append(
            Series(
                id=kid,
                timestamps=np.concatenate((tr.timestamps, te.timestamps)),
                values=np.concatenate((tr.values, te.values)),
                labels=np.concatenate((tr.labels, te.labels)),
                meta=meta,
            )
        )
    return Dataset(
        name="kpi",
        series=series,
        split=SplitSpec(granularity="series"),
        meta={"layout": "kpi", "path": str(root), "files": [train.source, test.source]},
    )


# --------------------------------------------------------------------------------------- Yahoo


def _yahoo_files(root: Path, partitions: Sequence[str]) -> list[tuple[str, Path]]:
    """(partition, file) of every Yahoo S5 series, in load order."""
    if not root.is_dir():
        raise DataError("Yahoo S5 folder not found", source=str(root))
    files: list[tuple[str, Path]] = []
    for part in partitions:
        if part not in YAHOO_PARTITIONS:
            raise DataError(f"unknown Yahoo partition {part!r}; expected one of A1..A4")
        folder = root / f"{part}Benchmark"
        if not folder.is_dir():
            raise DataError(f"partition folder {folder.name} not found", source=str(root))
        found = [
            p
            for p in folder.iterdir()
            if p.is_file() and p.suffix.lower() == ".csv" and not p.stem.lower().endswith("_all")
        ]
        if not found:
            raise DataError("no .csv files in partition folder", source=str(folder))
        files.extend((part, p) for p in sorted(found, key=natural_key))
    return files


def yahoo_series_ids(root: Path, partitions: Sequence[str] = YAHOO_PARTITIONS) -> list[str]:
    """The series ids :func:`load_yahoo` gives, from the file names alone."""
    return [f"{part}/{path.stem}" for part, path in _yahoo_files(root, partitions)]


def load_yahoo(
    root: Path,
    *,
    partitions: Sequence[str] = YAHOO_PARTITIONS,
    train_fraction: float | None = None,
    name: str = "yahoo",
    progress: bool = False,
) -> Dataset:
    """Yahoo Webscope S5 from ``root/A1Benchmark`` .. ``root/A4Benchmark``.

    Both headers are read (``timestamp,value,is_anomaly`` and ``timestamps,value,anomaly``); extra
    columns and the ``*_all.csv`` summary files of the original release are ignored. Series ids are
    ``"A1/real_1"``, ``"A3/A3Benchmark-TS1"``, ... The split is 70/30 except A2, which the published
    protocol splits 50/50: its series carry ``meta["train_fraction"] = 0.5`` unless an explicit
    ``train_fraction`` is given, which then applies to every partition. One rule set per partition.
    """
    files = _yahoo_files(root, partitions)
    series: list[Series] = []
    groups: dict[str, list[str]] = {p: [] for p in partitions}
    for part, path in track_progress(files, f"reading {name}", progress):
        s = read_series_file(path, series_id=f"{part}/{path.stem}", require_labels=True)
        meta = dict(s.meta, partition=part, layout="yahoo")
        if part == "A2" and train_fraction is None:
            meta["train_fraction"] = 0.5
        series.append(Series(s.id, s.timestamps, s.values, s.labels, meta))
        groups[part].append(s.id)
    return Dataset(
        name=name,
        series=series,
        split=SplitSpec(
            train_fraction=0.7 if train_fraction is None else train_fraction,
            granularity="partition",
        ),
        partitions=groups,
        meta={"layout": "yahoo", "path": str(root)},
    )


# ----------------------------------------------------------------------------------------- NAB


def _nab_windows(path: Path) -> dict[str, list[tuple[int, int]]]:
    source = str(path)
    if not path.is_file():
        raise DataError("NAB label file not found", source=source)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"not valid JSON ({exc})", source=source) from None
    if not isinstance(raw, dict):
        raise DataError("expected an object mapping file names to windows", source=source)
    out: dict[str, list[tuple[int, int]]] = {}
    for key, wins in raw.items():
        if not isinstance(wins, list):
            raise DataError(f"{key}: windows must be a list", source=source)
        pairs: list[tuple[int, int]] = []
        for w in wins:
            if not (isinstance(w, list) and len(w) == 2):
                raise DataError(f"{key}: window {w!r} is not a [start, end] pair", source=source)
            try:
                a, b = (pd.Timestamp(x) for x in w)
            except (ValueError, TypeError):
                raise DataError(
                    f"{key}: window {w!r} has an unreadable date", source=source
                ) from None
            a = a.tz_convert("UTC") if a.tzinfo else a.tz_localize("UTC")
            b = b.tz_convert("UTC") if b.tzinfo else b.tz_localize("UTC")
            pairs.append((int(a.value // 1_000_000_000), int(b.value // 1_000_000_000)))
        out[key.replace("\\", "/")] = pairs
    return out


def _nab_files(root: Path) -> list[Path]:
    """The NAB data files ``root/data/<category>/<name>.csv``, in load order."""
    data = root / "data"
    if not data.is_dir():
        raise DataError("NAB data folder not found", source=str(data))
    files = sorted(
        (p for p in data.glob("*/*.csv") if p.is_file()),
        key=lambda p: (p.parent.name.lower(), natural_key(p)),
    )
    if not files:
        raise DataError("no .csv files in data/<category>/", source=str(data))
    return files


def nab_series_ids(root: Path) -> list[str]:
    """The series ids :func:`load_nab` gives, from the file names alone."""
    return [f"{p.parent.name}/{p.stem}" for p in _nab_files(root)]


def kpi_series_ids(root: Path) -> list[str] | None:
    """The KPI IDs of ``phase2_train.csv[.gz]``, reading only that column, in :func:`load_kpi`'s
    order; None for the HDF release (its ids cannot be read apart from the data)."""
    path = _find_file(root, "phase2_train", (".csv", ".csv.gz", ".hdf", ".h5"))
    if path.suffix.lower() in (".hdf", ".h5"):
        return None
    try:
        header = pd.read_csv(path, nrows=0)
        column = resolve_columns(list(header.columns), _KPI_COLUMNS, str(path))["kpi"]
        ids = pd.read_csv(path, usecols=[column], dtype="category")[column]
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, OSError) as exc:
        raise DataError(f"cannot read KPI IDs ({brief_error(exc)})", source=str(path)) from None
    return [_text(x) for x in pd.unique(ids.dropna())]


def load_nab(root: Path, *, progress: bool = False) -> Dataset:
    """The Numenta Anomaly Benchmark: ``root/data/<category>/<name>.csv`` + window labels.

    A point is anomalous when its timestamp lies inside any window of
    ``labels/combined_windows.json`` (both ends inclusive). Dates are read as UTC. The original
    files contain a few duplicate or backwards timestamps; every row is kept in file order and such
    timestamps are moved to one second after their predecessor (:func:`make_increasing`; labels
    use the original timestamps), counted in ``meta["retimed"]``. Partitions are the categories.
    """
    files = _nab_files(root)
    windows = _nab_windows(root / "labels" / "combined_windows.json")
    series: list[Series] = []
    groups: dict[str, list[str]] = {}
    for path in track_progress(files, "reading NAB", progress):
        key = f"{path.parent.name}/{path.name}"
        if key not in windows:
            raise DataError(f"no entry for {key} in combined_windows.json", source=str(path))
        df, cols = read_csv_columns(path, (TIMESTAMP, VALUE))
        ts = timestamp_column(df[cols["timestamp"]], str(path), first_line=2).astype(np.int64)
        labels = np.zeros(len(ts), dtype=np.bool_)
        for a, b in windows[key]:
            labels |= (ts >= a) & (ts <= b)
        fixed, n_fixed = make_increasing(ts)
        meta: dict[str, Any] = {"partition": path.parent.name, "layout": "nab"}
        if n_fixed:
            meta["retimed"] = n_fixed
        s = Series.create(
            f"{path.parent.name}/{path.stem}",
            fixed,
            df[cols["value"]].to_numpy(),
            labels,
            meta,
            source=str(path),
            first_row=2,
        )
        series.append(s)
        groups.setdefault(path.parent.name, []).append(s.id)
    return Dataset(
        name="nab",
        series=series,
        split=SplitSpec(granularity="series"),
        partitions=groups,
        meta={"layout": "nab", "path": str(root), "windows": sum(len(w) for w in windows.values())},
    )


# ----------------------------------------------------------------------------------------- UCR


def _read_ucr_values(path: Path) -> tuple[FloatArray, IntArray]:
    """Values of a UCR file (one per line or whitespace separated) and each value's line number."""
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise DataError("not a text file (cannot decode as UTF-8)", source=source) from None
    lines = text.splitlines()
    counts = np.fromiter((len(line.split()) for line in lines), dtype=np.int64, count=len(lines))
    if counts.sum() == 0:
        raise DataError("file is empty", source=source)
    try:
        values = np.array(text.split(), dtype=np.float64)
    except ValueError:
        for lineno, line in enumerate(lines, start=1):
            for tok in line.split():
                try:
                    float(tok)
                except ValueError:
                    raise DataError(
                        f"value {tok!r} is not a number", source=source, row=lineno
                    ) from None
        raise  # pragma: no cover
    line_numbers = np.repeat(np.arange(1, len(lines) + 1, dtype=np.int64), counts)
    return values, line_numbers


def _read_ucr_file(path: Path) -> Series:
    source = str(path)
    m = UCR_NAME.match(file_stem(path))
    if m is None:
        raise DataError(
            "file name does not follow NNN_UCR_Anomaly_<name>_<trainEnd>_<anomStart>_<anomEnd>.txt",
            source=source,
        )
    values, line_numbers = _read_ucr_values(path)
    n = len(values)
    train_end, a, b = int(m["train"]), int(m["a"]), int(m["b"])
    if not 0 < train_end < n:
        raise DataError(
            f"trainEnd {train_end} from the file name is outside 1..{n - 1}", source=source
        )
    if not 1 <= a <= b <= n:
        raise DataError(
            f"anomaly {a}..{b} from the file name is not a range inside 1..{n}", source=source
        )
    labels = np.zeros(n, dtype=np.bool_)
    labels[a - 1 : b] = True
    meta = {"test_start": train_end, "layout": "ucr", "name": m["name"]}
    return Series.create(
        f"{m['num']}_{m['name']}",
        np.arange(n, dtype=np.int64),
        values,
        labels,
        meta,
        source=source,
        lines=line_numbers,
    )


def load_ucr(path: Path, *, progress: bool = False) -> Dataset:
    """A UCR anomaly archive file, or a folder of them.

    The file name carries the split and the single anomaly: ``trainEnd`` points (1-based) are
    train, so ``meta["test_start"] = trainEnd``; points ``anomStart..anomEnd`` (1-based, inclusive)
    are labeled anomalous. Timestamps are the 0-based index. One rule set per series.
    """
    name, series = _read_file_or_folder(
        path,
        accept=lambda p: p.suffix.lower() == ".txt" and UCR_NAME.match(p.stem) is not None,
        none_accepted="no UCR anomaly archive files (NNN_UCR_Anomaly_*.txt)",
        read=_read_ucr_file,
        progress=progress,
    )
    return Dataset(
        name=name,
        series=series,
        split=SplitSpec(granularity="series"),
        meta={"layout": "ucr", "path": str(path)},
    )


# ------------------------------------------------------------------------------------- by path


def detect_layout(path: Path) -> str:
    """Which loader reads ``path``: ``kpi``, ``yahoo``, ``nab``, ``ucr`` or ``generic``."""
    if path.is_file():
        return "ucr" if path.suffix.lower() == ".txt" else "generic"
    if not path.is_dir():
        raise DataError("no such file or folder", source=str(path))
    if any((path / f"phase2_train{s}").is_file() for s in (".csv", ".csv.gz", ".hdf", ".h5")):
        return "kpi"
    if any((path / f"{p}Benchmark").is_dir() for p in YAHOO_PARTITIONS):
        return "yahoo"
    if (path / "data").is_dir() and (path / "labels" / "combined_windows.json").is_file():
        return "nab"
    if any(p.suffix.lower() == ".txt" and UCR_NAME.match(p.stem) for p in path.iterdir()):
        return "ucr"
    return "generic"


def load_path(
    path: Path, *, train_fraction: float | None = None, progress: bool = False
) -> Dataset:
    """Load whatever layout ``path`` holds (see :func:`detect_layout`)."""
    layout = detect_layout(path)
    if layout == "kpi":
        return load_kpi(path, progress=progress)
    if layout == "yahoo":
        present = tuple(p for p in YAHOO_PARTITIONS if (path / f"{p}Benchmark").is_dir())
        return load_yahoo(
            path, partitions=present, train_fraction=train_fraction, progress=progress
        )
    if layout == "nab":
        return _with_fraction(load_nab(path, progress=progress), train_fraction)
    if layout == "ucr":
        return load_ucr(path, progress=progress)
    return load_generic(path, train_fraction=train_fraction, progress=progress)


def _with_fraction(ds: Dataset, train_fraction: float | None) -> Dataset:
    if train_fraction is None:
        return ds
    split = SplitSpec(train_fraction, ds.split.validation_fraction, ds.split.granularity)
    return Dataset(ds.name, ds.series, split, ds.partitions, ds.meta)
