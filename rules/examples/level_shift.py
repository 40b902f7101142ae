"""Level shift: the recent mean moves away from the preceding baseline.

Normal: the mean of the last `short` points stays within k baseline standard deviations of the mean
of the `long` points before them.
Abnormal: the short-window mean departs from the baseline mean by more than k baseline standard
deviations (a step up or down that persists). Causal: uses only points up to t.
"""

import numpy as np

PARAMS = {"k": 5.0, "short": 5, "long": 60}
PARAM_RANGES = {"k": (2.0, 12.0), "short": (2, 30), "long": (20, 300)}
LOOKBACK = 360


def detect(values, timestamps, params):
    k = float(params["k"])
    s = max(1, int(params["short"]))
    w = max(2, int(params["long"]))
    n = len(values)
    out = np.zeros(n, dtype=bool)
    if n < s + w:
        return out
    c = np.concatenate([[0.0], np.cumsum(values)])
    c2 = np.concatenate([[0.0], np.cumsum(values * values)])
    t = np.arange(s + w - 1, n)  # index of the last point of the short window
    short_mean = (c[t + 1] - c[t + 1 - s]) / s
    base_sum = c[t + 1 - s] - c[t + 1 - s - w]
    base_sq = c2[t + 1 - s] - c2[t + 1 - s - w]
    base_mean = base_sum / w
    base_std = np.sqrt(np.maximum(base_sq / w - base_mean * base_mean, 0.0))
    base_std = np.maximum(base_std, 1e-9 + 1e-6 * np.abs(base_mean))
    out[t] = np.abs(short_mean - base_mean) > k * base_std
    return out
