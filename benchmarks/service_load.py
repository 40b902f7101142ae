"""Service throughput under concurrent clients: a real ``argos serve`` (uvicorn) on loopback.

Prints, for each workload, requests/s, points/s and p50/p99 request latency with N concurrent
clients, next to the same work done by a :class:`~argos.online.detector.Detector` (isolated
workers) called
directly in this process, measured in the same run (the ratio is what HTTP + JSON + the service
cost):

1. **stream**: each client owns a few series and pushes 100-point micro-batches
   (``POST /v1/streams/{series}/points``);
2. **scrape**: each request carries one new point for each of 200 series of the client
   (``POST /v1/points``), the shape of a metrics scrape;
3. **batch**: each client labels whole 10k-point series (``POST /v1/detect``).

Usage: ``.venv/bin/python benchmarks/service_load.py [--rules DIR] [--clients N] [--seconds S]``
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np

from argos.online.checks import verification_sample
from argos.online.detector import Detector, DetectorSettings
from argos.online.points import Point

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "bench-token"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(rules: Path, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    cmd = [
        sys.executable,
        "-c",
        "from argos.cli import main; main()",
        "serve",
        "--rules",
        str(rules),
        "--port",
        str(port),
        "--token",
        TOKEN,
        "--max-body-bytes",
        str(16 * 1024 * 1024),
        "--log-level",
        "warning",
    ]
    proc = subprocess.Popen(cmd, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return proc, base
        except httpx.TransportError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit(f"server did not start; see {log}")


def run_clients(
    base: str, clients: int, seconds: float, make_request: str, points_per_request: int
) -> tuple[int, int, list[float]]:
    """Run ``clients`` threads for ``seconds``; (requests, errors, latencies)."""
    lat: list[float] = []
    count = [0, 0]
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def client(ci: int) -> None:
        t, v = verification_sample(10_000 if make_request == "batch" else 200_000, seed=ci)
        mine: list[float] = []
        ok = bad = 0
        pos = [0] * 5
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {TOKEN}"}) as c:
            n = 0
            while time.monotonic() < stop:
                if make_request == "stream":
                    j = n % 5  # round-robin over this client's five series, each in time order
                    sl = slice(pos[j], pos[j] + points_per_request)
                    pos[j] += points_per_request
                    body = {
                        "points": [
                            {"timestamp": int(x), "value": float(y)}
                            for x, y in zip(t[sl], v[sl], strict=True)
                        ]
                    }
                    url = f"/v1/streams/c{ci}-s{j}/points"
                elif make_request == "scrape":
                    vals = v[(n * points_per_request) % (len(v) - points_per_request) :]
                    body = {
                        "points": [
                            {"series": f"c{ci}-h{j}", "timestamp": 60 * n, "value": float(vals[j])}
                            for j in range(points_per_request)
                        ]
                    }
                    url = "/v1/points"
                else:
                    body = {"timestamps": t.tolist(), "values": v.tolist()}
                    url = "/v1/detect"
                t0 = time.perf_counter()
                r = c.post(url, json=body, timeout=120)
                mine.append(time.perf_counter() - t0)
                if r.status_code == 200:
                    ok += 1
                else:
                    bad += 1
                n += 1
        with lock:
            lat.extend(mine)
            count[0] += ok
            count[1] += bad

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return count[0], count[1], lat


def direct_rate(rules: Path, kind: str, points_per_request: int, n_requests: int) -> float:
    """Points/s of the same work through a Detector in this process (isolated workers)."""
    with Detector.open(rules, DetectorSettings(verify=False)) as det:
        if kind == "scrape":
            rng = np.random.default_rng(0)
            t0 = time.perf_counter()
            for r in range(n_requests):
                vals = rng.normal(50, 5, size=points_per_request)
                det.push(
                    [Point(f"h{j}", 60 * r, float(vals[j])) for j in range(points_per_request)]
                )
            return points_per_request * n_requests / (time.perf_counter() - t0)
        if kind == "stream":
            t, v = verification_sample(points_per_request * n_requests, seed=99)
            t0 = time.perf_counter()
            for a in range(0, len(v), points_per_request):
                det.push_arrays("s", t[a : a + points_per_request], v[a : a + points_per_request])
            return len(v) / (time.perf_counter() - t0)
        t, v = verification_sample(10_000, seed=99)
        t0 = time.perf_counter()
        for _ in range(n_requests):
            det.detect_arrays(t, v)
        return 10_000 * n_requests / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rules", type=Path, default=ROOT / "tests" / "fixtures" / "rules" / "basic")
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=10.0)
    args = ap.parse_args()
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs; rules {args.rules}")
    with tempfile.TemporaryDirectory() as tmp:
        proc, base = start_server(args.rules, Path(tmp) / "server.log")
        try:
            for kind, ppr in (("stream", 100), ("scrape", 200), ("batch", 10_000)):
                ok, bad, lat = run_clients(base, args.clients, args.seconds, kind, ppr)
                secs = args.seconds
                direct = direct_rate(args.rules, kind, ppr, 10 if kind == "batch" else 50)
                pts = ok * ppr / secs
                print(
                    f"\n{kind}: {args.clients} clients x {secs:g} s, {ppr} points per request"
                    f"\n   {ok / secs:8.1f} requests/s   {pts / 1e3:8.1f} k points/s   "
                    f"p50 {np.percentile(lat, 50) * 1e3:.1f} ms   p99 "
                    f"{np.percentile(lat, 99) * 1e3:.1f} ms   non-200: {bad}"
                    f"\n   same work on a Detector called directly: {direct / 1e3:8.1f} k points/s"
                    f"  (service / direct = {pts / direct:.2f})"
                )
            health = httpx.get(f"{base}/healthz", timeout=5).json()
            print(f"\nafter the load: /healthz {health}")
        finally:
            proc.terminate()
            proc.wait(timeout=20)


if __name__ == "__main__":
    main()
