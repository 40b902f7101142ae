"""A fleet of rule sets in one process: routing, isolation, lazy opening, per-set reload, a killed
worker, on the committed KPI rule sets (``rules/kpi``, a training run folder) and real KPI data."""

from __future__ import annotations

import os
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from argos.data.series import Dataset
from argos.online.detector import Detector, DetectorSettings
from argos.online.fleet import Fleet, Routes, RuleSetEntry, UnroutedSeriesError, scan_rule_sets
from argos.online.points import Point, PointResult
from argos.online.postprocess import PostProcessing
from argos.online.service import ServiceConfig, create_app
from argos.rules.artifacts import RuleSetError, RuleSource, load_ruleset, write_ruleset
from argos.sandbox.workers import RuleWorkerError

KPI_RULES = Path(__file__).resolve().parents[2] / "rules" / "kpi"
BASIC = Path(__file__).resolve().parents[1] / "fixtures" / "rules" / "basic"
# a few series whose own set flags points in the first 3,000 test points; LONG has the largest
# LOOKBACK (424), SHORT's rules (LOOKBACK <= 57) replace LONG's in the reload test
SERIES = [
    "301c70d8-1630-35ac-8f96-bc1b6f4359ea",
    "431a8542-c468-3988-a508-3afd06a218da",
    "55f8b8b8-b659-38df-b3df-e4a5a8a54bc9",
    "0efb375b-b902-3661-ab23-9a0bb799f4e3",
]
LONG, SHORT = SERIES[2], SERIES[1]
N = 3000

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def kpi_slices(kpi_dataset: Dataset) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The first N test points of each series."""
    out = {}
    for s in kpi_dataset.series:
        if s.id in SERIES:
            a = int(s.meta["test_start"])
            out[s.id] = (s.timestamps[a : a + N].copy(), s.values[a : a + N].copy())
    return out


def own_labels(folder: Path, t: np.ndarray, v: np.ndarray) -> np.ndarray:
    """What the series' own rule set gives alone (batch, trusted in-process)."""
    with Detector.open(folder, DetectorSettings(isolation="inprocess", verify=False)) as det:
        return det.detect_arrays(t, v).anomaly


@pytest.fixture(scope="module")
def expected(kpi_slices: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, np.ndarray]:
    return {s: own_labels(KPI_RULES / s, t, v) for s, (t, v) in kpi_slices.items()}


def scrapes(
    data: dict[str, tuple[np.ndarray, np.ndarray]], seed: int, start: int = 0, stop: int = N
) -> Iterator[list[Point]]:
    """Micro-batches mixing every series: 1..40 new points of each per push."""
    rng = np.random.default_rng(seed)
    pos = dict.fromkeys(data, start)
    while any(p < stop for p in pos.values()):
        batch = []
        for s, (t, v) in data.items():
            k = int(rng.integers(1, 41))
            a, b = pos[s], min(stop, pos[s] + k)
            batch += [Point(s, int(t[i]), float(v[i])) for i in range(a, b)]
            pos[s] = b
        yield batch


def collect(results: list[PointResult], into: dict[str, list[PointResult]]) -> None:
    for r in results:
        into.setdefault(r.series, []).append(r)


def anomalies(rs: list[PointResult]) -> np.ndarray:
    return np.array([r.anomaly for r in rs])


# ------------------------------------------------------------------------------------------------
# Routing (manifests only)
# ------------------------------------------------------------------------------------------------


def test_routes_prefer_listed_series_then_partition_then_default(tmp_path: Path) -> None:
    per_series = RuleSetEntry("s1", tmp_path, series=("A1/real_3",))
    part = RuleSetEntry("a1", tmp_path, series=("A1/real_1", "A1/real_3"), partition="A1")
    twin = RuleSetEntry("s2", tmp_path, series=("A1/real_3",))
    r = Routes.build([part, per_series, twin], default="fallback")
    assert r.route("A1/real_3") == "s1"  # the per-series unit wins over its partition's set
    assert r.route("A1/real_1") == "a1"
    assert r.route("A1/real_99") == "a1"  # a new series of the partition
    assert r.route("A2/real_1") == "fallback"
    assert r.conflicts == ["series 'A1/real_3' is listed by s1 and s2; routing it to s1"]
    assert Routes.build([per_series], default=None).route("other") is None


