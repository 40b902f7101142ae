"""``argos train`` and ``argos demo`` through the CLI app."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from argos.cli import app
from argos.cli.demo import demo_legend
from argos.rules.artifacts import load_ruleset

runner = CliRunner()
NO_LLM = {
    "ARGOS_LLM_MODEL": None,
    "ARGOS_LLM_BASE_URL": None,
    "ARGOS_LLM_API_KEY": None,
    "OPENAI_API_KEY": None,
    "OPENAI_BASE_URL": None,
    "COLUMNS": "200",
}


def test_train_one_demo_series_says_builtin_and_exports(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)  # no argos.toml here
    out = tmp_path / "rules"
    result = runner.invoke(
        app,
        ["train", "--dataset", "demo", "--series", "cpu_util", "--out", str(out), "--workers", "1"],
        env=NO_LLM,
    )
    assert result.exit_code == 0, result.output
    assert "using the builtin generator (no LLM configured)" in result.output
    assert "cpu_util" in result.output and "yes" in result.output  # verified column
    rs = load_ruleset(out / "cpu_util")
    assert rs.rules and all(r.description.startswith(r.id) for r in rs.rules)
    summary = json.loads((out / "summary.json").read_text())
    assert [u["unit"] for u in summary["units"]] == ["cpu_util"]
    assert summary["units"][0]["verified"] is True


def test_train_json_and_trials(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)
    args = ["train", "--dataset", "demo", "--series", "error_rate", "--out", str(tmp_path / "o")]
    result = runner.invoke(app, [*args, "--trials", "4", "--seed", "3", "--json"], env=NO_LLM)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["config"]["trials"] == 4 and data["config"]["seed"] == 3
    # 4 structures x (directions x persistences) candidates at most
    assert 0 < data["units"][0]["tried"] <= 4 * 9


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--dataset", "demo", "--generator", "gpt"], "must be 'auto', 'builtin' or 'llm'"),
        (["--dataset", "demo", "--generator", "llm"], "needs an LLM"),
        (["--resume", "no-such-run"], "no run 'no-such-run'"),
        ([], "give --dataset"),
        (["--dataset", "nope-such-dataset"], "unknown dataset"),
        (["--dataset", "demo", "--series", "nope"], "nope"),
        (["--dataset", "demo", "--granularity", "weekly"], "--granularity"),
        (["--dataset", "demo", "--objective", "delay:soon"], "--objective"),
    ],
)
def test_train_errors_exit_2(tmp_path: Path, monkeypatch, args: list[str], message: str) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["train", *args, "--out", str(tmp_path / "o")], env=NO_LLM)
    assert result.exit_code == 2, result.output
    assert message in result.output


@pytest.mark.slow
def test_demo_trains_evaluates_and_points_at_the_rules(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["demo", "--out", str(tmp_path / "demo")], env=NO_LLM)
    assert result.exit_code == 0, result.output
    lines = {ln.split()[1]: ln for ln in result.output.splitlines() if ln.startswith("│ ")}
    assert {"argos-builtin", "robust-zscore", "spectral-residual"} <= set(lines)

    def f1(name: str) -> float:
        return float(lines[name].split("│")[4])

    # measured: argos-builtin .694, spectral-residual .598, robust-zscore .493 (6 series)
    assert f1("argos-builtin") > max(f1("robust-zscore"), f1("spectral-residual")) + 0.05
    for line in demo_legend():  # what event-PA / pooled F1 mean and what the data is
        assert line in result.output
    assert "for example:" in result.output
    example = Path(result.output.split("for example:")[1].split()[0])
    assert example.is_file() and "Abnormal:" in example.read_text()


def test_train_a_series_without_labels_says_its_rule_is_unsupervised(
    tmp_path: Path, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    import numpy as np

    monkeypatch.chdir(tmp_path)
    data = tmp_path / "metrics"
    data.mkdir()
    rng = np.random.default_rng(0)
    values = np.round(50 + rng.normal(0, 3, 600), 2)
    rows = "\n".join(f"{1_700_000_000 + 60 * i},{v},0" for i, v in enumerate(values))
    (data / "quiet.csv").write_text("timestamp,value,label\n" + rows + "\n")
    out = tmp_path / "rules"
    args = ["train", "--dataset", str(data), "--out", str(out), "--workers", "1"]
    result = runner.invoke(app, args, env=NO_LLM)
    assert result.exit_code == 0, result.output
    assert "note: quiet: no labeled anomaly in train/validation: one unsupervised rule" in (
        " ".join(result.output.split())
    )
    rs = load_ruleset(out / "quiet")
    assert [r.id for r in rs.rules] == ["band_value_both"]


@pytest.mark.parametrize(
    ("flags", "missing"),
    [
        (["--llm", "openai", "--model", "gpt-4o-mini", "--max-cost", "2"], "OPENAI_API_KEY"),
        (["--base-url", "http://127.0.0.1:9/v1"], "no model: give --model"),
    ],
)
def test_train_explicit_llm_flags_without_key_or_model_are_an_error(
    tmp_path: Path, monkeypatch, flags: list[str], missing: str
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)
    args = ["train", "--dataset", "demo", "--out", str(tmp_path / "o"), *flags]
    result = runner.invoke(app, args, env=NO_LLM)
    assert result.exit_code == 2, result.output
    assert "the LLM is not usable" in result.output and missing in result.output
    assert "builtin generator (no LLM" not in result.output
    assert not (tmp_path / "o").exists()


def test_train_against_an_unreachable_endpoint_fails_with_one_clear_line(
    tmp_path: Path, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)
    (tmp_path / "argos.toml").write_text("[llm]\nmax_retries = 0\ntimeout_s = 5\n")
    args = ["train", "--dataset", "demo", "--series", "cpu_util", "--out", str(tmp_path / "o")]
    llm = ["--model", "m", "--base-url", "http://127.0.0.1:9/v1", "--no-incumbent"]
    result = runner.invoke(app, [*args, *llm], env=NO_LLM)
    assert result.exit_code == 1, result.output
    errors = [ln for ln in result.output.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1, result.output
    assert "every unit failed on the LLM endpoint (http://127.0.0.1:9/v1)" in errors[0]
    assert "cannot connect" in errors[0]
    assert result.output.index("error:") < result.output.index("┏")  # before the table


def test_train_twice_into_one_out_refuses_then_overwrite_replaces(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 4: a second run into a non-empty --out would mix two runs' rule sets under a
    summary naming only the second; it is refused, and --overwrite says what it removed."""
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "rules"
    base = ["train", "--dataset", "demo", "--out", str(out), "--workers", "1"]
    first = runner.invoke(app, [*base, "--series", "cpu_util"], env=NO_LLM)
    assert first.exit_code == 0, first.output
    again = runner.invoke(app, [*base, "--series", "error_rate"], env=NO_LLM)
    assert again.exit_code == 2
    assert "would mix two runs" in again.output and "--overwrite" in again.output
    assert not (out / "error_rate").exists() and (out / "cpu_util").is_dir()
    replaced = runner.invoke(app, [*base, "--series", "error_rate", "--overwrite"], env=NO_LLM)
    assert replaced.exit_code == 0, replaced.output
    assert "removed the previous run" in replaced.output and "cpu_util/" in replaced.output
    assert sorted(p.name for p in out.iterdir()) == ["error_rate", "summary.json"]
    summary = json.loads((out / "summary.json").read_text())
    assert [u["unit"] for u in summary["units"]] == ["error_rate"]


