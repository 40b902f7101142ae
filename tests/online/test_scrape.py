"""The scrape fast path: a fleet's in-process rule sets pushed together, one new point per series,
template rules labelled by their last-point form (:mod:`argos.rules.lastpoint`), rules of several
sets sharing a score computed once. Its labels are exactly each set's own batch labels, on random
data and on real KPI data with the committed KPI rule sets; a set with a worker rule, a
quarantined rule and dropped points in a scrape keep their usual behaviour."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import argos.sandbox.kernel as kernel_module
from argos.data.series import Dataset
from argos.online.detector import Detector, DetectorSettings
from argos.online.fleet import Fleet
from argos.online.points import Point, PointResult
from argos.online.postprocess import PostProcessing
from argos.rules.artifacts import RuleSource, load_ruleset, write_ruleset
from argos.rules.grammar import Gate, RuleSpec, Structure
from argos.rules.templates import render
from argos.sandbox.kernel import InProcessEngine

KPI_RULES = Path(__file__).resolve().parents[2] / "rules" / "kpi"

pytestmark = pytest.mark.timeout(300)


def template_sets(out: Path, n_sets: int) -> list[str]:
    """``n_sets`` sets of template rules (partition ``p<j>``): a z-score and a level shift with
    thresholds of their own (the score is shared across sets), a gated rule with a cool-down,
    and in set 0 a run length of identical values (no last-point form: it runs itself)."""
    rng = np.random.default_rng(5)
    zscore = Structure("value", "zscore", (("window", 30.0),), "both", 1)
    shift = Structure("value", "level_shift", (("recent", 5.0), ("window", 20.0)), "up", 2)
    diff = Structure("diff", "static", (), "both", 1)
    gate = Gate(Structure("value", "relative", (("window", 10.0),), "both", 1), 0.05)
    stuck = Structure("value", "flat", (), "up", 1)
    names = []
    for j in range(n_sets):
        specs = [
            RuleSpec(zscore, float(rng.uniform(2.0, 3.5))),
            RuleSpec(shift, float(rng.uniform(1.0, 2.0))),
            RuleSpec(diff, float(rng.uniform(1.5, 3.0)), cooldown=4, gate=gate),
        ]
        if j == 0:
            specs.append(RuleSpec(stuck, 6.0))
        write_ruleset(
            out / f"p{j}",
            [RuleSource(s.name, render(s)) for s in specs],
            {"training": {"dataset": "synthetic", "partition": f"p{j}", "series": []}},
        )
        names.append(f"p{j}")
    return names


def noisy(rng: np.random.Generator, n: int) -> np.ndarray:
    v = rng.normal(10, 1, n)
    v[rng.integers(0, n, n // 25)] += rng.choice([-7, 7], n // 25)
    v[n // 2 :] += 3
    v[n // 3 : n // 3 + 30] = 10.0
    return v


def scrape(
    fleet: Fleet, data: dict[str, tuple[np.ndarray, np.ndarray]], warm: int
) -> Iterator[list[PointResult]]:
    """The first ``warm`` points in chunks, then one point per series per push."""
    n = min(len(v) for _, v in data.values())
    for a in range(0, warm, 50):
        b = min(warm, a + 50)
        yield fleet.push(
            [Point(s, int(t[i]), float(v[i])) for s, (t, v) in data.items() for i in range(a, b)]
        )
    for i in range(warm, n):
        yield fleet.push([Point(s, int(t[i]), float(v[i])) for s, (t, v) in data.items()])


def own_batch(
    folder: Path, t: np.ndarray, v: np.ndarray, post: PostProcessing
) -> tuple[list[tuple], list[tuple]]:
    """The set's own batch labels (every rule called on the whole series): (anomaly, alert,
    incident) and the rules fired, per point."""
    settings = DetectorSettings(isolation="inprocess", verify=False, post=post)
    with Detector.open(folder, settings) as det:
        b = det.detect_arrays(t, v)
        fired = [
            tuple(det.rule_ids[r] for r in np.flatnonzero(b.rule_labels[:, i]))
            for i in range(len(v))
        ]
        labels = list(zip(b.anomaly.tolist(), b.alert.tolist(), b.incident.tolist(), strict=True))
        return labels, fired


class SpyEvaluate:
    """Counts the last-point evaluations and how many rule sets each served."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[int] = []
        real = kernel_module.evaluate_last

        def spy(requests: Sequence[Any], *series: Any) -> list[np.ndarray]:
            self.calls.append(len(requests))
            return real(requests, *series)

        monkeypatch.setattr(kernel_module, "evaluate_last", spy)


