"""Sandbox overhead: hardened runs versus running the same rule in-process, measured in one run.

Prints:
1. one hardened run on a preloaded 100k-point series: median wall time of ``Sandbox.run`` minus the
   median in-process time of the same rule (target: < 15 ms overhead);
2. batch throughput on a whole split (Yahoo A1 if the benchmark data is available, else the demo
   dataset): one sandbox run over every series versus a Python loop in-process;
3. ``run_grid`` of 8 parameter sets in one child versus 8 separate runs;
4. for scale: a fresh interpreter importing numpy (the per-rule cost of the naive design).

Times are medians (and minima, which show the cost without scheduler noise); the machine's load
average is printed first because other processes on a shared host inflate every number.

Usage: ``.venv/bin/python benchmarks/sandbox_overhead.py [--repeats N]``
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from argos.sandbox.pool import RuleInput, Sandbox

ROOT = Path(__file__).resolve().parents[1]

FAST_RULE = '''"""Normal: within k trailing std devs. Abnormal: beyond (cumsum rolling z-score)."""
import numpy as np

PARAMS = {"k": 4.0, "window": 60}
LOOKBACK = 60


def detect(values, timestamps, params):
    w = int(params["window"])
    n = len(values)
    out = np.zeros(n, dtype=bool)
    if n <= w:
        return out
    c = np.concatenate([[0.0], np.cumsum(values)])
    c2 = np.concatenate([[0.0], np.cumsum(values * values)])
    t = np.arange(w, n)
    mean = (c[t] - c[t - w]) / w
    std = np.sqrt(np.maximum((c2[t] - c2[t - w]) / w - mean * mean, 1e-12))
    out[w:] = np.abs(values[w:] - mean) > params["k"] * std
    return out
'''


def _in_process(code: str) -> Callable[..., Any]:
    """Load a TRUSTED rule (this benchmark's own code) in-process, as the naive design would."""
    ns: dict[str, Any] = {}
    exec(compile(code, "<bench-rule>", "exec"), ns)
    fn: Callable[..., Any] = ns["detect"]
    return fn


def _timed_ms(fn: Callable[[], object], repeats: int) -> tuple[float, float]:
    """(median, minimum) wall time of ``fn`` in milliseconds."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times), min(times)


def _median_ms(fn: Callable[[], object], repeats: int) -> float:
    return _timed_ms(fn, repeats)[0]


def _split_inputs() -> tuple[str, list[RuleInput]]:
    data = os.environ.get("ARGOS_DATA_DIR") or str(ROOT.parent / "shared" / "datasets")
    a1 = Path(data) / "yahoo_s5" / "A1Benchmark"
    if a1.is_dir():
        inputs: list[RuleInput] = []
        for f in sorted(a1.glob("real_*.csv")):
            raw = np.genfromtxt(f, delimiter=",", skip_header=1)
            inputs.append((raw[:, 1].astype(np.float64), raw[:, 0].astype(np.int64)))
        return "Yahoo A1 (all series, values + timestamps only)", inputs
    from argos.data.demo import make_demo_dataset

    ds = make_demo_dataset()
    return "demo dataset", [(s.values, s.timestamps) for s in ds.series]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=30)
    args = ap.parse_args()
    reps = args.repeats

    rng = np.random.default_rng(0)
    n = 100_000
    values = rng.normal(size=n).cumsum()
    ts = np.arange(n, dtype=np.int64) * 60
    zscore = (ROOT / "rules" / "examples" / "robust_zscore.py").read_text()

    print(f"load average: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    with Sandbox() as sb:
        print(f"sandbox layers: {sb.host.describe()}")
        handle = sb.preload([(values, ts)])
        print(f"\n1. one hardened run on a preloaded {n:,}-point series (median / min of {reps})")
        print(
            f"   {'rule':<20} {'in-process':>16} {'sandbox':>16} {'in child':>9} "
            f"{'overhead (median / min)':>24}"
        )
        for name, code, r in (
            ("rolling z (cumsum)", FAST_RULE, reps),
            ("robust z (median)", zscore, max(5, reps // 6)),
        ):
            detect = _in_process(code)
            params = _in_process_params(code)
            detect(values, ts, params)  # warm-up
            t_in, t_in_min = _timed_ms(partial(_loop, detect, params, [(values, ts)]), r)
            sb.run(code, handle)  # warm-up: loads the input into the worker
            child: list[float] = []

            def one(c: str = code, out: list[float] = child) -> None:
                res = sb.run(c, handle)
                assert res.ok, res.detail
                out.append(res.runtime_ms)

            t_sb, t_sb_min = _timed_ms(one, r)
            print(
                f"   {name:<20} {t_in:7.2f}/{t_in_min:6.2f}ms {t_sb:7.2f}/{t_sb_min:6.2f}ms "
                f"{statistics.median(child):7.2f}ms {t_sb - t_in:10.2f}ms / "
                f"{t_sb_min - t_in_min:.2f}ms"
            )

        label, inputs = _split_inputs()
        pts = sum(len(v) for v, _ in inputs)
        print(f"\n2. batch: {label}: {len(inputs)} series, {pts:,} points (medians)")
        for name, code in (("rolling z (cumsum)", FAST_RULE), ("robust z (median)", zscore)):
            detect = _in_process(code)
            params = _in_process_params(code)
            r = max(3, reps // 10)
            t_in = _median_ms(partial(_loop, detect, params, inputs), r)
            t_cold = _median_ms(partial(sb.run, code, inputs), r)
            h = sb.preload(inputs)
            sb.run(code, h)
            t_hot = _median_ms(partial(sb.run, code, h), r)
            print(
                f"   {name:<20} in-process {t_in:7.1f}ms | sandbox, inputs sent {t_cold:7.1f}ms "
                f"({t_cold / t_in:.2f}x) | preloaded {t_hot:7.1f}ms ({t_hot / t_in:.2f}x)"
                f" | {pts / (t_hot / 1000) / 1e6:.1f} M points/s"
            )

        print("\n3. parameter grid: 8 sets on the 100k series (medians)")
        sets = [{"k": 2.0 + i} for i in range(8)]
        t_grid = _median_ms(lambda: sb.run_grid(FAST_RULE, handle, sets), max(3, reps // 5))
        t_sep = _median_ms(lambda: [sb.run(FAST_RULE, handle, p) for p in sets], max(3, reps // 5))
        print(f"   one child {t_grid:.1f}ms vs 8 runs {t_sep:.1f}ms ({t_sep / t_grid:.2f}x faster)")

    cmd = [sys.executable, "-I", "-c", "import numpy"]
    t_fresh = _median_ms(lambda: subprocess.run(cmd, check=True), 5)
    print(f"\n4. fresh interpreter + import numpy, per rule: {t_fresh:.0f} ms")


def _loop(detect: Callable[..., Any], params: dict[str, Any], inputs: list[RuleInput]) -> None:
    """The in-process baseline: same copies and calls the sandbox child makes."""
    for v, t in inputs:
        detect(v.copy(), t.copy(), dict(params))


def _in_process_params(code: str) -> dict[str, Any]:
    from argos.rules.contract import check_rule

    return dict(check_rule(code).params)


if __name__ == "__main__":
    main()