def test_train_overwrite_never_removes_files_a_run_did_not_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    args = ["train", "--dataset", "demo", "--series", "cpu_util", "--out", str(out)]
    result = runner.invoke(app, [*args, "--overwrite"], env=NO_LLM)
    assert result.exit_code == 2
    assert "no training run wrote (notes.txt)" in result.output
    assert (out / "notes.txt").read_text() == "keep me"


def test_train_fraction_is_used_recorded_and_the_printed_report_command_works(
    tmp_path: Path, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    import shlex

    import numpy as np

    monkeypatch.chdir(tmp_path)
    data = tmp_path / "llm-units"
    data.mkdir()
    rng = np.random.default_rng(0)
    values = np.round(50 + rng.normal(0, 3, 800), 2)
    labels = np.zeros(800, dtype=int)
    for at in (150, 420, 700):
        values[at : at + 5] += 60
        labels[at : at + 5] = 1
    rows = "\n".join(
        f"{1_700_000_000 + 60 * i},{v},{la}"
        for i, (v, la) in enumerate(zip(values, labels, strict=True))
    )
    (data / "unit.csv").write_text("timestamp,value,label\n" + rows + "\n")
    out = tmp_path / "rules"
    args = ["train", "--dataset", str(data), "--out", str(out), "--workers", "1"]
    result = runner.invoke(app, [*args, "--train-fraction", "0.6"], env=NO_LLM)
    assert result.exit_code == 0, result.output
    split = load_ruleset(out / "unit").manifest.training.split  # type: ignore[union-attr]
    assert split["train_fraction"] == 0.6
    summary = json.loads((out / "summary.json").read_text())
    assert summary["dataset_source"] == str(data) and summary["split"]["train_fraction"] == 0.6
    # The command training prints works as printed (the dataset was given as a path).
    printed = next(
        line for line in result.output.splitlines() if line.startswith("report: argos report")
    )
    command = shlex.split(printed.removeprefix("report: ").split("  (")[0])
    report = runner.invoke(app, command[1:], env=NO_LLM)
    assert report.exit_code == 0, report.output
    assert (out / "report.html").is_file()


def test_llm_training_without_a_tty_logs_one_flushed_line_per_event(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    from fake_openai import FakeOpenAI
    from scripted_rules import GOOD, RUNTIME_ERROR, fenced

    log = tmp_path / "train.log"
    seen_before_second_call: list[str] = []

    def on_request(number: int) -> bool:
        if number == 2:  # the repairer's call: the first candidate's events are in the log already
            seen_before_second_call.append(log.read_text())
        return True

    env = {**os.environ, "OPENAI_API_KEY": "sk-test"}
    for k in ("ARGOS_LLM_MODEL", "ARGOS_LLM_BASE_URL", "OPENAI_BASE_URL"):
        env.pop(k, None)

    def choose(agent: str, prompt: str) -> str:
        return fenced(GOOD if agent == "repairer" else RUNTIME_ERROR)

    with FakeOpenAI(choose, on_request) as server, log.open("w") as fh:
        proc = subprocess.run(
            [
                *(sys.executable, "-m", "argos.cli", "train", "--dataset", "demo"),
                *("--series", "error_rate", "--llm", "openai", "--model", "fake-model"),
                "--no-incumbent",
                *("--base-url", server.base_url, "--iterations", "2", "--candidates", "1"),
                *("--chunk-size", "600", "--out", str(tmp_path / "run")),
            ],
            env=env,
            stdout=fh,
            stderr=subprocess.STDOUT,
            timeout=600,
            cwd=tmp_path,
        )
    assert proc.returncode == 0, log.read_text()[-3000:]
    assert seen_before_second_call, "the run made a single call"
    early = seen_before_second_call[0]
    assert "error_rate it 0 generated" in early
    assert "error_rate it 0 checked runtime_error" in early
    assert "outcome ok accepted" in log.read_text()  # what became of each candidate


def test_llm_training_starts_from_the_builtin_set_and_says_what_became_of_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On demo data the builtin set already scores 1.0 on the selection data: the unit keeps it
    without calling the model (the endpoint is unreachable), and the run says so per unit."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "argos.toml").write_text("[llm]\nmax_retries = 0\ntimeout_s = 5\n")
    out = tmp_path / "run"
    args = ["train", "--dataset", "demo", "--series", "cpu_util", "--out", str(out)]
    llm = ["--llm", "openai", "--model", "m", "--base-url", "http://127.0.0.1:9/v1"]
    result = runner.invoke(app, [*args, *llm], env=NO_LLM)
    assert result.exit_code == 0, result.output
    assert "cpu_util: kept the builtin rule set: no LLM candidate beat its selection F1 1.000" in (
        result.output
    )
    generator = load_ruleset(out / "cpu_util").manifest.generator
    assert generator is not None and generator.kind == "llm"
    assert generator.objective == "event-pa"
    assert generator.incumbent == "builtin" and generator.incumbent_score == generator.score == 1.0
    assert json.loads((out / "run.json").read_text())["objective"] == "event-pa"
    # The gate's default guard under event-PA: a kept set must not lower the 7-delay F1.
    assert generator.guard == "delay:7"
    assert json.loads((out / "run.json").read_text())["guard"] == "auto"


def test_an_unknown_guard_is_refused_before_anything_runs(tmp_path: Path) -> None:
    args = ["train", "--dataset", "demo", "--out", str(tmp_path / "run"), "--guard", "soon"]
    llm = ["--llm", "openai", "--model", "m", "--base-url", "http://127.0.0.1:9/v1"]
    result = runner.invoke(app, [*args, *llm], env=NO_LLM)
    assert result.exit_code == 2
    assert "error: --guard: unknown objective 'soon'" in result.output
    assert not (tmp_path / "run").exists()
