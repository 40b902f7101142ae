"""Finding series ids: ``datasets show --series`` lists them, every ``--series`` suggests close
matches and fails before the data is loaded, ``eval --partition``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from argos.cli import app
from argos.data import catalog, loaders

runner = CliRunner()
ENV = {"ARGOS_DATA_DIR": None, "COLUMNS": "200"}


@pytest.mark.parametrize("name", ["demo", "kpi", "yahoo", "nab"])
def test_show_series_lists_the_ids_the_loader_gives(fixtures_dir: Path, name: str) -> None:
    args = ["datasets", "show", name, "--series", "--data-dir", str(fixtures_dir)]
    result = runner.invoke(app, args, env=ENV)
    assert result.exit_code == 0, result.output
    loaded = catalog.load_dataset(name, data_dir=fixtures_dir)
    assert result.stdout.splitlines() == [s.id for s in loaded.series]
    as_json = runner.invoke(app, [*args, "--json"], env=ENV)
    assert json.loads(as_json.stdout) == [s.id for s in loaded.series]


def test_show_table_and_json_name_the_ids() -> None:
    table = runner.invoke(app, ["datasets", "show", "demo"], env=ENV).stdout
    assert "series ids" in table and "cpu_util" in table and "--series lists them" in table
    doc = json.loads(runner.invoke(app, ["datasets", "show", "demo", "--json"], env=ENV).stdout)
    assert "cpu_util" in doc["series_ids"] and len(doc["series_ids"]) == doc["series"]


def test_show_series_of_a_path_loads_it(fixtures_dir: Path) -> None:
    args = ["datasets", "show", str(fixtures_dir / "generic"), "--series"]
    result = runner.invoke(app, args, env=ENV)
    assert result.exit_code == 0, result.output
    assert sorted(result.stdout.split()) == ["cpu", "latency"]


def test_train_series_typo_suggests_and_fails_before_loading(
    fixtures_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def must_not_load(*args: object, **kwargs: object) -> None:
        raise AssertionError("the whole dataset was loaded")

    monkeypatch.setattr(loaders, "load_yahoo", must_not_load)
    args = ["train", "--dataset", "yahoo", "--data-dir", str(fixtures_dir), "--series", "real_1"]
    result = runner.invoke(app, args, env=ENV)
    assert result.exit_code == 2, result.output
    line = result.stderr.strip()
    assert line.startswith("error: no series 'real_1' in dataset 'yahoo'; did you mean 'A1/real_1'")
    assert line.endswith("(`argos datasets show yahoo --series` lists its 5 ids)")


def test_every_series_option_answers_the_same_way(tmp_path: Path) -> None:
    message = "no series 'cpu' in dataset 'demo'; did you mean 'cpu_util'?"
    train = ["train", "--dataset", "demo", "--series", "cpu", "--out", str(tmp_path / "o")]
    plot = ["datasets", "plot", "demo", "--series", "cpu", "--out", str(tmp_path / "p.png")]
    for args in (train, plot):
        result = runner.invoke(app, args, env=ENV)
        assert result.exit_code == 2, result.output
        assert message in result.stderr and '"' not in result.stderr


def test_eval_partition(fixtures_dir: Path, tmp_path: Path) -> None:
    base = ["eval", "--dataset", "yahoo", "--data-dir", str(fixtures_dir)]
    base += ["--methods", "robust-zscore", "--workers", "1", "--json"]
    result = runner.invoke(app, [*base, "--partition", "A1"], env=ENV)
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["series"]["series"] == 2  # A1 holds real_1 and real_2
    bad = runner.invoke(app, [*base, "--partition", "a1"], env=ENV)
    assert bad.exit_code == 2
    assert "no partition 'a1' in dataset 'yahoo'; did you mean 'A1'?" in bad.stderr
