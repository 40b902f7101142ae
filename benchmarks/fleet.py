"""A fleet of rule sets in one process (:class:`argos.online.fleet.Fleet`): speed and memory.

Every ratio is against direct numpy calls of the same rules on the same windows in the same run.

1. **KPI scrape**: the 29 committed ``rules/kpi`` sets served together, each series with a full
   history, one new point per series per push (a scrape of 29 points): points/s, p50/p99 push
   latency, RSS (PSS of this process and every rule worker). Direct: each rule called on its
   series' last ``LOOKBACK`` points.
2. **KPI batch replay**: the whole KPI test part (3.1 M points), each series labelled by its own
   set through the fleet (isolated workers) vs each rule called directly on the arrays.
3. **1,000-series scrape over 29 sets** (29 typical template sets, then the 29 KPI sets):
   1,000 series (34-35 per set, routed by partition), each filled with at least the sets'
   longest ``LOOKBACK`` of history first (the steady state), then one point each per push:
   points/s and p50/p99 push latency, sequential and with the sets pushed concurrently
   (``parallel``), against direct calls on each series' window.
4. **Synthetic fleet**: 10,000 series on 100 rule sets (typical template rules, thresholds
   varied): start-up (the first scrape, which opens all 100 sets: workers started, rules
   verified), RSS with no series and with every series holding a full history, RSS per series.

Sections 1, 3 and 4 run each workload twice (``--isolation both``, the default): with
``isolation="auto"`` (rules that are byte for byte a builtin template rendering run in the
fleet's process; every rule here is one, as in every set the builtin generator exports) and with
``isolation="worker"`` (every rule in its own locked-down process, as untrusted rules always run).

The fleets of sections 1, 3 and 4 are built as ``argos serve`` and ``argos stream consume``
build theirs, with ``freeze_heap=True`` (:class:`~argos.online.fleet.Fleet`: the heap alive when a
set opens is moved out of the garbage collector's reach, so a full collection during a push does
not rescan it).

The load average is printed first: other processes on a shared host inflate every number.

Usage: ``.venv/bin/python benchmarks/fleet.py [--sections 1,2,3,4] [--scrapes N]
[--isolation auto|worker|both]``
"""

from __future__ import annotations

import argparse
import gc
import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from argos.online.detector import DetectorSettings, Isolation
from argos.online.fleet import Fleet
from argos.online.points import Point
from argos.rules.artifacts import RuleSource, load_ruleset, write_ruleset
from argos.sandbox.kernel import compile_rule
from argos.sandbox.worker_zygote import zygote_pids

ROOT = Path(__file__).resolve().parents[1]
KPI_RULES = ROOT / "rules" / "kpi"
LABELS: dict[Isolation, str] = {
    "auto": "auto (templates in-process)",
    "worker": "isolated (a worker per rule)",
}


def pss_mb(pids: Sequence[int]) -> float:
    """Proportional set size of these processes, MB (shared pages counted once overall)."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/smaps_rollup") as fh:
                for line in fh:
                    if line.startswith("Pss:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


def fleet_pids(fleet: Fleet) -> list[int]:
    """This process, the rule-worker zygote and every rule worker of the open sets."""
    pids = [os.getpid(), *zygote_pids()]
    for k in fleet.open_keys:
        pids += list(getattr(fleet.detector(k).engine, "pids", []))
    return pids


def fleet_pss(fleet: Fleet) -> float:
    return pss_mb(fleet_pids(fleet))


def pct(xs: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(xs), q))


def kpi_series() -> dict[str, tuple[np.ndarray, np.ndarray, int]]:
    from argos.data.loaders import load_kpi

    root = os.environ.get("ARGOS_DATA_DIR") or str(ROOT.parent / "shared" / "datasets")
    ds = load_kpi(Path(root) / "kpi")
    return {s.id: (s.timestamps, s.values, int(s.meta["test_start"])) for s in ds.series}


def rule_fns(folder: Path) -> list[tuple[Any, dict[str, Any], int]]:
    """Each accepted rule's compiled ``detect``, params and LOOKBACK (trusted, in-process)."""
    rs = load_ruleset(folder)
    return [
        (compile_rule(e.id, rs.codes[e.id]), dict(e.params), max(1, e.lookback))
        for e in rs.rules
        if e.status == "accepted"
    ]


