"""Benchmark: builtin generator training on all 29 KPI series (budget: < 15 min on 2 cores).

Prints, measured in the same run: wall time of ``train_dataset`` (search + sandbox verification +
export) with 2 workers, the same for fitting the robust z-score baseline on every series (a
reference for what a plain threshold fit costs), their ratio, and the share of the 15-minute
budget used. The machine load is printed too: other processes share the 2 cores.

Usage: ``python benchmarks/train_kpi.py [--data-dir D] [--out DIR] [--workers 2]``
(``--out`` keeps the exported rule sets; by default they go to a temporary folder).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from argos.data.catalog import load_dataset
from argos.data.protocol import fit_inputs
from argos.methods import get_method
from argos.training.builtin.method import BuiltinGenerator
from argos.training.driver import train_dataset

BUDGET_S = 15 * 60


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    t0 = time.perf_counter()
    ds = load_dataset("kpi", data_dir=args.data_dir)
    load_s = time.perf_counter() - t0
    print(f"KPI: {len(ds)} series, {ds.n_points:,} points (loaded in {load_s:.1f} s)")
    print(f"cpu count {os.cpu_count()}, load average before {os.getloadavg()[0]:.2f}")

    t0 = time.perf_counter()
    baseline = get_method("robust-zscore")
    for s in ds.series:
        fi = fit_inputs([s], ds.split)
        baseline.build().fit(fi.train, fi.validation)
    base_s = time.perf_counter() - t0

    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp)
        t0 = time.perf_counter()
        summary = train_dataset(ds, generator=BuiltinGenerator(), out_dir=out, workers=args.workers)
        train_s = time.perf_counter() - t0
    tried = sum(u.tried for u in summary.units)
    rules = sum(len(u.rules) for u in summary.units)
    verified = sum(u.verified for u in summary.units)
    val = [u.validation_f1 for u in summary.units if u.validation_f1 is not None]
    print(f"load average after {os.getloadavg()[0]:.2f}")
    print(f"robust z-score baseline fit, 29 series, 1 process: {base_s:8.1f} s")
    print(f"builtin generator train, {args.workers} workers:      {train_s:8.1f} s")
    print(f"  candidates tried {tried:,}, rules exported {rules}, verified {verified}/{len(ds)}")
    print(f"  mean validation event-PA F1 {sum(val) / len(val):.3f} over {len(val)} units")
    print(f"ratio train / baseline fit: {train_s / base_s:.1f}x")
    print(f"share of the 15-minute budget: {train_s / BUDGET_S:.2f}")
    return 0 if train_s < BUDGET_S else 1


if __name__ == "__main__":
    sys.exit(main())
