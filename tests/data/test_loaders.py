"""Loaders: tiny hand-made fixtures for every layout and every kind of bad file, then the real data.

Counts for the real copies are the ones in ``../shared/datasets/README.md``.
"""

from __future__ import annotations

import gzip
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from argos.data import loaders
from argos.data.series import DataError, Dataset

# ----------------------------------------------------------------------------- malformed files


@pytest.mark.parametrize(
    ("name", "line", "problem"),
    [
        ("empty.csv", None, "file is empty"),
        ("header_only.csv", None, "no data rows after the header"),
        ("missing_column.csv", 1, "missing column 'timestamp' or 'timestamps'"),
        ("non_numeric.csv", 4, "value 'abc' is not a number"),
        ("bad_label.csv", 4, "label 2 is not 0 or 1"),
        ("non_monotonic.csv", 5, "non-increasing timestamp 25 (previous row has 30)"),
        ("duplicate_ts.csv", 4, "duplicate timestamp 20"),
        ("bad_date.csv", 4, "timestamp 'yesterday' is neither integer seconds nor a date"),
        ("ragged.csv", None, "Expected 2 fields in line 3, saw 3"),
        ("infinite.csv", 3, "infinite value"),
        ("all_missing.csv", None, "every value is missing"),
        ("missing_timestamp.csv", 3, "missing timestamp"),
        ("fractional_ts.csv", 2, "timestamp 1.5 is not a whole number of seconds"),
        ("003_UCR_Anomaly_badvalue_2_3_3.txt", 3, "value 'oops' is not a number"),
        ("004_UCR_Anomaly_outofrange_2_3_9.txt", None, "anomaly 3..9 from the file name"),
        ("not_a_ucr_name.txt", None, "file name does not follow NNN_UCR_Anomaly_"),
    ],
)
def test_malformed_file_errors_name_file_line_and_problem(
    fixtures_dir: Path, name: str, line: int | None, problem: str
) -> None:
    path = fixtures_dir / "malformed" / name
    with pytest.raises(DataError) as err:
        loaders.load_path(path)
    message = str(err.value)
    assert message.startswith(str(path))
    assert problem in message
    assert err.value.row == line
    if line is not None:
        assert f"{path}, line {line}: " in message


def test_missing_column_lists_the_columns_found(fixtures_dir: Path) -> None:
    with pytest.raises(DataError, match=r"columns found: 'time', 'value'"):
        loaders.read_series_file(fixtures_dir / "malformed" / "missing_column.csv")


def test_labels_required_for_yahoo_files(tmp_path: Path) -> None:
    (tmp_path / "A1Benchmark").mkdir()
    (tmp_path / "A1Benchmark" / "real_1.csv").write_text("timestamp,value\n1,2\n")
    with pytest.raises(DataError, match=r"real_1\.csv, line 1: missing column 'label'"):
        loaders.load_yahoo(tmp_path, partitions=["A1"])


def test_missing_label_and_bom_header(tmp_path: Path) -> None:
    f = tmp_path / "bom.csv"
    f.write_bytes("\ufefftimestamp,Value , LABEL\n1,2,0\n2,3,1\n".encode())
    s = loaders.read_series_file(f)  # header spelling: BOM, case and spaces ignored
    assert s.labels is not None and s.labels.tolist() == [False, True]
    f.write_text("timestamp,value,label\n1,2,0\n2,3,\n")
    with pytest.raises(DataError, match=r"bom\.csv, line 3: missing label$"):
        loaders.read_series_file(f)


def test_not_utf8_and_missing_files(tmp_path: Path) -> None:
    bad = tmp_path / "bin.csv"
    bad.write_bytes(b"timestamp,value\n1,\xff\xfe\n")
    with pytest.raises(DataError, match="cannot decode as UTF-8"):
        loaders.read_series_file(bad)
    with pytest.raises(DataError, match="file not found"):
        loaders.read_series_file(tmp_path / "nope.csv")
    with pytest.raises(DataError, match="no such file or folder"):
        loaders.load_path(tmp_path / "nope")
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(DataError, match=r"no \.csv, \.csv\.gz or \.parquet files"):
        loaders.load_generic(tmp_path / "empty_dir")