def direct_window(
    fns: list[tuple[Any, dict[str, Any], int]], t: np.ndarray, v: np.ndarray, end: int
) -> None:
    """What one new point at ``end`` costs called directly: each rule on its window."""
    for fn, params, lb in fns:
        a = max(0, end + 1 - lb)
        fn(v[a : end + 1], t[a : end + 1], dict(params))


def fill_history(fleet: Fleet, data: dict[str, tuple[np.ndarray, np.ndarray]], upto: int) -> None:
    """Push the first ``upto`` points of every series in chunks (a service that has run)."""
    for a in range(0, upto, 500):
        b = min(upto, a + 500)
        fleet.push(
            [Point(s, int(t[i]), float(v[i])) for s, (t, v) in data.items() for i in range(a, b)]
        )


def scrape_run(
    fleet: Fleet, data: dict[str, tuple[np.ndarray, np.ndarray]], start: int, scrapes: int
) -> tuple[float, list[float]]:
    """``scrapes`` pushes of one new point per series; (points/s, push latencies).

    The garbage of the set-up (data loading, the history fill: millions of objects) is collected
    first, as a service that has run collected it long ago: else Python's first full collection
    (about 40 ms with this heap) falls inside the timed pushes and is most of their p99."""
    gc.collect()
    lat = []
    names = list(data)
    t0 = time.perf_counter()
    for j in range(start, start + scrapes):
        pts = [Point(s, int(data[s][0][j]), float(data[s][1][j])) for s in names]
        a = time.perf_counter()
        res = fleet.push(pts)
        lat.append(time.perf_counter() - a)
        assert all(r.status == "ok" for r in res), {r.status for r in res}
    return len(names) * scrapes / (time.perf_counter() - t0), lat


def direct_scrape(
    fns: dict[str, list[tuple[Any, dict[str, Any], int]]],
    data: dict[str, tuple[np.ndarray, np.ndarray]],
    start: int,
    scrapes: int,
) -> float:
    t0 = time.perf_counter()
    for j in range(start, start + scrapes):
        for s, (t, v) in data.items():
            direct_window(fns[s], t, v, j)
    return len(data) * scrapes / (time.perf_counter() - t0)


def report_scrape(name: str, rate: float, lat: list[float], direct: float) -> None:
    print(
        f"   {name:34s} {rate / 1e3:8.1f} k points/s  push p50 {pct(lat, 50) * 1e3:6.2f} ms  "
        f"p99 {pct(lat, 99) * 1e3:6.2f} ms   {direct / rate:5.2f}x the direct time"
    )


# ------------------------------------------------------------------------------------------------


def section_kpi_scrape(
    kpi: dict[str, tuple[np.ndarray, np.ndarray, int]],
    scrapes: int,
    isolations: Sequence[Isolation],
) -> None:
    print("\n1. the 29 committed KPI rule sets served together: one new point per series per push")
    data = {s: (t[ts:], v[ts:]) for s, (t, v, ts) in kpi.items()}
    warm = 2000
    fns = {s: rule_fns(KPI_RULES / s) for s in data}
    direct = direct_scrape(fns, data, warm, scrapes)
    print(f"   direct numpy calls (each rule on its window)  {direct / 1e3:8.1f} k points/s")
    for iso in isolations:
        for parallel in (1, 4):
            t0 = time.perf_counter()
            with Fleet(
                KPI_RULES,
                parallel=parallel,
                settings=DetectorSettings(isolation=iso, strict=False),
                freeze_heap=True,
            ) as fleet:
                fill_history(fleet, data, warm)
                started = time.perf_counter() - t0
                rate, lat = scrape_run(fleet, data, warm, scrapes)
                rss, procs = fleet_pss(fleet), len(fleet_pids(fleet)) - 1
                report_scrape(f"fleet, {LABELS[iso]}, parallel={parallel}", rate, lat, direct)
                print(
                    f"   (open 29 sets + fill {warm} points of history: {started:.1f} s; "
                    f"PSS parent + {procs} rule processes {rss:.0f} MB)"
                )


