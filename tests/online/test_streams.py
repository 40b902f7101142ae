"""Scaled-out stream detection on Redis Streams against a real ``redis-server`` started per test
module: alerts equal batch detection's, takeover after a crash, fencing of a zombie consumer, and
SIGKILL of a consumer process mid-stream (no lost and no duplicated alerts)."""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from argos.data.demo import make_demo_dataset
from argos.data.series import Dataset
from argos.online.detector import Detector, DetectorSettings
from argos.online.fleet import Fleet
from argos.online.points import Point
from argos.online.postprocess import PostProcessing, SeriesState
from argos.online.streams import (
    StreamConfig,
    StreamConsumer,
    backlog,
    batch_alerts,
    partition_backlog,
    partition_of,
    publish,
    read_alerts,
)
from argos.rules.artifacts import RuleSource, write_ruleset
from argos.rules.grammar import RuleSpec, Structure
from argos.rules.templates import render

redis = pytest.importorskip("redis")

REDIS = shutil.which("redis-server")
pytestmark = pytest.mark.skipif(
    REDIS is None,
    reason="redis-server is not installed (run scripts/ensure_redis.sh as root to install it)",
)
POST = PostProcessing(min_duration=1, cooldown=5, incident_gap=3)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A private redis-server on loopback (random port, no persistence, in a temp dir)."""
    assert REDIS is not None
    folder = tmp_path_factory.mktemp("redis")
    port = _free_port()
    proc = subprocess.Popen(
        [
            REDIS,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(folder),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("redis-server did not start") from None
                time.sleep(0.05)
        yield url
    finally:
        client.close()
        proc.terminate()
        proc.wait(10)


@pytest.fixture()
def client(redis_url: str) -> Iterator[Any]:
    c = redis.Redis.from_url(redis_url)
    c.flushall()
    yield c
    c.close()


@pytest.fixture(scope="module")
def rules(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two builtin-grammar rules (rolling z-score, level shift): LOOKBACK 60 and 70."""
    folder = tmp_path_factory.mktemp("rules") / "set"
    specs = {
        "zscore_w60": RuleSpec(Structure("value", "zscore", (("window", 60.0),), "both", 1), 3.0),
        "level_shift": RuleSpec(
            Structure("value", "level_shift", (("recent", 10.0), ("window", 60.0)), "both", 2), 3.0
        ),
    }
    write_ruleset(folder, [RuleSource(k, render(s)) for k, s in specs.items()], {"name": "t"})
    return folder


def _points(n_series: int = 6, n_points: int = 1500) -> tuple[list[Point], dict[str, Any]]:
    """Demo series interleaved by timestamp (as a scraper would send them)."""
    ds = make_demo_dataset()
    series = {
        s.id: (s.timestamps[:n_points].tolist(), s.values[:n_points].tolist())
        for s in ds.series[:n_series]
    }
    points = [
        Point(sid, int(series[sid][0][i]), float(series[sid][1][i]))
        for i in range(n_points)
        for sid in series
    ]
    return points, series


def _key(a: dict[str, Any]) -> tuple[str, int]:
    return (a["series"], a["timestamp"])


def _assert_same_as_batch(got: list[dict[str, Any]], want: list[dict[str, Any]]) -> None:
    dupes = [k for k, n in Counter(map(_key, got)).items() if n > 1]
    assert not dupes, f"duplicated alerts: {dupes[:5]}"
    assert len(want) > 20  # the comparison has something to compare
    assert sorted(got, key=_key) == want


def _drain(consumers: list[StreamConsumer], client: Any, cfg: StreamConfig) -> None:
    for _ in range(10_000):
        if backlog(client, cfg) == 0:
            return
        for c in consumers:
            c.step()
    raise AssertionError("backlog not drained")


def test_partition_of_is_stable_and_spreads() -> None:
    assert partition_of("api_latency_ms", 8) == partition_of("api_latency_ms", 8)
    counts = Counter(partition_of(f"s{i}", 8) for i in range(800))
    assert len(counts) == 8 and min(counts.values()) > 60