# ------------------------------------------------------------------------------------- generic


def test_generic_folder(fixtures_dir: Path) -> None:
    ds = loaders.load_generic(fixtures_dir / "generic")
    assert ds.name == "generic" and [s.id for s in ds] == ["cpu", "latency"]
    assert ds.split.train_fraction == 0.7 and ds.split.granularity == "series"
    cpu, latency = ds.series
    # NaN policy: the empty value on line 4 is interpolated and counted
    assert cpu.values[:4].tolist() == [10.0, 11.0, 13.0, 15.0]
    assert cpu.meta["filled"] == 1
    assert cpu.labels is not None and np.flatnonzero(cpu.labels).tolist() == [3]
    # irregular sampling kept: one 120 s gap among 60 s steps
    assert cpu.interval == 60 and int(np.diff(cpu.timestamps).max()) == 120
    # dates are UTC: 2024-03-01 00:00:00 = 1709251200; extra column "host" ignored
    assert latency.timestamps[0] == 1709251200 and latency.interval == 300
    assert latency.labels is None and latency.values[3] == 350.0


def test_generic_train_fraction_and_single_file(fixtures_dir: Path) -> None:
    ds = loaders.load_path(fixtures_dir / "generic" / "cpu.csv", train_fraction=0.5)
    assert ds.name == "cpu" and len(ds) == 1 and ds.split.train_fraction == 0.5
    assert ds.split.bounds(ds.series[0]) == (4, 5)


def test_dates_with_offsets_become_utc(tmp_path: Path) -> None:
    f = tmp_path / "tz.csv"
    f.write_text("timestamp,value\n2024-03-01T01:00:00+01:00,1\n2024-03-01T00:05:00Z,2\n")
    s = loaders.read_series_file(f)
    assert s.timestamps.tolist() == [1709251200, 1709251500]


def test_subsecond_dates_are_rejected(tmp_path: Path) -> None:
    f = tmp_path / "ms.csv"
    f.write_text("timestamp,value\n2024-03-01 00:00:00.000,1\n2024-03-01 00:00:00.500,2\n")
    with pytest.raises(DataError, match=r"line 3: timestamp '2024-03-01 00:00:00.500' has frac"):
        loaders.read_series_file(f)


def test_gzip_csv(tmp_path: Path, fixtures_dir: Path) -> None:
    with gzip.open(tmp_path / "cpu.csv.gz", "wb") as out:
        out.write((fixtures_dir / "generic" / "cpu.csv").read_bytes())
    ds = loaders.load_generic(tmp_path)
    assert [s.id for s in ds] == ["cpu"] and len(ds.series[0]) == 10


def test_parquet_round_trip(tmp_path: Path) -> None:
    pytest.importorskip("pyarrow", reason="Parquet support needs pyarrow (dev extra)")
    frame = pd.DataFrame(
        {
            "timestamp": pd.to_datetime(
                ["2024-01-01 00:00", "2024-01-01 00:01", "2024-01-01 00:03"]
            ),
            "value": [1.0, np.nan, 3.0],
            "label": [0, 1, 0],
        }
    )
    frame.to_parquet(tmp_path / "m.parquet")
    s = loaders.load_generic(tmp_path).series[0]
    assert s.id == "m" and s.timestamps.tolist() == [1704067200, 1704067260, 1704067380]
    assert s.values.tolist() == [1.0, 2.0, 3.0] and s.meta["filled"] == 1
    assert s.labels is not None and s.labels.tolist() == [False, True, False]
    frame.assign(label=[0, 2, 0]).to_parquet(tmp_path / "m.parquet")
    with pytest.raises(DataError, match=r"m\.parquet, row 2: label 2 is not 0 or 1"):
        loaders.load_generic(tmp_path)


def test_parquet_without_pyarrow_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "x.parquet").write_bytes(b"PAR1")

    def no_engine(*args: object, **kwargs: object) -> None:
        raise ImportError("Unable to find a usable engine")

    monkeypatch.setattr(pd, "read_parquet", no_engine)
    with pytest.raises(DataError, match="needs pyarrow"):
        loaders.load_generic(tmp_path)