def section_kpi_batch(kpi: dict[str, tuple[np.ndarray, np.ndarray, int]]) -> None:
    print("\n2. the whole KPI test part replayed in batch, each series by its own set")
    data = {s: (t[ts:], v[ts:]) for s, (t, v, ts) in kpi.items()}
    n = sum(len(v) for _, v in data.values())
    t0 = time.perf_counter()
    for s, (t, v) in data.items():
        for fn, params, _ in rule_fns(KPI_RULES / s):
            fn(v, t, dict(params))
    direct = time.perf_counter() - t0
    with Fleet(KPI_RULES, settings=DetectorSettings(verify=False, strict=False)) as fleet:
        for s in data:
            fleet.detector(s)
        t0 = time.perf_counter()
        for s, (t, v) in data.items():
            fleet.detect_arrays(s, t, v)
        iso = time.perf_counter() - t0
        rss = fleet_pss(fleet)
    print(f"   {n} points; direct numpy calls {n / direct / 1e6:6.2f} M points/s   1.00x")
    print(
        f"   fleet, isolated workers     {n / iso / 1e6:6.2f} M points/s   "
        f"{iso / direct:.2f}x the direct time; PSS {rss:.0f} MB"
    )


def partition_copy(src_sets: Sequence[Path], out: Path, prefix: str = "p") -> list[str]:
    """Re-export these sets under ``out`` with ``training.partition`` = p<j> (series
    ``p<j>/...`` route to set j); returns the partition names."""
    names = []
    for j, d in enumerate(src_sets):
        rs = load_ruleset(d)
        sources = [RuleSource(e.id, rs.codes[e.id], e.params) for e in rs.rules]
        part = f"{prefix}{j}"
        write_ruleset(
            out / part,
            sources,
            {"training": {"dataset": "bench", "partition": part, "series": []}},
        )
        names.append(part)
    return names


def typical_sets(out: Path, n_sets: int, seed: int = 0) -> list[str]:
    """``n_sets`` sets of two typical O(n) template rules (rolling z-score, level shift; LOOKBACK
    60-70) with varied thresholds, partition ``p<j>`` each; returns the partition names."""
    from argos.rules.grammar import RuleSpec, Structure
    from argos.rules.templates import render

    rng = np.random.default_rng(seed)
    shift = Structure("value", "level_shift", (("recent", 10.0), ("window", 60.0)), "both", 2)
    names = []
    for j in range(n_sets):
        specs = {
            "zscore_w60": RuleSpec(
                Structure("value", "zscore", (("window", 60.0),), "both", 1),
                float(rng.uniform(3, 6)),
            ),
            "level_shift": RuleSpec(shift, float(rng.uniform(2, 4))),
        }
        write_ruleset(
            out / f"p{j}",
            [RuleSource(s.name, render(s)) for s in specs.values()],  # ids as the generator's
            {"training": {"dataset": "synthetic", "partition": f"p{j}", "series": []}},
        )
        names.append(f"p{j}")
    return names