def test_scan_reads_a_run_folder_and_says_what_a_bad_folder_is(tmp_path: Path) -> None:
    entries, failed, single = scan_rule_sets(KPI_RULES)
    assert not single and not failed and len(entries) == 29
    assert entries[SERIES[0]].series == (SERIES[0],)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(RuleSetError, match=r"no manifest\.json here or in any sub-folder"):
        scan_rule_sets(empty)
    with pytest.raises(RuleSetError, match="one rule set that serves every series"):
        Fleet(KPI_RULES / SERIES[0], default_rules=KPI_RULES / SERIES[1])


def test_settings_reach_every_set_and_open_single_opens_only_a_single_set(tmp_path: Path) -> None:
    post = PostProcessing(min_duration=2, cooldown=5)
    settings = DetectorSettings(isolation="inprocess", post=post, verify=False)
    with Fleet(BASIC, settings=settings).open_single() as fleet:
        assert fleet.open_keys == ["basic"]  # opened at once
        det = fleet.detector("basic")
        assert det.post == post and det.engine.isolation.startswith("none")
    assert Fleet(BASIC).settings == DetectorSettings(strict=False)  # a fleet serves, and warns
    with Fleet(KPI_RULES, settings=settings).open_single() as fleet:
        assert fleet.open_keys == []  # a folder of sets: each opens when its series arrives
        det = fleet.detector(SERIES[0])
        assert det.post == post and det.engine.isolation.startswith("none")


def test_a_fleet_that_freezes_the_heap_does_so_each_time_a_set_opens() -> None:
    import gc

    settings = DetectorSettings(isolation="inprocess", verify=False)
    gc.unfreeze()
    try:
        with Fleet(KPI_RULES, settings=settings) as fleet:
            fleet.detector(SERIES[0])
            assert gc.get_freeze_count() == 0  # a library caller's heap is left alone
        with Fleet(KPI_RULES, settings=settings, freeze_heap=True) as fleet:
            fleet.detector(SERIES[0])
            first = gc.get_freeze_count()
            assert first > 0
            extra = [[i] for i in range(1000)]  # objects alive when the next set opens
            fleet.detector(SERIES[1])
            opened = gc.get_freeze_count()
            assert opened >= first + len(extra)
            more = [[i] for i in range(1000)]
            fleet.push([Point(SERIES[2], 1_500_000_000, 1.0)])  # a new series: frozen after
            assert gc.get_freeze_count() >= opened + len(more)
            frozen = gc.get_freeze_count()
            fleet.push([Point(SERIES[2], 1_500_000_060, 1.0)])  # a known one: no freeze
            assert gc.get_freeze_count() <= frozen  # (frozen objects may still be freed)
    finally:
        gc.unfreeze()


def test_open_single_refuses_a_broken_set_and_closes_the_fleet(tmp_path: Path) -> None:
    folder = tmp_path / "broken"
    shutil.copytree(BASIC, folder)
    (folder / "threshold.py").write_text("# edited after packing\n")
    fleet = Fleet(folder, settings=DetectorSettings(isolation="inprocess", verify=False))
    with pytest.raises(RuleSetError, match="threshold"):
        fleet.open_single()
    with pytest.raises(RuleWorkerError, match="the fleet is closed"):
        fleet.detector(fleet.keys[0])


# ------------------------------------------------------------------------------------------------
# The committed KPI fleet on real data
# ------------------------------------------------------------------------------------------------


