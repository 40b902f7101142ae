"""Online detector throughput and latency, with every baseline measured in the same run.

Rule sets (unless ``--rules`` names a folder), rendered from :mod:`argos.rules.templates`:

- **typical**: what the builtin generator exports most (in the curated KPI sets: z-scores,
  static bounds, relative change, level shifts): a rolling z-score, a level shift, a z-score of
  the first difference with a cool-down; all O(n);
- **with rolling median**: the same plus a robust z-score, whose rolling median/MAD costs
  O(window) per point: the heaviest template in common use;
- **cheapest**: a static band and a flat-line rule (fixtures), the floor of per-call costs.

For each set it prints:

1. **batch**: a whole series (the longest real KPI series when the data is available), as
   points/s: each rule's ``detect`` called directly on the arrays (the practical limit), the
   detector in-process, the detector with isolated rule workers; ratios against direct;
2. **streaming, one point per push** for one series (the latency floor): points/s, p50/p99;
3. **streaming, micro-batches**: each push carries one new point for each of N series (N = 10,
   30, 50, 100, 1000), every series with a full rule history (a long-running service): points/s and
   p50/p99 push latency, in-process and isolated;
4. the **isolation overhead** (isolated time / in-process time) of each workload.

Then **curated**: every committed ``rules/kpi`` rule set on its own KPI series (batch), summed:
direct calls of the committed code (the sorted-window rolling median/MAD), direct calls of the
same rules with the former np.median helper swapped into the robust z-score rules (the O(window)
reference; labels checked equal), and the isolated detector on the committed sets. Last, the
issue's **targets**, checked on the typical set and on the committed KPI sets (>= 5 M points/s in
batch).
The load average is printed first: other processes on a shared host inflate every number.

Usage: ``.venv/bin/python benchmarks/detector_throughput.py [--rules DIR] [--stream-points N]
[--curated-only]``
"""

from __future__ import annotations

import argparse
import os
import re
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from argos.online.checks import verification_sample
from argos.online.detector import Detector, DetectorSettings
from argos.online.points import Point
from argos.rules.artifacts import RuleSource, write_ruleset
from argos.sandbox.kernel import compile_rule

COOLDOWN = 10
MODES = (("inprocess", "in-process"), ("auto", "auto      "), ("worker", "isolated  "))
"""``isolation`` of the detector: every rule in-process (the baseline), ``auto`` (the default of
the commands: builtin template renderings in-process, other rules in workers; for the sets here,
all of them templates except the cheapest's fixtures), every rule in its own worker."""
CHECKED = ("auto", "worker")
ROOT = Path(__file__).resolve().parents[1]


