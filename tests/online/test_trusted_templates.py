"""``isolation="auto"``: rules whose file is byte for byte a builtin template rendering run in the
detector's process, every other rule (one changed byte is enough) in its own worker, and the
labels are exactly those of every rule in a worker."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from argos.data.series import Dataset
from argos.online.checks import verification_sample
from argos.online.detector import Detector, DetectorSettings
from argos.online.engines import TEMPLATES_INPROCESS
from argos.online.fleet import Fleet
from argos.online.points import Point, PointResult
from argos.rules.artifacts import RuleSource, write_ruleset
from argos.rules.grammar import RuleSpec, Structure
from argos.rules.templates import render
from argos.sandbox.kernel import InProcessEngine
from argos.sandbox.mixed import MixedEngine
from argos.sandbox.workers import WorkerEngine

KPI_RULES = Path(__file__).resolve().parents[2] / "rules" / "kpi"
KPI_SERIES = "301c70d8-1630-35ac-8f96-bc1b6f4359ea"

pytestmark = pytest.mark.timeout(300)

ZSCORE = RuleSpec(Structure("value", "zscore", (("window", 60.0),), "both", 1), 3.0)
SHIFT = RuleSpec(
    Structure("value", "level_shift", (("recent", 10.0), ("window", 60.0)), "both", 2), 2.0
)


def mixed_set(folder: Path) -> Path:
    """A template rendering as it is, and another one with one byte changed (a space in its
    docstring: the same numbers, but no longer our own code)."""
    edited = render(SHIFT).replace("Abnormal:", "Abnormal: ", 1)
    write_ruleset(folder, [RuleSource(ZSCORE.name, render(ZSCORE)), RuleSource(SHIFT.name, edited)])
    return folder


def stream(det: Detector | Fleet, data: dict[str, tuple[np.ndarray, np.ndarray]]) -> list[tuple]:
    """Every series pushed together in irregular micro-batches; what each point got."""
    out: list[tuple] = []
    n = min(len(v) for _, v in data.values())
    rng = np.random.default_rng(3)
    a = 0
    while a < n:
        b = min(n, a + int(rng.integers(1, 40)))
        pts = [Point(s, int(t[i]), float(v[i])) for s, (t, v) in data.items() for i in range(a, b)]
        res: list[PointResult] = det.push(pts)
        out += [(r.series, r.timestamp, r.status, r.anomaly, r.alert, r.fired) for r in res]
        a = b
    return out


def test_an_edited_template_runs_in_a_worker_and_the_labels_are_the_isolated_ones(
    tmp_path: Path,
) -> None:
    folder = mixed_set(tmp_path / "set")
    t, v = verification_sample()
    data = {"a": (t, v), "b": (t + 7, v[::-1].copy()), "c": (t, v * 3 + 1)}
    with Detector.open(folder, DetectorSettings(isolation="auto")) as det:
        engine = det.engine
        assert isinstance(engine, MixedEngine)
        assert engine.trusted_ids == {ZSCORE.name}
        assert engine.rule_pids(ZSCORE.name) == []  # in this process
        assert len(engine.rule_pids(SHIFT.name)) == 1  # one changed byte: its own worker
        assert det.rule_ids == (ZSCORE.name, SHIFT.name)
        assert all(det.stream_exact.values())
        assert "1 builtin-template rules in-process" in det.describe()["isolation"]
        auto = stream(det, data)
        state = det.export_state(["a"])[0]
        batch = det.detect_arrays(t, v)
    with Detector.open(folder, DetectorSettings(isolation="worker")) as det:
        assert isinstance(det.engine, WorkerEngine)
        assert len(det.engine.pids) == 2
        isolated = stream(det, data)
        assert det.export_state(["a"])[0] == state  # the longer history, carried over as is
        assert np.array_equal(det.detect_arrays(t, v).anomaly, batch.anomaly)
    assert auto == isolated
    assert any(r[3] for r in auto) and any(r[5] == (SHIFT.name,) for r in auto)


def test_a_quarantined_trusted_rule_stops_in_this_process(tmp_path: Path) -> None:
    folder = mixed_set(tmp_path / "set")
    with Detector.open(folder, DetectorSettings(isolation="auto", verify=False)) as det:
        det.engine.quarantine(ZSCORE.name, "test")
        det.engine.quarantine(SHIFT.name, "test too")
        assert set(det.engine.quarantined) == {ZSCORE.name, SHIFT.name}
        t, v = verification_sample()
        assert not det.detect_arrays(t, v).anomaly.any()


def test_committed_kpi_set_runs_in_process_with_the_labels_of_its_workers(
    kpi_dataset: Dataset,
) -> None:
    s = next(x for x in kpi_dataset.series if x.id == KPI_SERIES)
    a = int(s.meta["test_start"])
    data = {
        KPI_SERIES: (s.timestamps[a : a + 2500], s.values[a : a + 2500]),
        f"{KPI_SERIES}-copy": (s.timestamps[a + 500 : a + 3000], s.values[a + 500 : a + 3000]),
    }
    with Fleet(
        KPI_RULES,
        settings=DetectorSettings(isolation="auto", strict=False),
        default_rules=KPI_RULES / KPI_SERIES,
    ) as fleet:
        auto = stream(fleet, data)
        engine = fleet.detector(KPI_SERIES).engine
        assert isinstance(engine, InProcessEngine) and engine.isolation == TEMPLATES_INPROCESS
    with Fleet(
        KPI_RULES,
        settings=DetectorSettings(isolation="worker", strict=False),
        default_rules=KPI_RULES / KPI_SERIES,
    ) as fleet:
        isolated = stream(fleet, data)
        assert isinstance(fleet.detector(KPI_SERIES).engine, WorkerEngine)
    assert auto == isolated
    assert sum(r[3] for r in auto) > 0


def test_a_parallel_fleet_pushes_in_process_sets_in_the_calling_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Threads would only contend for the GIL: sets that run in this process are pushed by the
    caller while the sets with worker processes run in the pool."""
    write_ruleset(
        tmp_path / "run" / "a",
        [RuleSource(ZSCORE.name, render(ZSCORE))],
        {"training": {"dataset": "d", "partition": "pa", "series": []}},
    )
    default = mixed_set(tmp_path / "b")
    threads: dict[str, list[str]] = {}
    push = Detector.push

    def recording(self: Detector, points: Sequence[Point]) -> list[PointResult]:
        threads.setdefault(self.key, []).append(threading.current_thread().name)
        return push(self, points)

    monkeypatch.setattr(Detector, "push", recording)
    t, v = verification_sample(300)
    t, v = t[:80], v[:80]
    with Fleet(
        tmp_path / "run",
        settings=DetectorSettings(isolation="auto", strict=False),
        parallel=2,
        default_rules=default,
    ) as fleet:
        for i in range(len(v)):
            pts = [Point("pa/x", int(t[i]), float(v[i])), Point("y", int(t[i]), float(v[i]))]
            assert [r.status for r in fleet.push(pts)] == ["ok", "ok"]
        assert isinstance(fleet.detector("a").engine, InProcessEngine)
        assert isinstance(fleet.detector(fleet.routes.route("y") or "").engine, MixedEngine)
    main = threading.current_thread().name
    in_process = threads.pop("a")
    (mixed,) = threads.values()
    assert in_process[1:] == [main] * (len(v) - 1)  # the first push opened it, in the pool
    assert main not in mixed and len(mixed) == len(v)
