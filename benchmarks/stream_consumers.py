"""Scaled-out stream detection on Redis Streams: throughput with 1, 2 and 4 detector consumers.

Starts a private ``redis-server`` on loopback (random port, no persistence, temp dir), publishes
scrape-style points (one point of every series per timestamp) to the partition streams, starts
N consumer processes (``argos stream consume``, rules in isolated workers, the default), and
measures the steady-state rate at which the group's backlog falls: from the moment every consumer
holds its share of partitions until 5% of the points are left. Ratios are against 1 consumer,
measured in the same run. Then it measures the state one series costs: in a consumer's process
(``tracemalloc``, the detector + the rule engine's history) and in Redis (the snapshot).

The machine's cores bound the scaling: every consumer (and its rule worker) and the Redis server
share them; the load average is printed first.

Usage: ``.venv/bin/python benchmarks/stream_consumers.py [--series 1000] [--points 150]``
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
import redis

from argos.online.detector import Detector, DetectorSettings
from argos.online.points import Point
from argos.online.streams import StreamConfig, backlog, ensure_streams, publish
from argos.rules.artifacts import RuleSource, write_ruleset
from argos.rules.grammar import RuleSpec, Structure
from argos.rules.templates import render


def ruleset(folder: Path) -> Path:
    """Three linear-time rules of the builtin grammar (rolling z-score, level shift, z-score of
    differences): LOOKBACK 60-70, a typical exported set."""
    specs = {
        "zscore_w60": RuleSpec(Structure("value", "zscore", (("window", 60.0),), "both", 1), 4.0),
        "level_shift": RuleSpec(
            Structure("value", "level_shift", (("recent", 10.0), ("window", 60.0)), "both", 2), 3.0
        ),
        "diff_zscore": RuleSpec(Structure("diff", "zscore", (("window", 60.0),), "both", 1), 5.0),
    }
    write_ruleset(folder, [RuleSource(k, render(s)) for k, s in specs.items()], {"name": "bench"})
    return folder


def scrape_points(n_series: int, n_points: int, seed: int = 0) -> list[Point]:
    """One point of every series per minute, for ``n_points`` minutes."""
    rng = np.random.default_rng(seed)
    t0 = 1_700_000_000
    phase = rng.uniform(0, 2 * np.pi, n_series)
    out = []
    for i in range(n_points):
        vals = 50 + 10 * np.sin(phase + i / 30) + rng.normal(0, 1, n_series)
        out.extend(Point(f"s{j}", t0 + 60 * i, float(vals[j])) for j in range(n_series))
    return out


def start_redis(folder: Path) -> tuple[subprocess.Popen[bytes], str]:
    exe = shutil.which("redis-server")
    if exe is None:
        sys.exit("redis-server not found: run scripts/ensure_redis.sh (as root)")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    proc = subprocess.Popen(
        [*cmd, "--dir", str(folder)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url)
    for _ in range(200):
        try:
            client.ping()
            return proc, url
        except redis.ConnectionError:
            time.sleep(0.05)
    proc.kill()
    sys.exit("redis-server did not start")


def _tree_rss(pid: int) -> int:
    """Resident bytes of a process and its children (the consumer and its rule worker)."""
    import psutil

    try:
        proc = psutil.Process(pid)
        return int(sum(p.memory_info().rss for p in [proc, *proc.children(recursive=True)]))
    except psutil.Error:
        return 0


def run_consumers(
    url: str, rules: Path, points: list[Point], n: int, partitions: int
) -> tuple[float, int, float, int]:
    """Points/s of ``n`` consumers in steady state; also returns the points measured, the
    seconds the measurement window lasted and the consumers' resident memory (bytes, with their
    rule workers)."""
    client = redis.Redis.from_url(url)
    client.flushall()
    cfg = StreamConfig(prefix=f"bench{n}", partitions=partitions, batch=500)
    ensure_streams(client, cfg)
    publish(client, cfg, points, chunk=5000)
    total = backlog(client, cfg)
    share = -(-partitions // n)
    procs = []
    for i in range(n):
        cmd = [sys.executable, "-m", "argos", "stream", "consume", "--redis", url]
        cmd += ["--rules", str(rules), "--name", f"c{i}", "--prefix", cfg.prefix]
        cmd += ["--partitions", str(partitions), "--batch", str(cfg.batch)]
        procs.append(subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
    try:
        t0 = b0 = None
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            owners = [o for o in client.mget([cfg.lease(k) for k in range(partitions)]) if o]
            counts = {o: owners.count(o) for o in owners}
            left = backlog(client, cfg)
            if t0 is None and len(counts) == n and max(counts.values()) <= share:
                t0, b0 = time.perf_counter(), left
            if left <= total * 0.05:
                break
            time.sleep(0.005)
        t1 = time.perf_counter()
        if t0 is None or b0 is None:
            raise RuntimeError(f"{n} consumers never shared the partitions")
        done = b0 - backlog(client, cfg)
        rss = sum(_tree_rss(p.pid) for p in procs)
        return done / (t1 - t0), done, t1 - t0, rss
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            p.wait(30)
        client.close()


def traced_state(rules: Path, n_series: int, n_points: int) -> tuple[int, int]:
    """Bytes allocated (tracemalloc) by a detector with an in-process engine while ``n_series``
    series get ``n_points`` points each; also returns the rule set's largest LOOKBACK."""
    points = scrape_points(n_series, n_points, seed=1)
    with Detector.open(rules, DetectorSettings(isolation="inprocess")) as det:
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        for i in range(n_points):
            det.push(points[i * n_series : (i + 1) * n_series])
        after = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        return after - before, max(r.lookback for r in det.ruleset.rules)


