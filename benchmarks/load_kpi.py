"""Benchmark: loading the whole KPI set (6.1 M points) with ``argos.data.loaders.load_kpi``.

Prints wall time and peak resident memory of the loader, and of a plain ``pandas.read_csv`` of the
same two files (no dtypes, no validation, no per-KPI series) measured in the same run, plus their
ratios. Each measurement runs in a fresh Python process so that its peak RSS
(``resource.getrusage``) is its own; an interpreter that only imports the libraries is measured
too, as the floor. The budget from the issue: under 15 s and under 2 GB.

    .venv/bin/python benchmarks/load_kpi.py [--data-dir DIR] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

BUDGET_S = 15.0
BUDGET_MB = 2048.0

_CHILD = r"""
import json, resource, sys, time
from pathlib import Path
import numpy, pandas
import argos.data.loaders
kind, folder = sys.argv[1], Path(sys.argv[2])
t0 = time.perf_counter()
points = 0
if kind == "argos":
    ds = argos.data.loaders.load_kpi(folder)
    points = ds.n_points
elif kind == "pandas":
    for name in ("phase2_train", "phase2_ground_truth"):
        path = next(p for p in (folder / f"{name}.csv.gz", folder / f"{name}.csv") if p.exists())
        points += len(pandas.read_csv(path))
elapsed = time.perf_counter() - t0
peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
print(json.dumps({"seconds": elapsed, "peak_mb": peak_mb, "points": points}))
"""


def _data_dir(arg: str | None) -> Path:
    if arg:
        return Path(arg)
    env = os.environ.get("ARGOS_DATA_DIR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parent.parent.parent / "shared" / "datasets"


def _measure(kind: str, folder: Path) -> dict[str, float]:
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, kind, str(folder)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise SystemExit(f"{kind} run failed:\n{proc.stderr.strip()}")
    result: dict[str, float] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", help="root holding kpi/ (default: $ARGOS_DATA_DIR)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement (median)")
    args = parser.parse_args()
    folder = _data_dir(args.data_dir) / "kpi"
    if not folder.is_dir():
        raise SystemExit(f"no KPI data at {folder}: pass --data-dir or set ARGOS_DATA_DIR")

    runs: dict[str, list[dict[str, float]]] = {"imports": [], "pandas": [], "argos": []}
    for _ in range(args.repeat):
        for kind in runs:  # interleaved so that machine load affects all three alike
            runs[kind].append(_measure(kind, folder))

    def med(kind: str, key: str) -> float:
        return statistics.median(r[key] for r in runs[kind])

    floor = med("imports", "peak_mb")
    print(
        f"KPI from {folder} ({int(runs['argos'][0]['points']):,} points), median of {args.repeat}"
    )
    print(f"{'':32}{'wall s':>10}{'peak RSS MB':>14}{'above floor MB':>16}")
    print(f"{'python + imports only':32}{'':>10}{floor:>14.0f}{0:>16.0f}")
    for kind, label in (("pandas", "plain pandas.read_csv (2 files)"), ("argos", "argos load_kpi")):
        print(
            f"{label:32}{med(kind, 'seconds'):>10.2f}{med(kind, 'peak_mb'):>14.0f}"
            f"{med(kind, 'peak_mb') - floor:>16.0f}"
        )
    time_ratio = med("argos", "seconds") / med("pandas", "seconds")
    mem_ratio = (med("argos", "peak_mb") - floor) / max(med("pandas", "peak_mb") - floor, 1.0)
    print(
        f"ratio argos / plain read_csv: time {time_ratio:.2f}x, memory above floor {mem_ratio:.2f}x"
    )
    seconds, peak = med("argos", "seconds"), med("argos", "peak_mb")
    time_ok = "ok" if seconds < BUDGET_S else "OVER"
    mem_ok = "ok" if peak < BUDGET_MB else "OVER"
    print(
        f"budget: {seconds:.1f} s < {BUDGET_S:.0f} s {time_ok}; "
        f"{peak:.0f} MB < {BUDGET_MB:.0f} MB {mem_ok}"
    )


if __name__ == "__main__":
    main()