def test_fleet_gives_each_kpi_series_its_own_sets_labels_and_refuses_the_unknown(
    kpi_slices: dict[str, tuple[np.ndarray, np.ndarray]], expected: dict[str, np.ndarray]
) -> None:
    data = {**kpi_slices, "no-such-kpi": kpi_slices[SERIES[0]]}
    got: dict[str, list[PointResult]] = {}
    with Fleet(KPI_RULES) as fleet:
        assert fleet.open_keys == []  # nothing opened before a series arrives
        for batch in scrapes(data, seed=1):
            collect(fleet.push(batch), got)
        assert sorted(fleet.open_keys) == sorted(SERIES)  # only the sets in use
        pids = {k: fleet.detector(k).engine.pids for k in SERIES}  # type: ignore[attr-defined]
        all_pids = [p for ps in pids.values() for p in ps]
        n_rules = sum(len(fleet.detector(k).rule_ids) for k in SERIES)
        assert len(set(all_pids)) == len(all_pids) == n_rules  # a process per rule, none shared
        stats = fleet.stats()
        describe = fleet.describe()
    for s in SERIES:
        assert [r.status for r in got[s]] == ["ok"] * N
        assert {r.ruleset for r in got[s]} == {s}
        np.testing.assert_array_equal(anomalies(got[s]), expected[s])
    assert sum(expected[s].sum() for s in SERIES) > 10
    refused = got["no-such-kpi"]
    assert {r.status for r in refused} == {"unrouted"}
    assert "no rule set for series 'no-such-kpi'" in refused[0].detail
    assert stats["unrouted"] == N and stats["points"] == N * len(SERIES)
    listed = {d["key"]: d for d in describe["rulesets"]}
    assert len(listed) == 29 and listed[SERIES[0]]["series"] == [SERIES[0]]
    assert listed[SERIES[0]]["open"] and not listed["05f10d3a-239c-3bef-9bdc-a2feeb0037aa"]["open"]


def test_default_rules_serve_series_no_set_lists(
    kpi_slices: dict[str, tuple[np.ndarray, np.ndarray]],
) -> None:
    t, v = kpi_slices[SERIES[0]]
    with Fleet(
        KPI_RULES,
        default_rules=KPI_RULES / SERIES[0],
        settings=DetectorSettings(isolation="inprocess", strict=False),
    ) as fleet:
        res = fleet.push([Point("new-kpi", int(a), float(b)) for a, b in zip(t, v, strict=True)])
        det, batch = fleet.detect_arrays("new-kpi", t, v)
    assert {r.ruleset for r in res} == {"default"} and det.key == "default"
    np.testing.assert_array_equal(anomalies(res), own_labels(KPI_RULES / SERIES[0], t, v))
    np.testing.assert_array_equal(batch.anomaly, anomalies(res))
    with (
        Fleet(KPI_RULES, settings=DetectorSettings(isolation="inprocess", strict=False)) as fleet,
        pytest.raises(UnroutedSeriesError),
    ):
        fleet.detect_arrays("new-kpi", t, v)


