"""Every committed rule set (rules/kpi, rules/yahoo, rules/nab) loads in the detector as it is by
default: strict, its stream-exactness check passed by every rule (a streamed label, computed from
the last LOOKBACK points, equals the batch label)."""

from __future__ import annotations

from pathlib import Path

import pytest

from argos.online.detector import Detector, DetectorSettings

RULES = Path(__file__).resolve().parents[2] / "rules"
SETS = sorted(p.parent for p in RULES.glob("*/*/manifest.json") if p.parts[-3] != "examples")


def test_the_committed_sets_are_found() -> None:
    assert {p.parent.name for p in SETS} == {"kpi", "yahoo", "nab"}
    assert len(SETS) >= 80


@pytest.mark.parametrize("folder", SETS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_committed_set_is_stream_exact(folder: Path) -> None:
    det = Detector.open(folder, DetectorSettings(isolation="inprocess", strict=True))
    try:
        assert det.stream_exact and all(det.stream_exact.values()), det.exactness
    finally:
        det.close()
