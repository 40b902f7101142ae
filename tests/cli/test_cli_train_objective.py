"""``argos train --objective`` with the builtin generator: the objective is recorded in the
manifest's generator record (its F1 named after it) and in summary.json; a manifest written
before the field existed still loads, as event-PA."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from argos.cli import app
from argos.rules.artifacts import GeneratorInfo, load_ruleset

runner = CliRunner()
NO_LLM = {
    "ARGOS_LLM_MODEL": None,
    "ARGOS_LLM_BASE_URL": None,
    "ARGOS_LLM_API_KEY": None,
    "OPENAI_API_KEY": None,
    "OPENAI_BASE_URL": None,
}


def _train(tmp_path: Path, *extra: str) -> Path:
    out = tmp_path / "rules"
    args = ["train", "--dataset", "demo", "--series", "cpu_util", "--generator", "builtin"]
    result = runner.invoke(app, [*args, "--out", str(out), "--workers", "1", *extra], env=NO_LLM)
    assert result.exit_code == 0, result.output
    return out


@pytest.mark.parametrize(
    ("flag", "recorded", "key"),
    [((), "event-pa", "event_pa_f1"), (("--objective", "delay:7"), "delay:7", "delay_7_f1")],
)
def test_the_objective_is_recorded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, flag: tuple[str, ...], recorded: str, key: str
) -> None:
    monkeypatch.chdir(tmp_path)  # no argos.toml here
    out = _train(tmp_path, *flag)
    manifest = load_ruleset(out / "cpu_util").manifest
    assert manifest.generator is not None
    assert manifest.generator.kind == "builtin" and manifest.generator.objective == recorded
    assert set(manifest.metrics["train"]) == {key, "candidates_tried"}
    assert set(manifest.metrics["validation"]) == {key}
    summary = json.loads((out / "summary.json").read_text())
    assert summary["config"]["objective"] == recorded


def test_a_manifest_without_an_objective_loads_as_event_pa() -> None:
    assert GeneratorInfo.model_validate({"kind": "builtin"}).objective == "event-pa"
    assert GeneratorInfo.model_validate({"kind": "llm", "objective": "delay"}).objective == (
        "delay:7"
    )
    with pytest.raises(ValueError, match="objective"):
        GeneratorInfo.model_validate({"kind": "builtin", "objective": "soonest"})