# ----------------------------------------------------------------------------------------- UCR


def test_ucr_folder(fixtures_dir: Path) -> None:
    ds = loaders.load_ucr(fixtures_dir / "ucr")  # README.txt is not a UCR name: skipped
    assert [s.id for s in ds] == ["001_tiny", "002_two_words"]
    tiny, two = ds.series
    # anomaly 14..16 is 1-based inclusive -> indices 13, 14, 15; trainEnd 10 -> test_start 10
    assert tiny.labels is not None and np.flatnonzero(tiny.labels).tolist() == [13, 14, 15]
    assert tiny.meta["test_start"] == 10 and tiny.timestamps.tolist() == list(range(20))
    # whitespace-separated values over several lines; a name with an underscore
    assert len(two) == 12 and two.meta["name"] == "two_words"
    assert two.labels is not None and np.flatnonzero(two.labels).tolist() == [10]
    assert two.values[10] == 50.0
    assert ds.split.bounds(tiny) == (8, 10)


def test_ucr_error_line_with_several_values_per_line(tmp_path: Path) -> None:
    f = tmp_path / "005_UCR_Anomaly_x_2_3_3.txt"
    f.write_text("1 2 3\n4 inf 6\n")
    with pytest.raises(DataError, match=r"line 2: infinite value"):
        loaders.load_ucr(f)
    f.write_text("")
    with pytest.raises(DataError, match="file is empty"):
        loaders.load_ucr(f)
    g = tmp_path / "006_UCR_Anomaly_x_9_1_1.txt"
    g.write_text("1\n2\n3\n")
    with pytest.raises(DataError, match=r"trainEnd 9 from the file name is outside 1\.\.2"):
        loaders.load_ucr(g)


def test_detect_layout(fixtures_dir: Path) -> None:
    assert loaders.detect_layout(fixtures_dir / "kpi") == "kpi"
    assert loaders.detect_layout(fixtures_dir / "yahoo_s5") == "yahoo"
    assert loaders.detect_layout(fixtures_dir / "nab") == "nab"
    assert loaders.detect_layout(fixtures_dir / "ucr") == "ucr"
    assert loaders.detect_layout(fixtures_dir / "generic") == "generic"
    assert loaders.detect_layout(fixtures_dir / "generic" / "cpu.csv") == "generic"


# ----------------------------------------------------------------------------------------- KPI


def test_kpi_fixture_concatenates_train_and_test(fixtures_dir: Path) -> None:
    ds = loaders.load_kpi(fixtures_dir / "kpi")
    assert [s.id for s in ds] == ["kpi-a", "kpi-b"]
    a, b = ds.series
    assert a.timestamps.tolist() == [1000, 1060, 1120, 1180, 1240]
    assert a.values.tolist() == [1.0, 1.1, 9.0, 1.2, 1.3]
    assert a.labels is not None and a.labels.tolist() == [False, False, True, False, False]
    assert a.meta["test_start"] == 3 and b.meta["test_start"] == 3 and len(b) == 4
    assert a.interval == 60 and b.interval == 300
    assert ds.split.granularity == "series"
    assert ds.split.bounds(a) == (3, 3)  # validation_fraction 0.2 of 3 points floors to 0


def _copy_kpi(fixtures_dir: Path, tmp_path: Path) -> Path:
    target = tmp_path / "kpi"
    shutil.copytree(fixtures_dir / "kpi", target)
    return target


def test_kpi_error_names_the_line_in_the_interleaved_file(
    fixtures_dir: Path, tmp_path: Path
) -> None:
    root = _copy_kpi(fixtures_dir, tmp_path)
    train = root / "phase2_train.csv"
    lines = train.read_text().splitlines()
    lines[5] = "1120,9.0,7,kpi-a"  # line 6 of the file, third row of kpi-a
    train.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"phase2_train\.csv, line 6: label 7 is not 0 or 1"):
        loaders.load_kpi(root)