def state_memory(rules: Path, n_series: int = 1000, n_points: int = 72) -> tuple[float, float]:
    """Bytes of stream state per series: in a detector process (everything the detector and its
    in-process engine still hold after ``n_series`` series got a full history, divided by the
    series: an upper bound that includes per-push buffers, which do not grow linearly) and in
    Redis (the snapshot's JSON)."""
    traced_state(rules, 50, n_points)  # warm up: module-level caches are not series state
    held, lookback = traced_state(rules, n_series, n_points)
    # the Redis snapshot: JSON of the last LOOKBACK-1 points + counters
    import json

    snap = json.dumps(
        {
            "last_ts": 1_700_000_000,
            "post": {"pos": 1, "run": 0, "last_raw": 0, "last_anomaly": 0, "last_alert": 0},
            "t": [1_700_000_000 + 60 * i for i in range(lookback - 1)],
            "v": [50.123456789012 + i for i in range(lookback - 1)],
        }
    )
    return held / n_series, float(len(snap))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--series", type=int, default=1000)
    ap.add_argument("--points", type=int, default=150, help="points per series")
    ap.add_argument("--partitions", type=int, default=8)
    args = ap.parse_args()
    print(f"load average: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    points = scrape_points(args.series, args.points)
    print(
        f"{len(points)} points: {args.series} series x {args.points} minutes, "
        f"{args.partitions} partitions, rules in isolated workers"
    )
    with tempfile.TemporaryDirectory() as tmp:
        rules = ruleset(Path(tmp) / "rules")
        proc, url = start_redis(Path(tmp))
        try:
            rates: dict[int, float] = {}
            head = f"{'consumers':>9} {'points/s':>10} {'vs 1':>6} {'measured':>9}"
            print(f"{head} {'window s':>9} {'RSS MB/consumer':>16}")
            for n in (1, 2, 4):
                rate, done, secs, rss = run_consumers(url, rules, points, n, args.partitions)
                rates[n] = rate
                print(
                    f"{n:>9} {rate:>10.0f} {rate / rates[1]:>5.2f}x {done:>9} {secs:>9.2f} "
                    f"{rss / n / 2**20:>16.0f}"
                )
        finally:
            proc.terminate()
            proc.wait(10)
        per_series, snap = state_memory(rules)
        print(
            f"state per series: {per_series:.0f} B in a detector process (tracemalloc, 1,000 "
            f"series with a full history, upper bound), {snap:.0f} B snapshot in Redis"
        )


if __name__ == "__main__":
    main()
