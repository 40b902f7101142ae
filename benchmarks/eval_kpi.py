"""Time evaluating every baseline on the full KPI set (29 series, 6.1 M points).

Prints, all measured in this run: the time to load the data, the wall time of the evaluation, the
ratio of the two, and the ratio to the 10-minute target of issue 3. Usage (repository root)::

    ARGOS_DATA_DIR=../shared/datasets .venv/bin/python benchmarks/eval_kpi.py [--workers N]
        [--methods a,b] [--no-scores]

Exit status 1 when the evaluation is slower than the target (the machine may be shared: the
numbers are what this run measured, nothing more).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from argos.data import catalog
from argos.evaluation import baselines
from argos.evaluation.harness import evaluate

TARGET_SECONDS = 600.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--methods", default=",".join(cls.name for cls in baselines.BASELINES))
    parser.add_argument("--no-scores", action="store_true", help="skip AUC-PR / VUS-PR")
    args = parser.parse_args(argv)

    t0 = time.perf_counter()
    dataset = catalog.load_dataset("kpi", data_dir=args.data_dir)
    load_s = time.perf_counter() - t0
    methods = [m for m in args.methods.split(",") if m]
    print(
        f"KPI: {len(dataset)} series, {dataset.n_points:,} points; {len(methods)} methods; "
        f"{args.workers} workers; {os.cpu_count()} CPUs"
    )
    print(f"load:       {load_s:8.1f} s")

    t0 = time.perf_counter()
    result = evaluate(dataset, methods, workers=args.workers, with_scores=not args.no_scores)
    eval_s = time.perf_counter() - t0
    print(f"evaluate:   {eval_s:8.1f} s  (= {eval_s / load_s:.1f} x the load time)")
    print(
        f"target:     {TARGET_SECONDS:8.1f} s  -> evaluation uses {eval_s / TARGET_SECONDS:.0%} "
        "of the 10-minute budget"
    )
    summary = result.summary()
    print("per method (fit + detect, summed over series, all workers):")
    for name in methods:
        f1 = summary[name]["event_pa"]["mean"]["f1"]
        print(f"  {name:18s} {summary[name]['seconds']:7.1f} s   event-PA F1 (mean) {f1:.3f}")
    return 0 if eval_s <= TARGET_SECONDS else 1


if __name__ == "__main__":
    sys.exit(main())
