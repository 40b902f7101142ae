"""The catalog: data-dir resolution, names and paths, describe(), and the manifests in datasets/."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest

from argos.data import catalog
from argos.data.series import DataError, Dataset

MANIFESTS = Path(__file__).resolve().parents[2] / "datasets"


def test_resolve_data_dir_flag_then_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(catalog.DATA_DIR_ENV, raising=False)
    assert catalog.resolve_data_dir(None) is None
    monkeypatch.setenv(catalog.DATA_DIR_ENV, str(tmp_path / "env"))
    assert catalog.resolve_data_dir(None) == tmp_path / "env"
    assert catalog.resolve_data_dir(tmp_path / "flag") == tmp_path / "flag"
    monkeypatch.setenv(catalog.DATA_DIR_ENV, "  ")
    assert catalog.resolve_data_dir(None) is None


def test_names() -> None:
    assert catalog.dataset_names() == [
        "demo",
        "kpi",
        "yahoo",
        "yahoo-a1",
        "yahoo-a2",
        "yahoo-a3",
        "yahoo-a4",
        "nab",
    ]


def test_builtins_load_from_a_data_root(fixtures_dir: Path) -> None:
    kpi = catalog.load_dataset("kpi", data_dir=fixtures_dir)
    assert kpi.name == "kpi" and len(kpi) == 2
    a3 = catalog.load_dataset("YAHOO-A3", data_dir=fixtures_dir)  # names are case-insensitive
    assert a3.name == "yahoo-a3" and list(a3.partitions) == ["A3"] and len(a3) == 1
    nab = catalog.load_dataset("nab", data_dir=fixtures_dir, train_fraction=0.6)
    assert nab.split.train_fraction == 0.6 and len(nab) == 2
    for name in catalog.dataset_names():
        assert catalog.is_available(name, fixtures_dir), name


def test_paths_relative_to_cwd_or_data_root(
    fixtures_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(fixtures_dir.parent)
    assert catalog.load_dataset("fixtures/ucr").meta["layout"] == "ucr"
    assert catalog.load_dataset("generic", data_dir=fixtures_dir).meta["layout"] == "generic"


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("nope", "unknown dataset 'nope': expected one of demo, kpi"),
        ("./nope", "nope: no such file or folder"),
        ("nope.csv", "nope.csv: no such file or folder"),
    ],
)
def test_unknown_names(name: str, message: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(catalog.DATA_DIR_ENV, raising=False)
    with pytest.raises(DataError, match=message):
        catalog.load_dataset(name)


def test_missing_data_dir_and_folder(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(catalog.DATA_DIR_ENV, raising=False)
    with pytest.raises(DataError, match="'kpi' needs the benchmark data: pass --data-dir or set"):
        catalog.load_dataset("kpi")
    with pytest.raises(DataError, match=r"missing: data directory not found"):
        catalog.load_dataset("nab", data_dir=tmp_path / "missing")
    with pytest.raises(DataError, match=r"'yahoo' not found: no folder yahoo_s5/"):
        catalog.load_dataset("yahoo", data_dir=tmp_path)
    assert not catalog.is_available("kpi", tmp_path)
    assert catalog.dataset_location("kpi", tmp_path) == tmp_path / "kpi"
    assert catalog.dataset_location("demo", tmp_path) is None
    assert catalog.is_available("demo", None)
    with pytest.raises(DataError, match="train_fraction must be in"):
        catalog.load_dataset("demo", train_fraction=1.0)


def test_describe_demo(demo_dataset: Dataset) -> None:
    d = catalog.describe(demo_dataset)
    assert d["series"] == 6 and d["points"] == 24_192 and d["interval_s"] == 300
    assert d["intervals"] == {"300": 6}
    labels = [s.labels for s in demo_dataset if s.labels is not None]
    assert d["anomalies"] == sum(int(lab.sum()) for lab in labels)
    assert d["anomaly_ratio"] == pytest.approx(d["anomalies"] / 24_192)
    assert d["events"] == sum(len(s.meta["events"]) for s in demo_dataset)
    assert d["split"]["points"] == {"train": 6 * 2258, "validation": 6 * 564, "test": 6 * 1210}
    assert all(v > 0 for v in d["split"]["anomalies"].values())
    assert d["length"] == {"min": 4032, "median": 4032, "max": 4032}


def test_describe_uses_official_and_per_series_splits(fixtures_dir: Path) -> None:
    d = catalog.describe(catalog.load_dataset("kpi", data_dir=fixtures_dir))
    assert d["split"]["official_series"] == 2
    assert d["split"]["points"] == {"train": 6, "validation": 0, "test": 3}
    y = catalog.describe(catalog.load_dataset("yahoo-a2", data_dir=fixtures_dir))
    assert y["split"]["points"]["test"] == 2  # 50/50 of 4 points
    assert y["split"]["own_fraction_series"] == 1 and y["split"]["official_series"] == 0


def _manifest(name: str) -> dict[str, Any]:
    with (MANIFESTS / f"{name}.toml").open("rb") as f:
        return tomllib.load(f)


@pytest.mark.parametrize("name", ["demo", "kpi", "yahoo", "nab"])
def test_manifests_match_the_catalog(name: str) -> None:
    m = _manifest(name)
    info = catalog.BUILTIN[name]
    assert m["name"] == info.name and m["layout"] == info.layout
    assert (m["folder"] or None) == info.folder
    assert m["split"] == info.split and m["granularity"] == info.granularity
    assert m["license"] == info.license and m["description"] == info.description
    if info.partitions:
        assert tuple(m["partitions"]) == info.partitions


def test_demo_manifest_counts(demo_dataset: Dataset) -> None:
    m = _manifest("demo")
    assert (m["series"], m["points"]) == (len(demo_dataset), demo_dataset.n_points)


def test_yahoo_and_nab_manifests_match_real_data(
    yahoo_dataset: Dataset, nab_dataset: Dataset
) -> None:
    y = _manifest("yahoo")
    assert (y["series"], y["points"]) == (len(yahoo_dataset), yahoo_dataset.n_points)
    for part, expected in y["partition"].items():
        members = [yahoo_dataset.get(i) for i in yahoo_dataset.partitions[part]]
        got = {
            "series": len(members),
            "points": sum(len(s) for s in members),
            "anomalies": sum(int(s.labels.sum()) for s in members if s.labels is not None),
        }
        assert got == expected, part
    n = _manifest("nab")
    assert (n["series"], n["points"]) == (len(nab_dataset), nab_dataset.n_points)
    assert sorted(n["partitions"]) == sorted(nab_dataset.partitions)
    assert n["windows"] == nab_dataset.meta["windows"]
    described = catalog.describe(nab_dataset)
    assert described["anomalies"] == n["anomalies"] and described["retimed"] == 49


@pytest.mark.slow
def test_kpi_manifest_matches_real_data(kpi_dataset: Dataset) -> None:
    m = _manifest("kpi")
    d = catalog.describe(kpi_dataset)
    assert (d["series"], d["points"]) == (m["series"], m["points"])
    assert d["split"]["official_series"] == 29
    points = d["split"]["points"]
    assert points["train"] + points["validation"] == m["train_points"]
    assert points["test"] == m["test_points"]
    assert d["intervals"] == {"60": 22, "300": 7}
