"""Online detector throughput and latency, with every baseline measured in the same run.

Prints:
1. **batch**: a whole series through a typical rule set, as points/s, for (a) each rule's
   ``detect`` called directly on the arrays in this process (the practical limit), (b) the
   detector in-process, (c) the detector with isolated rule workers; ratios against (a);
2. **streaming, one point per push** (a single series, the worst case for latency): points/s and
   p50/p99 per-point latency, in-process and isolated;
3. **streaming, scrape-style micro-batches** (one point for each of many series per push):
   points/s and p50/p99 per push, in-process and isolated;
4. the **isolation overhead** (isolated time / in-process time) of each workload.

Rule sets (unless ``--rules`` names a folder): a typical builtin-generator export (rolling
z-score, robust z-score, level shift, z-score of differences with a cool-down; rendered from
:mod:`argos.templates`), the same without the robust z-score (all O(n)), and two O(n) rules that
pass the packing check (static band, flat line), which shows what packed micro-batches give.
The series is the longest real KPI series when the benchmark data is available,
else a synthetic one. The load average is printed first: other processes on a shared host
inflate every number.

Usage: ``.venv/bin/python benchmarks/detector_throughput.py [--rules DIR] [--stream-points N]``
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from argos.artifacts import RuleSource, write_ruleset
from argos.detector import Detector, Point, verification_sample
from argos.rule_worker import compile_rule

COOLDOWN = 10
ROOT = Path(__file__).resolve().parents[1]


def typical_ruleset(folder: Path, with_median: bool = True) -> Path:
    """Four rules of the builtin generator's grammar, exported as a rule set (three without the
    robust z-score, whose rolling median costs O(window) per point)."""
    from argos.templates import RuleSpec, Structure, render

    specs = {
        "zscore_w60": RuleSpec(Structure("value", "zscore", (("window", 60.0),), "both", 1), 4.0),
        "robust_z_w50": RuleSpec(
            Structure("value", "robust_z", (("window", 50.0),), "both", 1), 6.0
        ),
        "level_shift": RuleSpec(
            Structure("value", "level_shift", (("recent", 10.0), ("window", 60.0)), "both", 2), 3.0
        ),
        "diff_zscore": RuleSpec(
            Structure("diff", "zscore", (("window", 60.0),), "both", 1), 5.0, cooldown=COOLDOWN
        ),
    }
    if not with_median:
        del specs["robust_z_w50"]
    name = "typical" if with_median else "linear-time"
    write_ruleset(folder, [RuleSource(k, render(s)) for k, s in specs.items()], {"name": name})
    return folder


def packable_ruleset(folder: Path) -> Path:
    """Two O(n) rules that pass the packing check (static band, flat line), from the fixtures."""
    fixtures = ROOT / "tests" / "fixtures" / "rules" / "basic"
    sources = [
        RuleSource("band", (fixtures / "threshold.py").read_text(), {"low": -1e9, "high": 1e9}),
        RuleSource("flat_line", (fixtures / "flat_line.py").read_text(), {"eps": 0.0}),
    ]
    write_ruleset(folder, sources, {"name": "packable"})
    return folder


def load_series(max_points: int) -> tuple[str, np.ndarray, np.ndarray]:
    """The longest real KPI series (capped), or a synthetic one."""
    root = os.environ.get("ARGOS_DATA_DIR") or str(ROOT.parent / "shared" / "datasets")
    if (Path(root) / "kpi").is_dir():
        from argos.loaders import load_kpi

        ds = load_kpi(Path(root) / "kpi")
        s = max(ds.series, key=len)
        return f"KPI {s.id[:8]} ({len(s)} points)", s.timestamps[:max_points], s.values[:max_points]
    t, v = verification_sample(max_points, seed=1)
    return f"synthetic ({max_points} points)", t, v


def best_of(fn: Callable[[], Any], repeats: int) -> float:
    """Minimum wall time of ``repeats`` calls (seconds)."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def pct(xs: list[float], q: float) -> float:
    """Percentile ``q`` (0-100) of ``xs``."""
    return float(np.percentile(np.asarray(xs), q))


def batch_section(rules: Path, t: np.ndarray, v: np.ndarray, repeats: int) -> None:
    n = len(v)
    with Detector.open(rules, isolation="inprocess", verify=False) as det:
        fns = [(compile_rule(r.id, r.code), dict(r.params)) for r in det.ruleset.rules]

        def direct() -> None:
            for fn, params in fns:
                fn(v, t, dict(params))

        t_direct = best_of(direct, repeats)
        per_rule = [
            (r.id, best_of(lambda fn=fn, params=params: fn(v, t, dict(params)), repeats))
            for r, (fn, params) in zip(det.ruleset.rules, fns, strict=True)
        ]
        t_inproc = best_of(lambda: det.detect_arrays(t, v), repeats)
    with Detector.open(rules, verify=False) as det:
        det.detect_arrays(t, v)  # warm-up
        t_iso = best_of(lambda: det.detect_arrays(t, v), repeats)
    print(f"\n1. batch, {len(fns)} rules, {n} points (best of {repeats})")
    for rid, secs in per_rule:
        print(f"   (rule {rid:22s} alone, direct: {n / secs / 1e6:8.2f} M points/s)")
    print(f"   direct numpy calls     {n / t_direct / 1e6:8.2f} M points/s   1.00x")
    print(
        f"   detector in-process    {n / t_inproc / 1e6:8.2f} M points/s   "
        f"{t_inproc / t_direct:.2f}x the direct time"
    )
    print(
        f"   detector isolated      {n / t_iso / 1e6:8.2f} M points/s   "
        f"{t_iso / t_direct:.2f}x the direct time"
    )


