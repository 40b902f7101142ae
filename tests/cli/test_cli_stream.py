"""``argos stream`` without a reachable Redis, and ``stream publish`` on a CSV it cannot read:
one error line each, exit 2 (the commands that reach a real Redis are in tests/online)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from argos.cli import app

runner = CliRunner()
NOWHERE = ["--redis", "redis://127.0.0.1:1/0"]
RULES = Path(__file__).resolve().parents[1] / "fixtures" / "rules" / "basic"


@pytest.mark.parametrize(
    "command",
    [["status"], ["consume", "--rules", str(RULES)], ["publish", "POINTS"]],
)
def test_no_reachable_redis_is_one_error_line(tmp_path: Path, command: list[str]) -> None:
    points = tmp_path / "points.csv"
    points.write_text("series,timestamp,value\na,1,1.5\n")
    args = ["stream", *[str(points) if a == "POINTS" else a for a in command], *NOWHERE]
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert result.output.startswith("error: cannot reach Redis at redis://127.0.0.1:1/0:")
    assert "redis-server" in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_publish_a_csv_without_a_series_column_says_which_column_and_how(tmp_path: Path) -> None:
    kpi = tmp_path / "kpi1.csv"
    kpi.write_text("timestamp,value,label\n1,2.0,0\n")
    result = runner.invoke(app, ["stream", "publish", str(kpi), *NOWHERE])
    assert result.exit_code == 2, result.output
    assert f"{kpi} has no 'series' column (or give --series NAME" in result.output
    assert "its header is timestamp,value,label" in result.output
    assert "cannot reach Redis" not in result.output  # the file is checked first
