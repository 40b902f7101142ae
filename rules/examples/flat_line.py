"""Flat line: the metric stops changing (a stuck sensor, a dead exporter, a frozen counter).

Normal: the value changes by more than `tol` (relative to the recent typical step) at least once in
any `run` consecutive points.
Abnormal: the last `run` points all lie within `tol` of each other, i.e. the series is flat for
`run` points or more; every point of such a run from the `run`-th on is flagged. Causal.
"""

import numpy as np

PARAMS = {"run": 30, "tol": 0.0}
PARAM_RANGES = {"run": (5, 300)}
LOOKBACK = 300


def detect(values, timestamps, params):
    run = max(2, int(params["run"]))
    tol = float(params["tol"])
    n = len(values)
    out = np.zeros(n, dtype=bool)
    if n < run:
        return out
    same = np.zeros(n, dtype=bool)
    same[1:] = np.abs(np.diff(values)) <= tol
    # length of the current streak of unchanged steps ending at each point
    idx = np.arange(n)
    last_change = np.maximum.accumulate(np.where(~same, idx, 0))
    streak = idx - last_change + 1
    out[:] = streak >= run
    return out
