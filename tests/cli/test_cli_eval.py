"""``argos eval``: flags, TOML config with flag overrides, JSON shape, files, clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from argos.cli import app

runner = CliRunner()

METRICS = {"point", "point_adjusted", "event_pa", "delay"}


def _json(*args: str) -> dict:
    result = runner.invoke(app, ["eval", *args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_json_document_shape_on_demo() -> None:
    doc = _json("--dataset", "demo", "--methods", "robust-zscore,ewma", "--workers", "1")
    assert doc["dataset"] == "demo"
    assert list(doc["methods"]) == ["robust-zscore", "ewma"]
    for entry in doc["methods"].values():
        assert set(entry) >= METRICS
        for metric in METRICS:
            assert set(entry[metric]["mean"]) == {"precision", "recall", "f1"}
            assert {"precision", "recall", "f1"} <= set(entry[metric]["pooled"])
            assert "spread" not in entry[metric]
    assert doc["series"]["series"] == 6
    assert doc["delay"] == 7


def test_trials_add_spreads_and_delay_is_passed() -> None:
    doc = _json(
        "--dataset", "demo", "--methods", "isolation-forest", "--trials", "2", "--delay", "3"
    )
    ev = doc["methods"]["isolation-forest"]["event_pa"]
    assert doc["trials"] == 2 and doc["delay"] == 3
    assert set(ev["spread"]) == {"mean", "pooled", "mean_both"}
    assert ev["spread"]["mean"]["f1"] is not None and ev["spread"]["mean"]["f1"] >= 0


def test_config_file_with_flag_overrides(tmp_path: Path) -> None:
    cfg = tmp_path / "demo.toml"
    cfg.write_text(
        'dataset = "demo"\nmethods = ["ewma", "static-threshold"]\ndelay = 2\nout = "res"\n'
    )
    doc = _json("--config", str(cfg), "--methods", "rolling-zscore", "--workers", "1")
    assert list(doc["methods"]) == ["rolling-zscore"]  # flag wins
    assert doc["delay"] == 2  # from the file
    out = tmp_path / "res"  # relative to the config file
    assert sorted(p.name for p in out.iterdir()) == [
        "command.txt",
        "per_series.csv",
        "results.csv",
        "results.json",
        "results.md",
    ]
    command = (out / "command.txt").read_text()
    assert "numpy:" in command and "git_commit:" in command and "python:" in command
    assert (
        "resolved_command: argos eval --dataset demo --methods rolling-zscore --trials 1 "
        "--delay 2" in command
    )
    assert "rolling-zscore" in (out / "results.md").read_text()


def test_table_output_names_the_conventions() -> None:
    result = runner.invoke(app, ["eval", "--dataset", "demo", "--methods", "ewma"])
    assert result.exit_code == 0, result.output
    assert "ewma" in result.stdout
    assert "excluded from mean recall/F1" in result.stdout
    assert "peer convention" in result.stdout


def test_unknown_method_lists_known_ones() -> None:
    result = runner.invoke(app, ["eval", "--dataset", "demo", "--methods", "ewma,nope"])
    assert result.exit_code == 2
    assert "unknown method 'nope'" in result.stderr
    assert "robust-zscore" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--methods", "ewma"], "no dataset"),
        (["--dataset", "no-such-dataset"], "unknown dataset"),
        (["--dataset", "demo", "--granularity", "weekly"], "granularity"),
        (["--dataset", "demo", "--train-fraction", "1.5"], "train_fraction"),
    ],
)
def test_bad_arguments_exit_2_with_a_message(args: list[str], message: str) -> None:
    result = runner.invoke(app, ["eval", *args])
    assert result.exit_code == 2, result.output
    assert message in result.stderr


def test_bad_config_key(tmp_path: Path) -> None:
    cfg = tmp_path / "x.toml"
    cfg.write_text('dataset = "demo"\nmethod = "ewma"\n')
    result = runner.invoke(app, ["eval", "--config", str(cfg)])
    assert result.exit_code == 2
    assert "method" in result.stderr and "Extra inputs" in result.stderr


def test_list_methods() -> None:
    result = runner.invoke(app, ["eval", "--list-methods"])
    assert result.exit_code == 0
    for name in ("static-threshold", "spectral-residual", "isolation-forest"):
        assert name in result.stdout


def test_real_yahoo_a1_per_series(data_root: Path) -> None:
    doc = _json(
        "--dataset",
        "yahoo-a1",
        "--data-dir",
        str(data_root),
        "--methods",
        "robust-zscore",
        "--granularity",
        "series",
        "--no-scores",
        "--workers",
        "2",
    )
    assert doc["series"]["series"] == 67 and doc["granularity"] == "series"
    ev = doc["methods"]["robust-zscore"]["event_pa"]
    # peers measured 0.467 for a robust z-score (window 60) with this protocol
    assert ev["mean_both"]["f1"] == pytest.approx(0.480, abs=0.01)
    assert doc["methods"]["robust-zscore"]["auc_pr"] is None  # --no-scores


def test_generic_folder_with_train_fraction_skips_unlabeled(
    tmp_path: Path, fixtures_dir: Path
) -> None:
    out = tmp_path / "out"
    result = runner.invoke(
        app,
        [
            "eval",
            "--dataset",
            str(fixtures_dir / "generic"),
            "--train-fraction",
            "0.6",
            "--methods",
            "ewma",
            "--workers",
            "1",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "left out 1 unlabeled series: latency" in result.stderr
    rows = (out / "per_series.csv").read_text().splitlines()
    assert len(rows) == 2  # header + cpu
    # cpu.csv has 10 points: floor(10 * 0.6) = 6 train points, 4 test points
    assert rows[1].startswith("ewma,0,cpu,cpu,generic,4,")
    assert json.loads((out / "results.json").read_text())["meta"] == {
        "skipped_unlabeled": ["latency"]
    }


@pytest.mark.parametrize("name", ["kpi", "yahoo", "nab", "demo"])
def test_committed_configs_are_valid(name: str) -> None:
    from argos.evaluation.harness import EvalConfig, load_config
    from argos.methods import method_names

    path = Path(__file__).resolve().parents[2] / "eval" / f"{name}.toml"
    cfg = EvalConfig.model_validate(load_config(path))
    assert cfg.dataset == name
    assert cfg.out is None  # reproducing never rewrites the committed tables unless --out says so
    known = set(method_names()) | {"all", "pyod-spectral-residual"}  # the peer is optional
    assert set(cfg.methods) <= known


def test_resolve_methods_expands_all_without_duplicates() -> None:
    from argos.methods import method_names, resolve_methods

    names = [m.name for m in resolve_methods("ewma,all,ewma")]
    assert names[0] == "ewma" and len(names) == len(set(names))
    assert set(names) == set(method_names())


def test_all_baselines_names_every_baseline_next_to_other_methods() -> None:
    """The issue's own example: ``--methods rules:RUN,argos-builtin,all-baselines``."""
    from argos.methods import method_names, resolve_methods

    names = [m.name for m in resolve_methods("argos-builtin,all-baselines")]
    assert names == ["argos-builtin", *method_names("baseline")]
    assert "static-threshold" in names and "pyod-spectral-residual" not in names


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    ("scheduler", "message"),
    [
        ("banana", "--scheduler 'banana' is not 'local', 'local:N' or a scheduler address"),
        ("tcp://127.0.0.1:1", "cannot reach the Dask scheduler at 'tcp://127.0.0.1:1'"),
    ],
)
def test_a_bad_or_unreachable_scheduler_is_one_error_line(scheduler: str, message: str) -> None:
    import subprocess
    import sys

    for command in ("eval", "train"):
        proc = subprocess.run(
            [sys.executable, "-m", "argos", command, "--dataset", "demo", "--scheduler", scheduler],
            capture_output=True,
            text=True,
            timeout=100,
        )
        assert proc.returncode == 2, proc.stderr
        assert message in proc.stderr
        assert "Traceback" not in proc.stderr and "TimeoutError" not in proc.stderr