def typical_ruleset(folder: Path, with_median: bool = False) -> Path:
    """Three O(n) rules of the builtin generator's grammar exported as a rule set; with
    ``with_median``, a fourth: a robust z-score (rolling median, O(window) per point)."""
    from argos.rules.grammar import RuleSpec, Structure
    from argos.rules.templates import render

    specs = {
        "zscore_w60": RuleSpec(Structure("value", "zscore", (("window", 60.0),), "both", 1), 4.0),
        "robust_z_w50": RuleSpec(
            Structure("value", "robust_z", (("window", 50.0), ("min_scale", 0.0)), "both", 1), 6.0
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
    name = "with rolling median" if with_median else "typical"
    # ids are the specs' names, as the builtin generator exports them (a renamed rendering is
    # not provably a template: it would run in a worker under isolation="auto")
    write_ruleset(folder, [RuleSource(s.name, render(s)) for s in specs.values()], {"name": name})
    return folder


def cheapest_ruleset(folder: Path) -> Path:
    """Two near-free rules (static band, flat line), from the test fixtures."""
    fixtures = ROOT / "tests" / "fixtures" / "rules" / "basic"
    sources = [
        RuleSource("band", (fixtures / "threshold.py").read_text(), {"low": -1e9, "high": 1e9}),
        RuleSource("flat_line", (fixtures / "flat_line.py").read_text(), {"eps": 0.0}),
    ]
    write_ruleset(folder, sources, {"name": "cheapest"})
    return folder


def load_series(max_points: int) -> tuple[str, np.ndarray, np.ndarray]:
    """The longest real KPI series (capped), or a synthetic one."""
    root = os.environ.get("ARGOS_DATA_DIR") or str(ROOT.parent / "shared" / "datasets")
    if (Path(root) / "kpi").is_dir():
        from argos.data.loaders import load_kpi

        ds = load_kpi(Path(root) / "kpi")
        s = max(ds.series, key=len)
        return f"KPI {s.id[:8]} ({len(s)} points)", s.timestamps[:max_points], s.values[:max_points]
    t, v = verification_sample(max_points, seed=1)
    return f"synthetic ({max_points} points)", t, v


def best_of(
    fn: Callable[[], Any], repeats: int, clock: Callable[[], float] = time.perf_counter
) -> float:
    """Minimum wall time (or ``clock`` time, e.g. ``time.process_time``) of ``repeats`` calls
    (seconds)."""
    times = []
    for _ in range(repeats):
        t0 = clock()
        fn()
        times.append(clock() - t0)
    return min(times)


def pct(xs: list[float], q: float) -> float:
    """Percentile ``q`` (0-100) of ``xs``."""
    return float(np.percentile(np.asarray(xs), q))


def batch_section(rules: Path, t: np.ndarray, v: np.ndarray, repeats: int) -> dict[str, float]:
    n = len(v)
    with Detector.open(rules, DetectorSettings(isolation="inprocess", verify=False)) as det:
        fns = [(compile_rule(r.id, r.code), dict(r.params)) for r in det.ruleset.rules]

        t_direct = best_of(partial(run_direct, fns, t, v), repeats)
        per_rule = [
            (r.id, best_of(partial(run_direct, [f], t, v), repeats))
            for r, f in zip(det.ruleset.rules, fns, strict=True)
        ]
        t_inproc = best_of(lambda: det.detect_arrays(t, v), repeats)
    timed: dict[str, float] = {}
    for iso in ("auto", "worker"):
        with Detector.open(rules, DetectorSettings(isolation=iso, verify=False)) as det:
            det.detect_arrays(t, v)  # warm-up
            timed[iso] = best_of(lambda: det.detect_arrays(t, v), repeats)
    print(f"\n1. batch, {len(fns)} rules, {n} points (best of {repeats})")
    for rid, secs in per_rule:
        print(f"   (rule {rid:34s} alone, direct: {n / secs / 1e6:8.2f} M points/s)")
    print(f"   direct numpy calls     {n / t_direct / 1e6:8.2f} M points/s   1.00x")
    for label, secs in (
        ("detector in-process", t_inproc),
        ("detector auto      ", timed["auto"]),
        ("detector isolated  ", timed["worker"]),
    ):
        print(
            f"   {label}    {n / secs / 1e6:8.2f} M points/s   "
            f"{secs / t_direct:.2f}x the direct time"
        )
    return {
        "batch_auto": n / timed["auto"],
        "batch_worker": n / timed["worker"],
        "batch_ratio_auto": timed["auto"] / t_inproc,
        "batch_ratio_worker": timed["worker"] / t_inproc,
    }


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


def pushes(width: int, points: int) -> int:
    """Pushes of ``width`` series for a micro-batch workload of about ``points`` points (at
    least 30, at most 300, so p99 rests on enough pushes)."""
    return max(30, min(300, points // width))


def stream_sections(
    rules: Path, t: np.ndarray, v: np.ndarray, widths: list[int], points: int, repeats: int
) -> dict[str, float]:
    n = len(v)
    res: dict[str, tuple[float, list[float]]] = {}

    def keep(key: str, run: tuple[float, list[float]]) -> None:
        """Best total time of the repeats; latencies of all of them."""
        if key in res:
            run = (min(res[key][0], run[0]), res[key][1] + run[1])
        res[key] = run

    for _ in range(repeats):  # the modes alternate, so a load spike hits them alike
        for iso, _label in MODES:
            with Detector.open(rules, DetectorSettings(isolation=iso, verify=False)) as det:
                det.push_arrays("warm", t[:200], v[:200])
                keep(f"one-{iso}", single_point_stream(det, t, v))
            for width in widths:
                # verified, so that rules passing the packing check run packed (as in a service)
                with Detector.open(rules, DetectorSettings(isolation=iso)) as det:
                    warm = max(r.lookback for r in det.ruleset.rules)
                    keep(f"{width}-{iso}", scrape_stream(det, width, pushes(width, points), warm))
    print(
        f"\n2. streaming, one point per push, one series, {n} points (best of {repeats}; "
        "latency percentiles over all repeats)"
    )
    for iso, label in MODES:
        total, lat = res[f"one-{iso}"]
        print(
            f"   {label}  {n / total / 1e3:8.1f} k points/s   p50 {pct(lat, 50) * 1e3:.3f} ms"
            f"   p99 {pct(lat, 99) * 1e3:.3f} ms per point"
        )
    print(
        f"\n3. streaming, micro-batches (best of {repeats}): each push has one point for each of "
        "N series "
        f"({', '.join(f'N={w}: {pushes(w, points)}' for w in widths)} pushes; full rule histories)"
    )
    out: dict[str, float] = {}
    for width in widths:
        for iso, label in MODES:
            total, lat = res[f"{width}-{iso}"]
            rate = width * pushes(width, points) / total
            print(
                f"   N={width:<5d} {label}  {rate / 1e3:8.1f} k points/s   "
                f"p50 {pct(lat, 50) * 1e3:7.3f} ms   p99 {pct(lat, 99) * 1e3:7.3f} ms per push"
            )
            out[f"rate_{width}_{iso}"] = rate
            out[f"p99_{width}_{iso}"] = pct(lat, 99)
    print(
        "\n4. overhead against in-process (time / in-process time, same workload): auto, isolated"
    )
    for kind in ("one", *map(str, widths)):
        label = "one point per push" if kind == "one" else f"micro-batches, N={kind}"
        ratios = [res[f"{kind}-{iso}"][0] / res[f"{kind}-inprocess"][0] for iso in CHECKED]
        print(f"   {label:24s} {ratios[0]:.2f}x   {ratios[1]:.2f}x")
        for iso, ratio in zip(CHECKED, ratios, strict=True):
            out[f"ratio_{kind}_{iso}"] = ratio
    for iso in CHECKED:
        total, lat = res[f"one-{iso}"]
        out[f"rate_one_{iso}"], out[f"p99_one_{iso}"] = n / total, pct(lat, 99)
    return out


MEDIAN_HELPERS = re.compile(
    r"\n(def sorted_windows\(.*?\n        yield [^\n]*\n\n\n)?def past_median_mad\(.*?"
    r"\n    return med, mad\n",
    re.S,
)

REFERENCE_MEDIAN = """
def past_median_mad(x, width):
    n = len(x)
    med = np.full(n, np.nan)
    mad = np.full(n, np.nan)
    if n <= width:
        return med, mad
    windows = np.lib.stride_tricks.sliding_window_view(x[:-1], width)
    for a in range(0, len(windows), 20000):
        block = windows[a : a + 20000]
        m = np.median(block, axis=1)
        med[width + a : width + a + len(block)] = m
        mad[width + a : width + a + len(block)] = np.median(np.abs(block - m[:, None]), axis=1)
    return med, mad
"""
"""The robust z-score's former median/MAD helper: np.median over every window, O(window)."""


def with_reference_median(code: str) -> str:
    """A rule's source with its median/MAD helpers replaced by :data:`REFERENCE_MEDIAN`;
    unchanged without a robust z-score."""
    return MEDIAN_HELPERS.sub(lambda _: REFERENCE_MEDIAN, code)


def curated_section(root: Path, repeats: int) -> dict[str, float]:
    """Every committed KPI rule set on its own series, batch: direct calls of the committed rule
    code, direct calls of the same rules with the former np.median helper, and the isolated
    detector on the committed set; summed over the sets."""
    data = os.environ.get("ARGOS_DATA_DIR") or str(ROOT.parent / "shared" / "datasets")
    if not (Path(data) / "kpi").is_dir() or not root.is_dir():
        print(f"\ncurated: skipped (needs {root} and the KPI data)")
        return {}
    from argos.data.loaders import load_kpi
    from argos.rules.artifacts import load_ruleset

    series = {s.id: s for s in load_kpi(Path(data) / "kpi").series}
    n_pts = 0
    t_reference = t_direct = t_iso = t_auto = cpu_reference = cpu_direct = 0.0
    sets = swapped = 0
    for folder in sorted(p for p in root.iterdir() if (p / "manifest.json").is_file()):
        s = series.get(folder.name)
        if s is None:
            continue
        rs = load_ruleset(folder)
        t, v = s.timestamps, s.values
        committed = [(compile_rule(r.id, rs.codes[r.id]), dict(r.params)) for r in rs.rules]
        codes = [with_reference_median(rs.codes[r.id]) for r in rs.rules]
        swapped += sum(c != rs.codes[r.id] for c, r in zip(codes, rs.rules, strict=True))
        reference = [
            (compile_rule(r.id, c), dict(r.params)) for c, r in zip(codes, rs.rules, strict=True)
        ]
        for (new, params), (old, _) in zip(committed, reference, strict=True):
            if not np.array_equal(old(v, t, dict(params)), new(v, t, dict(params))):
                raise SystemExit(f"{folder.name}: labels differ with the np.median helper")
        with Detector.open(folder, DetectorSettings(verify=False)) as det:
            det.detect_arrays(t, v)  # warm-up
            t_reference += best_of(partial(run_direct, reference, t, v), repeats)
            t_direct += best_of(partial(run_direct, committed, t, v), repeats)
            t_iso += best_of(partial(det.detect_arrays, t, v), repeats)
            cpu_reference += best_of(partial(run_direct, reference, t, v), 1, time.process_time)
            cpu_direct += best_of(partial(run_direct, committed, t, v), 1, time.process_time)
        with Detector.open(folder, DetectorSettings(isolation="auto", verify=False)) as det:
            det.detect_arrays(t, v)  # warm-up
            t_auto += best_of(partial(det.detect_arrays, t, v), repeats)
        n_pts += len(v)
        sets += 1
    print(
        f"\ncurated: {sets} committed KPI rule sets ({root.relative_to(ROOT)}), each on its own "
        f"series, {n_pts} points in all (batch, best of {repeats}); {swapped} rules have a robust "
        "z-score, run as committed and with the former np.median helper (same labels, checked)"
        f"\n   direct numpy calls, np.median helper  {n_pts / t_reference / 1e6:8.2f} M points/s   "
        f"{t_reference / t_direct:.2f}x the committed direct time"
        f"\n   direct numpy calls, committed code    {n_pts / t_direct / 1e6:8.2f} M points/s"
        "   1.00x"
        f"\n   detector isolated, committed code     {n_pts / t_iso / 1e6:8.2f} M points/s   "
        f"{t_iso / t_direct:.2f}x the committed direct time"
        f"\n   detector auto, committed code         {n_pts / t_auto / 1e6:8.2f} M points/s   "
        f"{t_auto / t_direct:.2f}x the committed direct time (templates in-process)"
        f"\n   CPU time of the direct calls (this process; less inflated by a loaded host): "
        f"np.median helper {n_pts / cpu_reference / 1e6:.2f} M points/s, committed code "
        f"{n_pts / cpu_direct / 1e6:.2f} M points/s ({cpu_reference / cpu_direct:.2f}x)"
    )
    return {
        "curated_direct": n_pts / t_direct,
        "curated_iso": n_pts / t_iso,
        "curated_auto": n_pts / t_auto,
    }


def run_direct(fns: list[tuple[Any, dict[str, Any]]], t: np.ndarray, v: np.ndarray) -> None:
    """Each rule's ``detect`` on the arrays, in this process."""
    for fn, params in fns:
        fn(v, t, dict(params))


def targets(m: dict[str, float], widths: list[int], curated: dict[str, float]) -> None:
    """The issue's targets, checked on the typical set's numbers of this run (and the committed
    KPI sets' batch rate)."""

    def mark(ok: bool) -> str:
        return "met" if ok else "NOT met"

    if curated:
        rate = curated["curated_iso"]
        print("\ntargets (committed KPI rule sets, batch)")
        auto = curated["curated_auto"]
        print(
            f"   >= 5 M points/s: {curated['curated_direct'] / 1e6:.2f} M direct, "
            f"{auto / 1e6:.2f} M auto ({mark(auto >= 5e6)}), "
            f"{rate / 1e6:.2f} M isolated ({mark(rate >= 5e6)})"
        )

    for iso, what in (
        ("auto", "isolation=auto, the default: builtin templates in-process"),
        ("worker", "isolation=worker: every rule in its own worker"),
    ):
        target_lines(m, widths, iso, what)


def target_lines(m: dict[str, float], widths: list[int], iso: str, what: str) -> None:
    """The typical set's targets for one isolation mode."""

    def mark(ok: bool) -> str:
        return "met" if ok else "NOT met"

    rate = {w: m[f"rate_{w}_{iso}"] for w in widths}
    p99 = {w: m[f"p99_{w}_{iso}"] for w in widths}
    ok_widths = [w for w in widths if rate[w] >= 50e3 and p99[w] < 1e-3]
    batch = m[f"batch_{iso}"]
    print(f"\ntargets (typical rule set, {what})")
    print(f"   batch >= 5 M points/s: {batch / 1e6:.2f} M ({mark(batch >= 5e6)})")
    best = max(widths, key=lambda w: rate[w])
    print(
        f"   streaming >= 50 k points/s per process: {rate[best] / 1e3:.1f} k with "
        f"N={best} series per push ({mark(rate[best] >= 50e3)})"
    )
    # a point's latency is the latency of the push that carries it
    one = m[f"p99_one_{iso}"]
    print(
        f"   p99 latency < 1 ms per point: {one * 1e3:.3f} ms pushed alone "
        f"({mark(one < 1e-3)}); in micro-batches "
        + ", ".join(f"N={w}: {p99[w] * 1e3:.2f} ms" for w in widths)
    )
    print(
        "   both at once (>= 50 k points/s with p99 < 1 ms per push): "
        + (f"N={', '.join(map(str, ok_widths))}" if ok_widths else "at none of these N")
    )
    ratios = [("batch", m[f"batch_ratio_{iso}"]), ("one point", m[f"ratio_one_{iso}"])]
    ratios += [(f"N={w}", m[f"ratio_{w}_{iso}"]) for w in widths]
    worst = max(ratios, key=lambda x: x[1])
    print(
        f"   overhead < 2x in-process: worst {worst[1]:.2f}x ({worst[0]}) ({mark(worst[1] < 2.0)})"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rules", type=Path, default=None, help="rule-set folder (default: typical)")
    ap.add_argument("--batch-points", type=int, default=300_000)
    ap.add_argument("--stream-points", type=int, default=5_000)
    ap.add_argument(
        "--widths", default="10,30,50,100,1000", help="series per micro-batch push (comma list)"
    )
    ap.add_argument(
        "--micro-points", type=int, default=20_000, help="points per micro-batch workload"
    )
    ap.add_argument("--repeats", type=int, default=5, help="batch timings: best of N")
    ap.add_argument("--stream-repeats", type=int, default=3, help="stream timings: best of N")
    ap.add_argument("--curated", type=Path, default=ROOT / "rules" / "kpi")
    ap.add_argument(
        "--curated-only", action="store_true", help="only the committed KPI sets and their target"
    )
    args = ap.parse_args()
    widths = [int(w) for w in args.widths.split(",")]
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    if args.curated_only:
        curated = curated_section(args.curated, args.repeats)
        if curated:
            rate = curated["curated_iso"]
            print(f"\ntarget >= 5 M points/s (isolated): {rate / 1e6:.2f} M", end=" ")
            print("(met)" if rate >= 5e6 else "(NOT met)")
        return
    name, t, v = load_series(args.batch_points)
    print(f"series: {name}")
    with tempfile.TemporaryDirectory() as tmp:
        sets = (
            [args.rules]
            if args.rules
            else [
                typical_ruleset(Path(tmp) / "typical"),
                typical_ruleset(Path(tmp) / "median", with_median=True),
                cheapest_ruleset(Path(tmp) / "cheapest"),
            ]
        )
        first: dict[str, float] = {}
        for rules in sets:
            with Detector.open(rules, DetectorSettings(isolation="inprocess")) as det:
                print(
                    f"\n=== rule set {det.ruleset.name}: "
                    + ", ".join(
                        f"{k} (exact={e.exact}, packed={e.packed})"
                        for k, e in det.exactness.items()
                    )
                )
            m = batch_section(rules, t, v, args.repeats)
            ts, vs = t[: args.stream_points], v[: args.stream_points]
            m |= stream_sections(rules, ts, vs, widths, args.micro_points, args.stream_repeats)
            first = first or m
        curated = curated_section(args.curated, max(1, args.repeats // 2))
        targets(first, widths, curated)


if __name__ == "__main__":
    main()