@pytest.mark.timeout(120)
def test_one_consumer_gives_batch_alerts(client: Any, rules: Path) -> None:
    cfg = StreamConfig(prefix="t1", partitions=4, batch=200)
    points, series = _points()
    with Detector.open(rules, DetectorSettings(isolation="inprocess", post=POST)) as det:
        consumer = StreamConsumer(client, det, "c1", cfg)
        assert publish(client, cfg, points) == len(points)
        _drain([consumer], client, cfg)
        assert consumer.owned == {0, 1, 2, 3}
        assert consumer.stats.points == len(points)
        # acknowledged input is trimmed (approximately: whole stream nodes of ~100 entries)
        assert sum(client.xlen(cfg.stream(k)) for k in range(4)) < len(points) // 10
        want = batch_alerts(det, series)
    _assert_same_as_batch(read_alerts(client, cfg), want)


@pytest.mark.timeout(120)
def test_two_consumers_split_partitions_and_give_batch_alerts(client: Any, rules: Path) -> None:
    cfg = StreamConfig(prefix="t2", partitions=4, batch=100)
    points, series = _points()
    with (
        Detector.open(rules, DetectorSettings(isolation="inprocess", post=POST)) as d1,
        Detector.open(rules, DetectorSettings(isolation="inprocess", post=POST)) as d2,
    ):
        a = StreamConsumer(client, d1, "a", cfg)
        b = StreamConsumer(client, d2, "b", cfg)
        a.step()
        b.step()
        publish(client, cfg, points[: len(points) // 2])
        _drain([a, b], client, cfg)
        # both announced: the fair share is 2 partitions each, and a released 2 to b
        assert len(a.owned) == len(b.owned) == 2 and not a.owned & b.owned
        publish(client, cfg, points[len(points) // 2 :])
        _drain([a, b], client, cfg)
        assert a.stats.points > 0 and b.stats.points > 0
        want = batch_alerts(d1, series)
    _assert_same_as_batch(read_alerts(client, cfg), want)


@pytest.mark.timeout(120)
def test_crash_between_read_and_commit_is_taken_over_exactly_once(client: Any, rules: Path) -> None:
    cfg = StreamConfig(prefix="t3", partitions=2, batch=150, lease_ms=300, heartbeat_ms=300)
    points, series = _points(n_series=4)
    publish(client, cfg, points)
    with (
        Detector.open(rules, DetectorSettings(isolation="inprocess", post=POST)) as d1,
        Detector.open(rules, DetectorSettings(isolation="inprocess", post=POST)) as d2,
    ):
        a = StreamConsumer(client, d1, "a", cfg)
        for _ in range(5):
            a.step()
        done = a.stats.points
        assert 0 < done < len(points)

        def crash(*args: Any) -> bool:
            raise SystemExit("killed before EXEC")

        a._commit = crash  # type: ignore[method-assign,assignment]
        with pytest.raises(SystemExit):
            a.step()  # read a batch (now pending for a), died before committing
        pending = sum(client.xpending(cfg.stream(k), "detectors")["pending"] for k in range(2))
        assert pending == cfg.batch
        b = StreamConsumer(client, d2, "b", cfg)
        b.step()
        assert not b.owned  # a's leases have not expired yet
        time.sleep(0.4)
        _drain([b], client, cfg)
        assert b.owned == {0, 1}
        assert b.stats.claimed == cfg.batch and b.stats.restored >= 1
        assert b.stats.points == len(points) - done
        want = batch_alerts(d2, series)
    _assert_same_as_batch(read_alerts(client, cfg), want)


@pytest.mark.timeout(120)
def test_zombie_consumer_cannot_commit_after_losing_its_lease(client: Any, rules: Path) -> None:
    cfg = StreamConfig(prefix="t4", partitions=1, batch=100, lease_ms=200, heartbeat_ms=200)
    points, _ = _points(n_series=2, n_points=300)
    publish(client, cfg, points)
    with (
        Detector.open(rules, DetectorSettings(isolation="inprocess", post=POST)) as d1,
        Detector.open(rules, DetectorSettings(isolation="inprocess", post=POST)) as d2,
    ):
        a = StreamConsumer(client, d1, "a", cfg)
        a.step()
        time.sleep(0.3)  # a pauses past its lease; b takes the partition
        b = StreamConsumer(client, d2, "b", cfg)
        b.step()
        assert b.owned == {0}
        # a resumes without renewing: it can no longer read (nor commit) on the partition
        n = a._process_partition(0)
        assert n == 0 and a.stats.fenced == 1 and a.owned == set()
        _drain([b], client, cfg)
    assert b.stats.points + a.stats.points == len(points)


def _spawn(redis_url: str, rules: Path, name: str, cfg: StreamConfig) -> subprocess.Popen[str]:
    cmd = [sys.executable, "-m", "argos", "stream", "consume", "--redis", redis_url]
    cmd += ["--rules", str(rules), "--name", name, "--prefix", cfg.prefix]
    cmd += ["--partitions", str(cfg.partitions), "--lease-ms", str(cfg.lease_ms)]
    cmd += ["--batch", str(cfg.batch), "--cooldown", str(POST.cooldown)]
    cmd += ["--incident-gap", str(POST.incident_gap)]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.timeout(240)
def test_sigkill_a_consumer_process_mid_stream(client: Any, redis_url: str, rules: Path) -> None:
    cfg = StreamConfig(prefix="t5", partitions=6, batch=50, lease_ms=1000, heartbeat_ms=1000)
    points, series = _points(n_series=6, n_points=4000)
    publish(client, cfg, points)
    procs = {name: _spawn(redis_url, rules, name, cfg) for name in ("c1", "c2", "c3")}
    try:
        total = backlog(client, cfg)
        victim = None
        victim_parts: list[int] = []
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            # kill, once all three consumers share the work, the owner of the partition with the
            # most work left (so the kill lands in the middle of its partitions)
            owners = [client.get(cfg.lease(k)) for k in range(6)]
            left = partition_backlog(client, cfg)
            if len({o for o in owners if o is not None}) == 3 and backlog(client, cfg) < total:
                k_max = int(np.argmax(left))
                if left[k_max] > 100 and owners[k_max] is not None:
                    victim = owners[k_max].decode()
                    victim_parts = [k for k in range(6) if owners[k] == owners[k_max]]
                    break
            time.sleep(0.01)
        assert victim is not None, "consumers did not start sharing the work"
        procs[victim].send_signal(signal.SIGKILL)
        procs[victim].wait(10)
        deadline = time.monotonic() + 120
        while backlog(client, cfg) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert backlog(client, cfg) == 0
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs.values():
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
    survivors = [n for n in procs if n != victim]
    outs = {n: procs[n].communicate() for n in survivors}
    assert all(procs[n].returncode == 0 for n in survivors), [outs[n][1] for n in survivors]
    stats = [json.loads(outs[n][0].strip().splitlines()[-1]) for n in survivors]
    # the survivors took the victim's partitions over and rebuilt its series from snapshots
    assert sum(st["restored"] for st in stats) >= 1
    assert set(victim_parts) <= {k for st in stats for k in st["acquired"]}
    with Detector.open(rules, DetectorSettings(isolation="inprocess", post=POST)) as det:
        want = batch_alerts(det, series)
    _assert_same_as_batch(read_alerts(client, cfg), want)


def test_batch_alerts_has_the_record_format(rules: Path) -> None:
    _, series = _points(n_series=1, n_points=500)
    with Detector.open(rules, DetectorSettings(isolation="inprocess", post=POST)) as det:
        recs = batch_alerts(det, series)
    assert recs and set(recs[0]) == {"series", "timestamp", "alert", "incident", "fired", "ruleset"}
    assert all(r["fired"] for r in recs) and np.all(np.diff([r["timestamp"] for r in recs]) > 0)


@pytest.mark.timeout(60)
def test_cli_publish_and_status(client: Any, redis_url: str, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from argos.cli import app

    csv_file = tmp_path / "points.csv"
    csv_file.write_text("series,timestamp,value\na,1,1.5\nb,1,2.0\na,2,1.25\n")
    runner = CliRunner()
    common = ["--redis", redis_url, "--prefix", "cli", "--partitions", "3"]
    out = runner.invoke(app, ["stream", "publish", str(csv_file), *common])
    assert out.exit_code == 0 and "published 3 points" in out.output
    status = runner.invoke(app, ["stream", "status", *common])
    assert status.exit_code == 0
    doc = json.loads(status.stdout)
    assert doc["backlog"] == 3 and doc["alerts"] == 0 and set(doc["owners"]) == {"0", "1", "2"}
    bad = tmp_path / "bad.csv"
    bad.write_text("series,timestamp,value\na,x,1\n")
    out = runner.invoke(app, ["stream", "publish", str(bad), *common])
    assert out.exit_code == 2 and "bad row in" in out.output and "line 2" in out.output
    one = tmp_path / "one.csv"
    one.write_text("timestamp,value,label\n1,1.5,0\n2,1.0,0\n")
    out = runner.invoke(app, ["stream", "publish", str(one), *common, "--series", "cpu"])
    assert out.exit_code == 0 and "published 2 points" in out.output


@pytest.mark.timeout(120)
def test_an_unreadable_state_snapshot_is_skipped_not_fatal(client: Any, rules: Path) -> None:
    cfg = StreamConfig(prefix="tbad", partitions=2, batch=200)
    points, series = _points(n_series=2, n_points=300)
    first = next(iter(series))
    client.hset(cfg.state, first, '{"last_ts": 1, "t": [], "v": []}')  # an old or foreign format
    with Detector.open(rules, DetectorSettings(isolation="inprocess", post=POST)) as det:
        consumer = StreamConsumer(client, det, "c-bad", cfg)
        publish(client, cfg, points)
        _drain([consumer], client, cfg)
        assert consumer.stats.bad_snapshots == 1 and consumer.stats.restored == 0
        assert consumer.stats.points == len(points)
        # the series started afresh and its state is now written in the current format
        saved = SeriesState.model_validate_json(client.hget(cfg.state, first))
        assert saved.series == first and saved.last_timestamp == series[first][0][-1]


KPI_RULES = Path(__file__).resolve().parents[2] / "rules" / "kpi"


@pytest.mark.timeout(180)
def test_consumers_route_each_kpi_series_to_its_own_rule_set(
    client: Any, kpi_dataset: Dataset
) -> None:
    """A partition stream carries points of many rule sets: two consumers serving the committed
    KPI run folder give each series its own set's alerts; an unknown series is acknowledged and
    counted, never retried."""
    cfg = StreamConfig(prefix="fleet", partitions=4, batch=300)
    wanted = {
        "301c70d8-1630-35ac-8f96-bc1b6f4359ea",
        "431a8542-c468-3988-a508-3afd06a218da",
        "0efb375b-b902-3661-ab23-9a0bb799f4e3",
    }
    series: dict[str, Any] = {}
    for s in kpi_dataset.series:
        if s.id in wanted:
            a = int(s.meta["test_start"])
            series[s.id] = (s.timestamps[a : a + 2000].tolist(), s.values[a : a + 2000].tolist())
    series["no-such-kpi"] = series["0efb375b-b902-3661-ab23-9a0bb799f4e3"]
    points = [Point(k, int(t[i]), float(v[i])) for i in range(2000) for k, (t, v) in series.items()]
    fleets = [
        Fleet(KPI_RULES, settings=DetectorSettings(isolation="inprocess", post=POST, strict=False))
        for _ in range(2)
    ]
    try:
        consumers = [StreamConsumer(client, f, f"c{i}", cfg) for i, f in enumerate(fleets)]
        publish(client, cfg, points)
        _drain(consumers, client, cfg)
        assert sum(c.stats.unrouted for c in consumers) == 2000
        want = batch_alerts(fleets[0], series)
    finally:
        for f in fleets:
            f.close()
    got = read_alerts(client, cfg)
    assert all(a["ruleset"] == a["series"] for a in got)
    assert len({a["series"] for a in want}) == 3 and len(want) >= 10
    assert sorted(got, key=_key) == want