def test_committed_config_writes_no_tracked_file_and_notes_a_missing_peer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 3: the README's reproduce command leaves eval/results alone (files only where --out
    says), and an optional peer whose package is missing is skipped with a visible note and
    listed as not run in the table and results.md (never silently dropped)."""
    import argos.methods as methods

    repo = Path(__file__).resolve().parents[2]
    cfg = tmp_path / "demo.toml"
    cfg.write_text((repo / "eval" / "demo.toml").read_text())
    monkeypatch.setattr(methods, "_importable", lambda package: package != "pyod")
    assert set(methods.unavailable_methods("all")) == {"pyod-spectral-residual"}
    assert "pyod-spectral-residual" not in [m.name for m in methods.resolve_methods("all")]
    peer = "ewma,pyod-spectral-residual"
    plain = runner.invoke(app, ["eval", "--config", str(cfg), "--methods", peer])
    assert plain.exit_code == 0, plain.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo.toml"]  # nothing written
    assert "note: skipping pyod-spectral-residual: needs the optional package pyod" in plain.stderr
    assert "pyod-spectral-residual │ not run" in plain.stdout
    assert "was not run: needs the optional package pyod (pip install 'argos-rules[peers]')" in (
        plain.stdout
    )
    out = tmp_path / "res"
    named = runner.invoke(
        app,
        ["eval", "--config", str(cfg), "--methods", peer, "--out", str(out)],
    )
    assert named.exit_code == 0, named.output
    md = (out / "results.md").read_text()
    assert "| pyod-spectral-residual | not run | – |" in md
    assert "- pyod-spectral-residual was not run: needs the optional package pyod" in md
    doc = json.loads((out / "results.json").read_text())
    assert list(doc["methods"]) == ["ewma"]
    assert set(doc["meta"]["not_run"]) == {"pyod-spectral-residual"}
    only_peer = runner.invoke(
        app, ["eval", "--config", str(cfg), "--methods", "pyod-spectral-residual"]
    )
    assert only_peer.exit_code == 2 and "no method can run" in only_peer.output


def _two_series(folder: Path) -> Path:
    import numpy as np

    folder.mkdir()
    rng = np.random.default_rng(1)
    for name in ("alpha", "beta"):
        values = np.round(50 + rng.normal(0, 3, 800), 2)
        labels = np.zeros(800, dtype=int)
        for at in (150, 420, 700):
            values[at : at + 5] += 60
            labels[at : at + 5] = 1
        pairs = enumerate(zip(values, labels, strict=True))
        rows = "\n".join(f"{1_700_000_000 + 60 * i},{v},{la}" for i, (v, la) in pairs)
        (folder / f"{name}.csv").write_text("timestamp,value,label\n" + rows + "\n")
    return folder


def test_rules_method_evaluates_a_training_run_and_a_rule_set(tmp_path: Path) -> None:
    data = _two_series(tmp_path / "units")
    run = tmp_path / "run"
    env = {"ARGOS_LLM_MODEL": None, "OPENAI_API_KEY": None, "OPENAI_BASE_URL": None}
    trained = runner.invoke(
        app,
        ["train", "--dataset", str(data), "--out", str(run), "--generator", "builtin"],
        env=env,
    )
    assert trained.exit_code == 0, trained.output
    methods = f"rules:{run},rules:{run / 'alpha'},static-threshold"
    doc = _json("--dataset", str(data), "--methods", methods, "--workers", "1")
    assert list(doc["methods"]) == methods.split(",")
    f1 = doc["methods"][f"rules:{run}"]["event_pa"]["mean"]["f1"]
    assert f1 is not None and f1 > 0.5  # each series ran its own unit's rule set
    assert doc["methods"][f"rules:{run / 'alpha'}"]["event_pa"]["mean"]["f1"] is not None
    # A series the run has no rule set for is reported by name, not skipped.
    partial = tmp_path / "partial"
    args = ["train", "--dataset", str(data), "--series", "alpha", "--out", str(partial)]
    assert runner.invoke(app, [*args, "--generator", "builtin"], env=env).exit_code == 0
    result = runner.invoke(
        app, ["eval", "--dataset", str(data), "--methods", f"rules:{partial}", "--workers", "1"]
    )
    assert result.exit_code != 0
    assert "no rule set for series beta" in " ".join(result.output.split())