def test_kpi_overlap_and_id_mismatch(fixtures_dir: Path, tmp_path: Path) -> None:
    root = _copy_kpi(fixtures_dir, tmp_path)
    gt = root / "phase2_ground_truth.csv"
    original = gt.read_text()
    gt.write_text(original.replace("1180,1.2,0,kpi-a", "1100,1.2,0,kpi-a"))
    with pytest.raises(DataError, match=r"line 2: KPI kpi-a: first test timestamp 1100"):
        loaders.load_kpi(root)
    gt.write_text(original.replace("1900,5.1,0,kpi-b", "1900,5.1,0,kpi-c"))
    with pytest.raises(DataError, match=r"only in train \['kpi-b'\], only in test \['kpi-c'\]"):
        loaders.load_kpi(root)
    gt.unlink()
    with pytest.raises(DataError, match=r"expected one of phase2_ground_truth\.csv"):
        loaders.load_kpi(root)


def test_kpi_gz_and_hdf(fixtures_dir: Path, tmp_path: Path) -> None:
    pytest.importorskip("tables", reason="HDF support needs PyTables (dev extra)")
    root = tmp_path / "kpi"
    root.mkdir()
    with gzip.open(root / "phase2_train.csv.gz", "wb") as out:
        out.write((fixtures_dir / "kpi" / "phase2_train.csv").read_bytes())
    pd.read_csv(fixtures_dir / "kpi" / "phase2_ground_truth.csv").to_hdf(
        root / "phase2_ground_truth.hdf", key="data"
    )
    ds = loaders.load_kpi(root)
    reference = loaders.load_kpi(fixtures_dir / "kpi")
    for got, want in zip(ds, reference, strict=True):
        assert got.id == want.id
        assert np.array_equal(got.timestamps, want.timestamps)
        assert np.array_equal(got.values, want.values)
        assert got.meta["test_start"] == want.meta["test_start"]