def test_reload_of_one_set_during_traffic_and_a_failed_reload_keep_the_others(
    tmp_path: Path,
    kpi_slices: dict[str, tuple[np.ndarray, np.ndarray]],
    expected: dict[str, np.ndarray],
) -> None:
    run = tmp_path / "run"
    shutil.copytree(KPI_RULES, run)
    got: dict[str, list[PointResult]] = {}
    with Fleet(run) as fleet:
        for batch in scrapes(kpi_slices, seed=2, stop=N // 2):
            collect(fleet.push(batch), got)
        before = {k: fleet.detector(k) for k in SERIES}
        # re-export LONG's set with SHORT's rules (a smaller LOOKBACK: its history suffices)
        short = load_ruleset(KPI_RULES / SHORT)
        sources = [RuleSource(e.id, short.codes[e.id], e.params) for e in short.rules]
        write_ruleset(run / LONG, sources, {"training": {"dataset": "kpi", "series": [LONG]}})
        report = fleet.reload()
        assert report.reloaded == [LONG] and not report.failed
        assert len(report.unchanged) == 28
        for k in SERIES:
            assert (fleet.detector(k) is before[k]) == (k != LONG)
        # a tampered set: reported, and its series keep the previous version
        rule = next((run / SERIES[0]).glob("*.py"))
        rule.write_text(rule.read_text() + "\n# tampered\n")
        report = fleet.reload()
        assert list(report.failed) == [SERIES[0]] and "tampered" in report.failed[SERIES[0]]
        assert SERIES[0] in fleet.load_errors
        listed = {d["key"]: d for d in fleet.describe()["rulesets"]}
        assert "tampered" in listed[SERIES[0]]["load_error"]
        for batch in scrapes(kpi_slices, seed=3, start=N // 2):
            collect(fleet.push(batch), got)
    for s in SERIES:
        assert [r.status for r in got[s]] == ["ok"] * N
        if s != LONG:
            np.testing.assert_array_equal(anomalies(got[s]), expected[s])
    t, v = kpi_slices[LONG]
    after = own_labels(KPI_RULES / SHORT, t, v)
    np.testing.assert_array_equal(anomalies(got[LONG])[: N // 2], expected[LONG][: N // 2])
    np.testing.assert_array_equal(anomalies(got[LONG])[N // 2 :], after[N // 2 :])


def test_a_killed_worker_of_one_set_recovers_and_the_others_never_notice(
    kpi_slices: dict[str, tuple[np.ndarray, np.ndarray]], expected: dict[str, np.ndarray]
) -> None:
    victim = SERIES[0]
    got: dict[str, list[PointResult]] = {}
    with Fleet(KPI_RULES) as fleet:
        for batch in scrapes(kpi_slices, seed=4, stop=N // 2):
            collect(fleet.push(batch), got)
        engines = {k: fleet.detector(k).engine for k in SERIES}
        pids = {k: list(e.pids) for k, e in engines.items()}  # type: ignore[attr-defined]
        os.kill(pids[victim][0], signal.SIGKILL)
        first_after = len(got[victim])
        for batch in scrapes(kpi_slices, seed=5, start=N // 2):
            collect(fleet.push(batch), got)
        assert engines[victim].wait_ready()  # type: ignore[attr-defined]
        restarts = {k: e.restarts for k, e in engines.items()}  # type: ignore[attr-defined]
        new_pids = {k: list(e.pids) for k, e in engines.items()}  # type: ignore[attr-defined]
    assert restarts[victim] == 1 and new_pids[victim] != pids[victim]
    for s in SERIES:
        if s == victim:
            continue
        assert restarts[s] == 0 and new_pids[s] == pids[s]
        assert not any(r.errors for r in got[s])
        np.testing.assert_array_equal(anomalies(got[s]), expected[s])
    # the victim: one micro-batch lost (labels false, errors named), then exact labels again
    errored = [i for i, r in enumerate(got[victim]) if r.errors]
    assert errored and errored[0] == first_after
    resumed = errored[-1] + 1
    np.testing.assert_array_equal(anomalies(got[victim])[resumed:], expected[victim][resumed:])


def test_service_serves_the_kpi_run_folder(
    kpi_slices: dict[str, tuple[np.ndarray, np.ndarray]], expected: dict[str, np.ndarray]
) -> None:
    two = SERIES[:2]
    with TestClient(create_app(ServiceConfig(rules=KPI_RULES, isolation="inprocess"))) as c:
        labels: dict[str, list[bool]] = {s: [] for s in two}
        for step in range(0, N, 500):
            pts = [
                {"series": s, "timestamp": int(t), "value": float(v)}
                for s in two
                for t, v in zip(*(a[step : step + 500] for a in kpi_slices[s]), strict=True)
            ]
            pts.append({"series": "nobody", "timestamp": step, "value": 1.0})
            r = c.post("/v1/points", json={"points": pts})
            assert r.status_code == 200, r.text
            for p in r.json()["results"]:
                if p["series"] in labels:
                    labels[p["series"]].append(p["anomaly"])
                    if p["anomaly"]:
                        assert p["ruleset"] == p["series"]
                        assert set(p["rules"]) <= set(r.json()["conditions"][p["series"]])
                else:
                    assert p["status"] == "unrouted" and "no rule set" in p["error"]
        for s in two:
            assert labels[s] == expected[s].tolist()
        t, v = kpi_slices[two[0]]
        body = {"series": two[0], "timestamps": t.tolist(), "values": v.tolist()}
        out = c.post("/v1/detect", json=body).json()
        assert out["ruleset"] == two[0] and out["labels"] == expected[two[0]].tolist()
        assert c.post("/v1/detect", json={**body, "series": "nobody"}).status_code == 404
        info = c.get("/v1/rulesets").json()
        assert len(info["rulesets"]) == 29
        assert sum(d["open"] for d in info["rulesets"]) == 2
        text = c.get("/metrics").text
        assert f'argos_points_total{{outcome="ok",ruleset="{two[0]}"}} {2 * N}.0' in text  # + batch
        # 6 streamed points and the refused batch of N points
        assert f'argos_points_total{{outcome="unrouted",ruleset="none"}} {N + 6}.0' in text
        assert f'argos_ruleset_push_seconds_count{{ruleset="{two[1]}"}}' in text
        assert "argos_unrouted_series 1.0" in text


def test_service_reload_of_one_set_and_a_failed_set_are_reported(tmp_path: Path) -> None:
    run = tmp_path / "run"
    for s in SERIES[:3]:
        shutil.copytree(KPI_RULES / s, run / s)
    app = create_app(ServiceConfig(rules=run, isolation="inprocess"))
    with TestClient(app) as c:
        pts = [{"series": s, "timestamp": 1, "value": 1.0} for s in SERIES[:3]]
        assert c.post("/v1/points", json={"points": pts}).json()["accepted"] == 3
        rule = next((run / SERIES[0]).glob("*.py"))
        rule.write_text(rule.read_text() + "\n# tampered\n")
        r = c.post("/v1/rulesets/reload")
        assert r.status_code == 409 and SERIES[0] in r.json()["detail"]
        text = c.get("/metrics").text
        assert f'argos_ruleset_load_error{{ruleset="{SERIES[0]}"}} 1.0' in text
        assert f'argos_ruleset_reloads_total{{result="failed",ruleset="{SERIES[0]}"}} 1.0' in text
        listed = {d["key"]: d for d in c.get("/v1/rulesets").json()["rulesets"]}
        assert "tampered" in listed[SERIES[0]]["load_error"]
        assert listed[SERIES[1]]["load_error"] is None
        # its series keep the previous version: the next point is labelled, not refused
        pts = [{"series": s, "timestamp": 2, "value": 1.0} for s in SERIES[:3]]
        out = c.post("/v1/points", json={"points": pts}).json()
        assert out["accepted"] == 3 and {p["status"] for p in out["results"]} == {"ok"}
        # a new set appears: added, opened when its series arrives
        shutil.copytree(KPI_RULES / SERIES[3], run / SERIES[3])
        rule.write_text(rule.read_text().replace("\n# tampered\n", ""))
        r = c.post("/v1/rulesets/reload")
        assert r.status_code == 200, r.text
        assert r.json()["added"] == [SERIES[3]] and r.json()["failed"] == {}
        assert f'argos_ruleset_load_error{{ruleset="{SERIES[0]}"}}' not in c.get("/metrics").text
        pts = [{"series": SERIES[3], "timestamp": 1, "value": 1.0}]
        assert c.post("/v1/points", json={"points": pts}).json()["results"][0]["status"] == "ok"
