"""``argos eval --objective``: every trained method is fit for the objective of the run, which
results.json records and results.md names; the default leaves the tables as they were."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from typer.testing import CliRunner

from argos.cli import app

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[2]
COMMITTED_DEMO = ROOT / "eval" / "results" / "demo"
BASELINES = "static-threshold,rolling-zscore,robust-zscore,ewma,seasonal-residual"


def _eval(tmp_path: Path, name: str, *extra: str, methods: str = BASELINES) -> Path:
    out = tmp_path / name
    args = ["eval", "--dataset", "demo", "--methods", methods, "--granularity", "series"]
    args += ["--no-scores", "--workers", "1"]
    result = runner.invoke(app, [*args, "--out", str(out), *extra])
    assert result.exit_code == 0, result.output
    return out


def _scores(path: Path) -> dict[tuple[str, str], dict[str, str]]:
    """Per-series rows of per_series.csv without the timings (and without the scores that
    ``--no-scores`` leaves out)."""
    out = {}
    for row in csv.DictReader(path.open()):
        keep = {k: v for k, v in row.items() if k not in ("auc_pr", "vus_pr")}
        out[(row["method"], row["series"])] = keep
    return out


def test_the_default_objective_gives_the_committed_demo_tables(tmp_path: Path) -> None:
    """event-pa (default and spelt out) reproduces the committed demo numbers, series by series,
    of the builtin generator and the baselines."""
    committed = _scores(COMMITTED_DEMO / "per_series.csv")
    for name, extra in (("default", ()), ("explicit", ("--objective", "event-pa"))):
        out = _eval(tmp_path, name, *extra, methods=f"argos-builtin,{BASELINES}")
        rows = _scores(out / "per_series.csv")
        assert rows == {k: committed[k] for k in rows}
        assert json.loads((out / "results.json").read_text())["objective"] == "event-pa"
        assert "for the objective" not in (out / "results.md").read_text()


def test_a_delay_objective_is_recorded_and_changes_the_fits(tmp_path: Path) -> None:
    out = _eval(tmp_path, "delay", "--objective", "delay:2")
    doc = json.loads((out / "results.json").read_text())
    assert doc["objective"] == "delay:2"
    header = (out / "results.md").read_text().splitlines()[2]
    assert "for the objective delay:2" in header
    assert "--objective delay:2" in (out / "command.txt").read_text()
    default = _scores(_eval(tmp_path, "default") / "per_series.csv")
    assert _scores(out / "per_series.csv") != default  # some threshold moved


def test_an_unknown_objective_is_a_usage_error() -> None:
    result = runner.invoke(app, ["eval", "--dataset", "demo", "--objective", "delay:soon"])
    assert result.exit_code == 2, result.output
    assert "objective" in result.stderr