def section_thousand(
    kpi: dict[str, tuple[np.ndarray, np.ndarray, int]],
    scrapes: int,
    which: str,
    isolations: Sequence[Isolation],
) -> None:
    what = "the 29 KPI rule sets" if which == "kpi" else "29 typical template rule sets"
    print(f"\n3. a scrape of 1,000 series spread over {what} (one point each)")
    keys = sorted(kpi)
    with tempfile.TemporaryDirectory() as tmp:
        if which == "kpi":
            parts = partition_copy([KPI_RULES / k for k in keys], Path(tmp))
        else:
            parts = typical_sets(Path(tmp), len(keys))
        data: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        fns = {}
        for i in range(1000):
            j = i % len(keys)
            t, v, ts = kpi[keys[j]]
            off = ts + 7 * (i // len(keys))
            name = f"{parts[j]}/s{i}"
            data[name] = (t[off:], v[off:])
            fns[name] = rule_fns(Path(tmp) / parts[j])
        # every series holds at least the longest LOOKBACK of history before the timing (the
        # steady state of a service that has run: no rule measured in its warm-up path)
        longest = max(lb for rules in fns.values() for _, _, lb in rules)
        warm = max(1000, longest + 100)
        print(f"   history before the timing: {warm} points (longest LOOKBACK {longest})")
        assert all(len(v) >= warm + scrapes for _, v in data.values()), "series too short"
        direct = direct_scrape(fns, data, warm, max(5, scrapes // 10))
        print(f"   direct numpy calls (each rule on its window)  {direct / 1e3:8.1f} k points/s")
        for iso in isolations:
            for parallel in (1, 4):
                with Fleet(
                    tmp,
                    parallel=parallel,
                    settings=DetectorSettings(isolation=iso, strict=False),
                    freeze_heap=True,
                ) as fleet:
                    fill_history(fleet, data, warm)
                    rate, lat = scrape_run(fleet, data, warm, scrapes)
                    report_scrape(f"fleet, {LABELS[iso]}, parallel={parallel}", rate, lat, direct)
                    procs = len(fleet_pids(fleet)) - 1
                    print(f"   (PSS parent + {procs} rule processes {fleet_pss(fleet):.0f} MB)")


def section_synthetic(n_sets: int, per_set: int, iso: Isolation) -> None:
    print(f"\n4. synthetic fleet: {n_sets * per_set} series on {n_sets} rule sets, {LABELS[iso]}")
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        typical_sets(Path(tmp), n_sets)
        n = n_sets * per_set
        hist = 80  # > max LOOKBACK - 1 (70): every series holds a full history
        base = np.arange(hist + 1, dtype=np.int64) * 60 + 1_700_000_000
        vals = rng.normal(50, 5, size=(n, hist + 1))
        names = [f"p{i % n_sets}/s{i}" for i in range(n)]
        with Fleet(
            tmp,
            settings=DetectorSettings(isolation=iso, strict=False),
            freeze_heap=True,
        ) as fleet:
            before = fleet_pss(fleet)
            t0 = time.perf_counter()
            fleet.push([Point(names[i], int(base[0]), float(vals[i, 0])) for i in range(n)])
            startup = time.perf_counter() - t0
            opened = fleet_pss(fleet)
            for k in range(1, hist + 1):
                fleet.push([Point(names[i], int(base[k]), float(vals[i, k])) for i in range(n)])
            full = fleet_pss(fleet)
            t1 = time.perf_counter()
            fleet.push([Point(names[i], int(base[-1]) + 60, 50.0) for i in range(n)])
            one = time.perf_counter() - t1
        print(
            f"   start-up: first scrape opens {n_sets} sets (engines started, rules verified) in "
            f"{startup:.1f} s ({startup / n_sets * 1e3:.0f} ms per set)"
        )
        print(
            f"   PSS: parent alone {before:.0f} MB; with {n_sets} sets open {opened:.0f} MB "
            f"({(opened - before) / n_sets:.1f} MB per set); with {n} series x {hist} points "
            f"{full:.0f} MB ({(full - opened) * 1024 / n:.1f} KB per series)"
        )
        rate = n / one / 1e3
        print(f"   a scrape of all {n} series afterwards: {one * 1e3:.0f} ms ({rate:.1f} k/s)")
        per_set_mb = (opened - before) / n_sets
        series_gb = (full - opened) / n * 1e5 / 1024

        def total(sets: int) -> float:
            return (before + per_set_mb * sets) / 1024 + series_gb

        print(
            f"   extrapolated to 100,000 series: {series_gb:.2f} GB of series state; in all "
            f"{total(100):.1f} GB on 100 sets, {total(1000):.1f} GB on 1,000 sets"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sections", default="1,2,3,4")
    ap.add_argument(
        "--scrape-sets", choices=["kpi", "typical", "both"], default="both", help="section 3"
    )
    ap.add_argument(
        "--isolation",
        choices=["auto", "worker", "both"],
        default="both",
        help="builtin templates in-process (auto), every rule in its own worker, or both",
    )
    ap.add_argument("--scrapes", type=int, default=300)
    ap.add_argument("--sets", type=int, default=100)
    ap.add_argument("--series-per-set", type=int, default=100)
    args = ap.parse_args()
    sections = {int(x) for x in args.sections.split(",")}
    isolations: list[Isolation] = (
        ["auto", "worker"] if args.isolation == "both" else [args.isolation]
    )
    print(f"load average before the run: {os.getloadavg()[0]:.2f} ({os.cpu_count()} cores)")
    kpi = kpi_series() if sections & {1, 2, 3} else {}
    if 1 in sections:
        section_kpi_scrape(kpi, args.scrapes, isolations)
    if 2 in sections:
        section_kpi_batch(kpi)
    if 3 in sections:
        for which in ("typical", "kpi") if args.scrape_sets == "both" else (args.scrape_sets,):
            section_thousand(kpi, args.scrapes, which, isolations)
    if 4 in sections:
        for iso in isolations:
            section_synthetic(args.sets, args.series_per_set, iso)


if __name__ == "__main__":
    main()
