"""``argos score``: worked vectors of docs/evaluation.md through CSV files, and input errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from argos.cli import app

runner = CliRunner()

VECTOR_A = ([0, 1, 1, 0, 1, 1, 1, 1, 0, 0], [1, 1, 0, 0, 0, 0, 0, 1, 1, 1])
VECTOR_B = (
    [0, 0, 1, 1, 1, 1, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1],
    [0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1],
)


def _write(path: Path, labels: list[int], column: str = "label", t0: int = 1_600_000_000) -> Path:
    rows = [f"timestamp,{column}"] + [f"{t0 + 60 * i},{v}" for i, v in enumerate(labels)]
    path.write_text("\n".join(rows) + "\n")
    return path


def _score(tmp_path: Path, truth: list[int], pred: list[int], *args: str) -> dict:
    t = _write(tmp_path / "truth.csv", truth)
    p = _write(tmp_path / "pred.csv", pred, column="pred")
    result = runner.invoke(app, ["score", str(t), str(p), "--json", *args])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _prf(block: dict) -> tuple[float, float, float]:
    return (round(block["precision"], 4), round(block["recall"], 4), round(block["f1"], 4))


def test_vector_a_all_metrics(tmp_path: Path) -> None:
    doc = _score(tmp_path, *VECTOR_A)
    assert set(doc) == {"point", "point_adjusted", "event_pa", "delay"}
    assert _prf(doc["point"]) == (0.4, 0.3333, 0.3636)
    assert _prf(doc["point_adjusted"]) == (0.6667, 1.0, 0.8)
    assert _prf(doc["event_pa"]) == (0.4, 1.0, 0.5714)
    assert doc["delay"]["k"] == 7
    assert _prf(doc["delay"]) == (0.6667, 1.0, 0.8)
    assert {k: doc["event_pa"][k] for k in ("tp", "fp", "fn")} == {"tp": 2, "fp": 3, "fn": 0}
    assert set(doc["point"]) == {"precision", "recall", "f1", "tp", "fp", "fn"}


def test_vector_a_two_delay(tmp_path: Path) -> None:
    doc = _score(tmp_path, *VECTOR_A, "--delay", "2")
    assert doc["delay"]["k"] == 2
    assert _prf(doc["delay"]) == (0.4, 0.3333, 0.3636)


@pytest.mark.parametrize(
    ("k", "expected"),
    [("3", (0.8, 0.2857, 0.4211)), ("7", (0.8, 0.2857, 0.4211)), ("8", (0.9333, 1.0, 0.9655))],
)
def test_vector_b(tmp_path: Path, k: str, expected: tuple[float, float, float]) -> None:
    doc = _score(tmp_path, *VECTOR_B, "--delay", k)
    assert _prf(doc["point"]) == (0.75, 0.2143, 0.3333)
    assert _prf(doc["point_adjusted"]) == (0.9333, 1.0, 0.9655)
    assert _prf(doc["event_pa"]) == (0.6667, 1.0, 0.8)
    assert _prf(doc["delay"]) == expected


def test_rows_are_joined_on_timestamp_not_position(tmp_path: Path) -> None:
    truth, pred = VECTOR_A
    t = _write(tmp_path / "truth.csv", truth)
    (tmp_path / "p.csv").write_text(
        "timestamp,anomaly\n"
        + "\n".join(f"{1_600_000_000 + 60 * i},{v}" for i, v in reversed(list(enumerate(pred))))
    )
    result = runner.invoke(
        app, ["score", str(t), str(tmp_path / "p.csv"), "--json"], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    assert _prf(json.loads(result.stdout)["event_pa"]) == (0.4, 1.0, 0.5714)


def test_mismatched_timestamp_is_named(tmp_path: Path) -> None:
    t = _write(tmp_path / "truth.csv", [0, 1, 0])
    p = tmp_path / "pred.csv"
    p.write_text("timestamp,label\n1600000000,0\n1600000060,1\n1600000999,0\n")
    result = runner.invoke(app, ["score", str(t), str(p)])
    assert result.exit_code == 2
    assert "1600000120" in result.stderr and "1600000999" in result.stderr


def test_missing_prediction_column(tmp_path: Path) -> None:
    t = _write(tmp_path / "truth.csv", [0, 1, 0])
    p = _write(tmp_path / "pred.csv", [0, 1, 0], column="score")
    result = runner.invoke(app, ["score", str(t), str(p)])
    assert result.exit_code == 2
    assert "'label' or 'pred' or 'anomaly'" in result.stderr


def test_non_binary_label_names_the_line_as_the_loaders_do(tmp_path: Path) -> None:
    t = _write(tmp_path / "truth.csv", [0, 1, 0])
    p = tmp_path / "pred.csv"
    p.write_text("timestamp,pred\n1600000000,0\n1600000060,0.7\n1600000120,0\n")
    result = runner.invoke(app, ["score", str(t), str(p)])
    assert result.exit_code == 2
    assert f"{p}, line 3: pred 0.7 is not 0/1" in result.stderr  # header = line 1
    p.write_text("timestamp,pred\n1600000000,0\n\n1600000060,x\n\n")  # a blank line counts
    result = runner.invoke(app, ["score", str(t), str(p)])
    assert result.exit_code == 2
    assert f"{p}, line 4: pred 'x'" in result.stderr
    p.write_text("timestamp,pred\n1600000000,0\n1600000000,1\n")
    result = runner.invoke(app, ["score", str(t), str(p)])
    assert f"{p}, line 3: duplicate timestamp" in result.stderr


def test_no_true_events_reports_undefined(tmp_path: Path) -> None:
    doc = _score(tmp_path, [0, 0, 0, 0], [0, 1, 0, 0])
    assert doc["event_pa"]["recall"] is None and doc["event_pa"]["f1"] is None
    assert doc["event_pa"]["precision"] == 0.0 and doc["event_pa"]["fp"] == 1


def test_table_output(tmp_path: Path) -> None:
    t = _write(tmp_path / "truth.csv", VECTOR_A[0])
    p = _write(tmp_path / "pred.csv", VECTOR_A[1])
    result = runner.invoke(app, ["score", str(t), str(p), "--delay", "2"])
    assert result.exit_code == 0, result.output
    assert "event-PA" in result.stdout and "0.5714" in result.stdout
    assert "2-delay" in result.stdout and "0.3636" in result.stdout
