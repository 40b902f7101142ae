"""``argos datasets list`` / ``show``: tables, JSON, one-line errors with exit code 2."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import pytest
from typer.testing import CliRunner

from argos.cli import app

runner = CliRunner()
NO_ENV = {"ARGOS_DATA_DIR": None, "COLUMNS": "160"}


def _ok(*args: str, env: Mapping[str, str | None] | None = None) -> str:
    result = runner.invoke(app, ["datasets", *args], env=env or NO_ENV)
    assert result.exit_code == 0, result.output
    return result.stdout


def _fails(*args: str, env: Mapping[str, str | None] | None = None) -> str:
    result = runner.invoke(app, ["datasets", *args], env=env or NO_ENV)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_list_json_with_data_dir(fixtures_dir: Path) -> None:
    out = json.loads(_ok("list", "--data-dir", str(fixtures_dir), "--json"))
    assert out["data_dir"] == str(fixtures_dir) and out["data_dir_from"] == "--data-dir"
    rows = {r["name"]: r for r in out["datasets"]}
    assert list(rows) == [
        "demo",
        "kpi",
        "yahoo",
        "yahoo-a1",
        "yahoo-a2",
        "yahoo-a3",
        "yahoo-a4",
        "nab",
    ]
    assert all(r["found"] for r in rows.values())
    assert rows["kpi"]["path"] == str(fixtures_dir / "kpi")
    assert rows["demo"]["path"] is None


def test_list_without_data_dir_says_where_to_set_it() -> None:
    out = _ok("list")
    assert "not set" in out and "ARGOS_DATA_DIR" in out
    rows = {r["name"]: r["found"] for r in json.loads(_ok("list", "--json"))["datasets"]}
    assert rows["demo"] is True and rows["kpi"] is False and rows["nab"] is False


def test_list_reads_the_environment(fixtures_dir: Path, tmp_path: Path) -> None:
    env = {"ARGOS_DATA_DIR": str(fixtures_dir)}
    out = json.loads(_ok("list", "--json", env=env))
    assert out["data_dir_from"] == "ARGOS_DATA_DIR" and out["datasets"][1]["found"] is True
    table = _ok("list", env={"ARGOS_DATA_DIR": str(tmp_path / "gone"), "COLUMNS": "160"})
    assert "(missing)" in table


def test_show_demo_json() -> None:
    d = json.loads(_ok("show", "demo", "--json"))
    assert (d["name"], d["series"], d["points"], d["interval_s"]) == ("demo", 6, 24_192, 300)
    assert d["split"]["points"] == {"train": 13_548, "validation": 3_384, "test": 7_260}
    assert 0.01 < d["anomaly_ratio"] < 0.05


def test_show_demo_table() -> None:
    out = _ok("show", "demo")
    for text in ("dataset demo", "24,192", "5 min", "validation", "anomalous", "events"):
        assert text in out, text


def test_show_fixture_datasets(fixtures_dir: Path) -> None:
    out = _ok("show", "yahoo", "--data-dir", str(fixtures_dir))
    assert "A1 (2), A2 (1), A3 (1), A4 (1)" in out and "partition" in out
    assert "own train fraction on 1 series" in out
    out = _ok("show", "nab", "--data-dir", str(fixtures_dir))
    assert "1 timestamps retimed" in out
    d = json.loads(_ok("show", str(fixtures_dir / "generic"), "--train-fraction", "0.5", "--json"))
    assert d["layout"] == "generic" and d["split"]["train_fraction"] == 0.5 and d["series"] == 2
    assert d["filled"] == 1 and d["labeled_series"] == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("show", "nope"), "error: unknown dataset 'nope': expected one of demo"),
        (("show", "kpi"), "error: dataset 'kpi' needs the benchmark data"),
        (("show", "demo", "--train-fraction", "1.5"), "error: train_fraction must be in (0, 1)"),
        (("show", "./missing/dir"), "error: missing/dir: no such file or folder"),
    ],
)
def test_show_errors_are_one_line_exit_2(args: tuple[str, ...], message: str) -> None:
    assert _fails(*args).startswith(message)


def test_show_malformed_file_names_file_and_line(fixtures_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "metrics"
    folder.mkdir()
    shutil.copy(fixtures_dir / "malformed" / "non_monotonic.csv", folder)
    line = _fails("show", str(folder))
    assert line.startswith(f"error: {folder / 'non_monotonic.csv'}, line 5: non-increasing")


def test_show_missing_data_dir(tmp_path: Path) -> None:
    line = _fails("show", "nab", "--data-dir", str(tmp_path / "nowhere"))
    assert line == f"error: {tmp_path / 'nowhere'}: data directory not found"


def test_show_real_yahoo_a1(data_root: Path) -> None:
    d = json.loads(_ok("show", "yahoo-a1", "--data-dir", str(data_root), "--json"))
    assert (d["series"], d["points"], d["anomalies"]) == (67, 94_866, 1_669)
    assert d["partitions"] == {"A1": 67}


def test_real_subprocess_show_demo_json() -> None:
    exe = shutil.which("argos", path=str(Path(sys.executable).parent))
    if exe is None:
        pytest.skip("the argos console script is not installed next to this Python")
    env = {k: v for k, v in os.environ.items() if k != "ARGOS_DATA_DIR"}
    proc = subprocess.run(
        [exe, "datasets", "show", "demo", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    d = json.loads(proc.stdout)
    assert (d["name"], d["series"], d["points"]) == ("demo", 6, 24_192)
    bad = subprocess.run(
        [exe, "datasets", "show", "nope"], capture_output=True, text=True, timeout=120, env=env
    )
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert bad.stderr.startswith("error: unknown dataset 'nope'")