def check_against_own_sets(
    folder: Path,
    data: dict[str, tuple[np.ndarray, np.ndarray]],
    results: dict[str, list[PointResult]],
    post: PostProcessing,
) -> int:
    """Every series' scrape labels (anomaly, alert, incident, fired rules) equal its own set's
    batch labels; returns the anomalies."""
    total = 0
    for s, (t, v) in data.items():
        got = results[s]
        assert [r.status for r in got] == ["ok"] * len(v)
        labels, fired = own_batch(folder / s.split("/")[0], t, v, post)
        assert [(r.anomaly, r.alert, r.incident) for r in got] == labels, s
        assert [r.fired for r in got] == fired, s
        total += sum(a for a, _, _ in labels)
    return total


def test_a_scrape_over_template_sets_gives_each_sets_own_labels(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    parts = template_sets(tmp_path, 5)
    rng = np.random.default_rng(0)
    data = {}
    for i in range(15):
        v = noisy(rng, 400)
        data[f"{parts[i % 5]}/s{i}"] = (np.arange(len(v), dtype=np.int64) * 60, v)
    spy = SpyEvaluate(monkeypatch)
    results: dict[str, list[PointResult]] = {}
    post = PostProcessing(min_duration=2, cooldown=5, incident_gap=3)
    with Fleet(tmp_path, settings=DetectorSettings(isolation="auto", post=post)) as fleet:
        for res in scrape(fleet, data, 100):
            for r in res:
                results.setdefault(r.series, []).append(r)
        for key in parts:
            engine = fleet.detector(key).engine
            assert isinstance(engine, InProcessEngine)
            forms = dict(zip(engine.rule_ids, engine.kernel.programs, strict=True))
            assert [rid for rid, p in forms.items() if p is None] == (
                ["flat_value_up"] if key == "p0" else []
            )
    # the scrape's pushes labelled the steady rows of all five sets in one evaluation each
    assert spy.calls and max(spy.calls) == 5 * 3
    assert check_against_own_sets(tmp_path, data, results, post) > 20


def test_a_scrape_keeps_dropped_points_quarantine_and_worker_rules(tmp_path: Path) -> None:
    """A duplicate and a non-finite point in a scrape are dropped with their status; a
    quarantined rule stays silent in the fast path; a set with an edited rule (a worker) is
    pushed on its own with the same labels."""
    parts = template_sets(tmp_path / "run", 3)
    edited = tmp_path / "run" / "p2"
    rs = load_ruleset(edited)
    sources = [RuleSource(e.id, rs.codes[e.id], e.params) for e in rs.rules]
    sources[0] = RuleSource(
        sources[0].id, sources[0].code.replace("Abnormal:", "Abnormal: ", 1), sources[0].params
    )
    write_ruleset(edited, sources, {"training": {"dataset": "d", "partition": "p2", "series": []}})
    rng = np.random.default_rng(1)
    data = {f"{parts[i % 3]}/s{i}": noisy(rng, 200) for i in range(6)}
    with Fleet(tmp_path / "run", settings=DetectorSettings(isolation="auto")) as fleet:
        for a in range(0, 150, 50):
            fleet.push(
                [Point(s, i * 60, float(v[i])) for s, v in data.items() for i in range(a, a + 50)]
            )
        assert not isinstance(fleet.detector("p2").engine, InProcessEngine)
        p1 = fleet.detector("p1")
        p1.engine.quarantine(p1.rule_ids[0], "test")
        names = list(data)
        pts = [Point(s, 150 * 60, float(data[s][150])) for s in names]
        pts[1] = Point(names[1], 149 * 60, 1.0)  # a duplicate
        pts[2] = Point(names[2], 150 * 60, float("nan"))
        res = fleet.push(pts)
        assert [r.status for r in res] == ["ok", "duplicate", "invalid", "ok", "ok", "ok"]
        for i in range(151, 200):
            for r in fleet.push([Point(s, i * 60, float(v[i])) for s, v in data.items()]):
                assert r.status == "ok"
                if r.ruleset == "p1":
                    assert p1.rule_ids[0] not in r.fired
        assert fleet.stats()["dropped_duplicate"] == 1
        assert fleet.stats()["dropped_invalid"] == 1


def test_a_scrape_over_kpi_sets_gives_each_sets_own_labels_on_kpi_data(
    kpi_dataset: Dataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Six committed KPI sets (partition copies), two series each, scraped after a history
    longer than every set's LOOKBACK: the labels of each set alone, template rules by their
    last-point form (most KPI rules have one)."""
    # four series whose own set flags points early in the test part (see test_fleet.py), and
    # two more sets
    chosen = [
        "301c70d8-1630-35ac-8f96-bc1b6f4359ea",
        "431a8542-c468-3988-a508-3afd06a218da",
        "55f8b8b8-b659-38df-b3df-e4a5a8a54bc9",
        "0efb375b-b902-3661-ab23-9a0bb799f4e3",
        "05f10d3a-239c-3bef-9bdc-a2feeb0037aa",
        "1c6d7a26-1f1a-3321-bb4d-7a9d969ec8f0",
    ]
    series = {s.id: s for s in kpi_dataset.series}
    data = {}
    for j, k in enumerate(chosen):
        rs = load_ruleset(KPI_RULES / k)
        write_ruleset(
            tmp_path / f"p{j}",
            [RuleSource(e.id, rs.codes[e.id], e.params) for e in rs.rules],
            {"training": {"dataset": "kpi", "partition": f"p{j}", "series": []}},
        )
        s = series[k]
        a = int(s.meta["test_start"])
        for c in range(2):
            data[f"p{j}/{k}-{c}"] = (
                s.timestamps[a + 300 * c : a + 300 * c + 3000].copy(),
                s.values[a + 300 * c : a + 300 * c + 3000].copy(),
            )
    spy = SpyEvaluate(monkeypatch)
    results: dict[str, list[PointResult]] = {}
    with Fleet(tmp_path, settings=DetectorSettings(isolation="auto", strict=False)) as fleet:
        for res in scrape(fleet, data, 450):
            for r in res:
                results.setdefault(r.series, []).append(r)
    assert spy.calls and max(spy.calls) >= 6
    assert check_against_own_sets(tmp_path, data, results, PostProcessing()) > 0


def test_a_steady_scrape_reuses_its_routing_and_slots_only_while_they_hold(
    tmp_path: Path,
) -> None:
    """A steady scrape (the same series in the same order) reuses the fleet's routing and each
    set's slots push after push. Forgetting series (a slot moves), importing a state and a
    series that joins mid-way change them: the labels, counters and stream state must equal
    those of a fleet pushed the same points in another order every time (never reused)."""
    parts = template_sets(tmp_path, 3)
    rng = np.random.default_rng(3)
    data = {f"{parts[i % 3]}/s{i}": noisy(rng, 260) for i in range(9)}
    names = list(data)
    post = PostProcessing(min_duration=2, cooldown=5, incident_gap=3)
    settings = DetectorSettings(isolation="auto", post=post)
    got: dict[str, dict[str, list[tuple[Any, ...]]]] = {"steady": {}, "shuffled": {}}
    with Fleet(tmp_path, settings=settings) as steady, Fleet(tmp_path, settings=settings) as other:
        for i in range(260):
            present = [s for s in names if not (s == names[8] and i < 120)]  # s8 joins late
            for kind, fleet in (("steady", steady), ("shuffled", other)):
                order = present if kind == "steady" else present[i % 7 :] + present[: i % 7]
                for r in fleet.push([Point(s, i * 60, float(data[s][i])) for s in order]):
                    row = (r.status, r.anomaly, r.alert, r.incident, r.fired)
                    got[kind].setdefault(r.series, []).append(row)
                if i == 150:  # s0 and s3 forgotten: the last slots of their sets move
                    fleet.forget([names[0], names[3]])
                if i == 200:  # s1's state exported, forgotten and imported back
                    state = fleet.export_state([names[1]])
                    fleet.forget([names[1]])
                    fleet.import_state(state)
        assert steady._routing is not None and steady._routing.names == present
        assert got["steady"] == got["shuffled"]
        assert sum(row[1] for rows in got["steady"].values() for row in rows) > 10

        def by_series(fleet: Fleet) -> dict[str, Any]:
            return {st.series: st.model_dump() for st in fleet.export_state()}

        assert by_series(steady) == by_series(other)
        assert steady.stats() == other.stats()


def test_a_steady_scrape_follows_a_reload_that_routes_a_series_elsewhere(tmp_path: Path) -> None:
    """A set added by a reload that lists a series the default set served takes it over on the
    next push of an unchanged steady scrape."""
    template_sets(tmp_path / "run", 1)
    template_sets(tmp_path / "default", 1)
    rng = np.random.default_rng(4)
    data = {s: noisy(rng, 80) for s in ("p0/a", "solo", "other")}
    with Fleet(tmp_path / "run", default_rules=tmp_path / "default" / "p0") as fleet:
        for i in range(40):
            res = fleet.push([Point(s, i * 60, float(v[i])) for s, v in data.items()])
        assert [r.ruleset for r in res] == ["p0", "default", "default"]
        rs = load_ruleset(tmp_path / "run" / "p0")
        write_ruleset(
            tmp_path / "run" / "solo_set",
            [RuleSource(e.id, rs.codes[e.id], e.params) for e in rs.rules],
            {"training": {"dataset": "d", "series": ["solo"]}},
        )
        fleet.reload()
        for i in range(40, 80):
            res = fleet.push([Point(s, i * 60, float(v[i])) for s, v in data.items()])
            assert [r.ruleset for r in res] == ["p0", "solo_set", "default"]