def single_point_stream(det: Detector, t: np.ndarray, v: np.ndarray) -> tuple[float, list[float]]:
    """Push one point at a time; (total seconds, per-point latencies)."""
    lat = []
    t_all = time.perf_counter()
    for i in range(len(v)):
        p = [Point("s", int(t[i]), float(v[i]))]
        t0 = time.perf_counter()
        det.push(p)
        lat.append(time.perf_counter() - t0)
    return time.perf_counter() - t_all, lat


def scrape_stream(
    det: Detector, n_series: int, rounds: int, warm: int = 0
) -> tuple[float, list[float]]:
    """Each push carries one new point for every series; (total seconds, per-push latencies).

    ``warm`` points per series are pushed first (one push holding all of them, not timed), so
    every series starts with a full rule history: the steady state of a long-running service.
    """
    rng = np.random.default_rng(0)
    names = [f"host-{i}/cpu" for i in range(n_series)]
    base = rng.normal(50, 5, size=n_series)
    t0_ts = 1_700_000_000
    if warm:
        det.push(
            [
                Point(names[i], t0_ts + 60 * r, float(base[i] + rng.normal()))
                for i in range(n_series)
                for r in range(warm)
            ]
        )
    lat = []
    t_all = time.perf_counter()
    for r in range(warm, warm + rounds):
        vals = base + rng.normal(0, 1, size=n_series)
        pts = [Point(names[i], t0_ts + 60 * r, float(vals[i])) for i in range(n_series)]
        t0 = time.perf_counter()
        det.push(pts)
        lat.append(time.perf_counter() - t0)
    return time.perf_counter() - t_all, lat


def stream_sections(rules: Path, t: np.ndarray, v: np.ndarray, n_series: int, rounds: int) -> None:
    n = len(v)
    res: dict[str, tuple[float, list[float]]] = {}
    for iso in ("inprocess", "worker"):
        with Detector.open(rules, isolation=iso, verify=False) as det:  # type: ignore[arg-type]
            det.push_arrays("warm", t[:200], v[:200])
            res[f"one-{iso}"] = single_point_stream(det, t, v)
        # verified, so that rules passing the packing check run packed (as in a service)
        with Detector.open(rules, isolation=iso) as det:  # type: ignore[arg-type]
            warm = max(r.lookback for r in det.ruleset.rules)
            res[f"scrape-{iso}"] = scrape_stream(det, n_series, rounds, warm)
    print(f"\n2. streaming, one point per push, one series, {n} points")
    for iso, label in (("inprocess", "in-process"), ("worker", "isolated  ")):
        total, lat = res[f"one-{iso}"]
        print(
            f"   {label}  {n / total / 1e3:8.1f} k points/s   p50 {pct(lat, 50) * 1e3:.3f} ms"
            f"   p99 {pct(lat, 99) * 1e3:.3f} ms per point"
        )
    pts = n_series * rounds
    print(
        f"\n3. streaming, scrape-style: {n_series} series x {rounds} pushes ({pts} points), "
        "every series with a full rule history"
    )
    for iso, label in (("inprocess", "in-process"), ("worker", "isolated  ")):
        total, lat = res[f"scrape-{iso}"]
        print(
            f"   {label}  {pts / total / 1e3:8.1f} k points/s   p50 {pct(lat, 50) * 1e3:.2f} ms"
            f"   p99 {pct(lat, 99) * 1e3:.2f} ms per push of {n_series} points"
        )
    print("\n4. isolation overhead (isolated time / in-process time, same workload)")
    for kind, label in (("one", "one point per push"), ("scrape", "scrape micro-batches")):
        ratio = res[f"{kind}-worker"][0] / res[f"{kind}-inprocess"][0]
        print(f"   {label:22s} {ratio:.2f}x")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rules", type=Path, default=None, help="rule-set folder (default: typical)")
    ap.add_argument("--batch-points", type=int, default=300_000)
    ap.add_argument("--stream-points", type=int, default=5_000)
    ap.add_argument("--series", type=int, default=1_000, help="series in the scrape workload")
    ap.add_argument("--rounds", type=int, default=30, help="pushes in the scrape workload")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    name, t, v = load_series(args.batch_points)
    print(f"series: {name}")
    with tempfile.TemporaryDirectory() as tmp:
        sets = (
            [args.rules]
            if args.rules
            else [
                typical_ruleset(Path(tmp) / "typical"),
                typical_ruleset(Path(tmp) / "linear", with_median=False),
                packable_ruleset(Path(tmp) / "packable"),
            ]
        )
        for rules in sets:
            with Detector.open(rules, isolation="inprocess") as det:
                print(
                    f"\n=== rule set {det.ruleset.name}: "
                    + ", ".join(
                        f"{k} (exact={e.exact}, packed={e.packed})"
                        for k, e in det.exactness.items()
                    )
                )
            batch_section(rules, t, v, args.repeats)
            stream_sections(
                rules, t[: args.stream_points], v[: args.stream_points], args.series, args.rounds
            )


if __name__ == "__main__":
    main()