def test_kpi_hdf_with_bytes_ids_and_datetimes(
    fixtures_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("tables", reason="HDF support needs PyTables (dev extra)")
    root = _copy_kpi(fixtures_dir, tmp_path)
    gt = pd.read_csv(root / "phase2_ground_truth.csv")
    (root / "phase2_ground_truth.csv").unlink()
    (root / "phase2_ground_truth.hdf").write_bytes(b"")
    old_style = gt.assign(
        **{
            "KPI ID": [k.encode() for k in gt["KPI ID"]],
            "timestamp": pd.to_datetime(gt["timestamp"], unit="s"),
        }
    )
    monkeypatch.setattr(pd, "read_hdf", lambda *a, **k: old_style)
    ds = loaders.load_kpi(root)
    assert [s.id for s in ds] == ["kpi-a", "kpi-b"]
    assert ds.get("kpi-a").timestamps.tolist() == [1000, 1060, 1120, 1180, 1240]


def test_load_with_progress_bars(fixtures_dir: Path) -> None:
    assert len(loaders.load_path(fixtures_dir / "yahoo_s5", progress=True)) == 5
    assert len(loaders.load_kpi(fixtures_dir / "kpi", progress=True)) == 2


def test_kpi_hdf_without_pytables(
    fixtures_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "kpi"
    root.mkdir()
    shutil.copy(fixtures_dir / "kpi" / "phase2_train.csv", root)
    (root / "phase2_ground_truth.hdf").write_bytes(b"not really hdf")
    monkeypatch.setitem(sys.modules, "tables", None)  # makes `import tables` fail
    with pytest.raises(DataError, match=r"needs PyTables: pip install 'argos-rules\[hdf\]'"):
        loaders.load_kpi(root)


# --------------------------------------------------------------------------------------- Yahoo


def test_yahoo_fixture_both_headers_extra_columns_and_a2_split(fixtures_dir: Path) -> None:
    ds = loaders.load_yahoo(fixtures_dir / "yahoo_s5")
    assert [s.id for s in ds] == [
        "A1/real_1",
        "A1/real_2",
        "A2/synthetic_1",
        "A3/A3Benchmark-TS1",  # A3Benchmark_all.csv is skipped
        "A4/A4Benchmark-TS1",
    ]
    assert {k: len(v) for k, v in ds.partitions.items()} == {"A1": 2, "A2": 1, "A3": 1, "A4": 1}
    assert ds.split.granularity == "partition" and ds.split.train_fraction == 0.7
    a3 = ds.get("A3/A3Benchmark-TS1")
    assert a3.values.tolist() == [-363.2, 320.8, 900.0, 310.0]
    assert a3.labels is not None and a3.labels.tolist() == [False, False, True, False]
    a2 = ds.get("A2/synthetic_1")
    assert a2.meta["train_fraction"] == 0.5 and ds.split.bounds(a2)[1] == 2
    assert "train_fraction" not in ds.get("A1/real_1").meta
    assert set(ds.groups()) == {"A1", "A2", "A3", "A4"}


def test_yahoo_explicit_fraction_overrides_a2(fixtures_dir: Path) -> None:
    ds = loaders.load_yahoo(fixtures_dir / "yahoo_s5", partitions=["A2"], train_fraction=0.75)
    assert "train_fraction" not in ds.series[0].meta
    assert ds.split.bounds(ds.series[0])[1] == 3
    with pytest.raises(DataError, match="unknown Yahoo partition 'A9'"):
        loaders.load_yahoo(fixtures_dir / "yahoo_s5", partitions=["A9"])


# ----------------------------------------------------------------------------------------- NAB


def test_nab_fixture_windows_inclusive_and_retimed(fixtures_dir: Path) -> None:
    ds = loaders.load_nab(fixtures_dir / "nab")
    machine = ds.get("realCat/machine")
    # window 02:50..02:55 inclusive covers 02:50, 02:55 and the duplicated 02:55 row
    assert machine.labels is not None
    assert machine.labels.tolist() == [False, False, True, True, True, False, False]
    # the duplicate 02:55 (1389063300) moves one second on; every row is kept
    assert machine.timestamps.tolist()[3:5] == [1389063300, 1389063301]
    assert machine.meta["retimed"] == 1 and len(machine) == 7
    assert ds.partitions == {"realCat": ["realCat/machine", "realCat/quiet"]}
    assert "retimed" not in ds.get("realCat/quiet").meta


def test_nab_missing_label_entry_and_bad_json(fixtures_dir: Path, tmp_path: Path) -> None:
    root = tmp_path / "nab"
    shutil.copytree(fixtures_dir / "nab", root)
    (root / "labels" / "combined_windows.json").write_text('{"realCat/machine.csv": []}')
    with pytest.raises(DataError, match=r"no entry for realCat/quiet\.csv"):
        loaders.load_nab(root)
    (root / "labels" / "combined_windows.json").write_text("{not json")
    with pytest.raises(DataError, match=r"combined_windows\.json: not valid JSON"):
        loaders.load_nab(root)
    (root / "labels" / "combined_windows.json").write_text('{"realCat/machine.csv": [["x"]]}')
    with pytest.raises(DataError, match=r"is not a \[start, end\] pair"):
        loaders.load_nab(root)


# ----------------------------------------------------------------------------------- real data


def _partition_counts(ds: Dataset, part: str) -> tuple[int, int, int]:
    members = [ds.get(i) for i in ds.partitions[part]]
    labels = sum(int(s.labels.sum()) for s in members if s.labels is not None)
    return len(members), sum(len(s) for s in members), labels


@pytest.mark.slow
def test_real_kpi_counts(kpi_dataset: Dataset) -> None:
    assert len(kpi_dataset) == 29
    train = sum(int(s.meta["test_start"]) for s in kpi_dataset)
    test = sum(len(s) - int(s.meta["test_start"]) for s in kpi_dataset)
    assert (train, test) == (3_073_567, 3_073_556)
    anomalous_train = sum(
        int(s.labels[: s.meta["test_start"]].sum()) for s in kpi_dataset if s.labels is not None
    )
    assert anomalous_train / train == pytest.approx(0.0270, abs=5e-4)
    intervals = sorted(s.interval for s in kpi_dataset)
    assert intervals.count(60) == 22 and intervals.count(300) == 7
    for s in kpi_dataset:
        assert s.timestamps[s.meta["test_start"]] > s.timestamps[s.meta["test_start"] - 1]


def test_real_yahoo_counts(yahoo_dataset: Dataset) -> None:
    assert len(yahoo_dataset) == 367
    assert _partition_counts(yahoo_dataset, "A1") == (67, 94_866, 1_669)
    assert _partition_counts(yahoo_dataset, "A2") == (100, 142_100, 466)
    assert _partition_counts(yahoo_dataset, "A3") == (100, 168_000, 943)
    assert _partition_counts(yahoo_dataset, "A4") == (100, 168_000, 837)
    assert all(
        yahoo_dataset.get(i).meta["train_fraction"] == 0.5 for i in yahoo_dataset.partitions["A2"]
    )


def test_real_nab_counts(nab_dataset: Dataset) -> None:
    assert len(nab_dataset) == 58
    assert nab_dataset.meta["windows"] == 116
    assert sum(int(s.labels.sum()) for s in nab_dataset if s.labels is not None) == 33_495
    assert len(nab_dataset.partitions) == 7
    assert len(nab_dataset.partitions["realKnownCause"]) == 7
    events = sum(
        int(np.count_nonzero(np.diff(s.labels.astype(np.int8), prepend=0) == 1))
        for s in nab_dataset
        if s.labels is not None
    )
    assert events == 116  # no two windows touch
    # the known quirks of the original files: retimed, not dropped
    retimed = {s.id: s.meta["retimed"] for s in nab_dataset if "retimed" in s.meta}
    assert retimed["realKnownCause/machine_temperature_system_failure"] == 12
    assert sum(len(s) for s in nab_dataset) == 365_558


def test_real_layouts_detected(data_root: Path) -> None:
    assert loaders.detect_layout(data_root / "kpi") == "kpi"
    assert loaders.detect_layout(data_root / "yahoo_s5") == "yahoo"
    assert loaders.detect_layout(data_root / "nab") == "nab"


# ------------------------------------------------------------------------------------ property


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.lists(
        st.tuples(
            st.integers(1, 10_000),
            st.one_of(st.none(), st.floats(-1e9, 1e9, allow_nan=False)),
            st.booleans(),
        ),
        min_size=1,
        max_size=40,
    )
)
def test_generic_csv_round_trip(
    tmp_path_factory: pytest.TempPathFactory, rows: list[tuple[int, float | None, bool]]
) -> None:
    steps, values, labels = zip(*rows, strict=True)
    if all(v is None for v in values):
        values = (0.0, *values[1:])
    ts = np.cumsum(steps) + 1_600_000_000
    frame = pd.DataFrame({"timestamp": ts, "value": values, "label": np.array(labels, int)})
    path = tmp_path_factory.mktemp("rt") / "s.csv"
    frame.to_csv(path, index=False)
    s = loaders.read_series_file(path)
    assert s.timestamps.tolist() == ts.tolist()
    assert s.labels is not None and s.labels.tolist() == list(labels)
    given_values = np.array([np.nan if v is None else v for v in values], dtype=float)
    known = ~np.isnan(given_values)
    assert np.allclose(s.values[known], given_values[known], rtol=1e-12, atol=0)
    assert s.meta.get("filled", 0) == int((~known).sum())


def test_empty_folders_and_sub_second_dates_are_named(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("not data\n")
    with pytest.raises(DataError, match=r"no \.csv, \.csv\.gz or \.parquet files in folder"):
        loaders.load_generic(empty)
    with pytest.raises(DataError, match=r"no UCR anomaly archive files \(NNN_UCR_Anomaly_"):
        loaders.load_ucr(empty)
    with pytest.raises(DataError, match="no such file or folder"):
        loaders.load_ucr(tmp_path / "nowhere")
    sub_second = tmp_path / "sub_second.csv"
    sub_second.write_text("timestamp,value\n2024-01-01T00:00:00,1\n2024-01-01T00:00:00.5,2\n")
    with pytest.raises(DataError) as err:
        loaders.load_generic(sub_second)
    assert err.value.row == 3
    assert "has fractional seconds (whole seconds required)" in str(err.value)
