"""Robust z-score against a trailing window.

Normal: the value stays within k robust standard deviations (1.4826 * MAD) of the median of the
previous `window` points.
Abnormal: the value deviates from that trailing median by more than k robust standard deviations.
The rule is causal: the label at t uses only points t - window .. t.
"""

import numpy as np

PARAMS = {"k": 4.0, "window": 50}
PARAM_RANGES = {"k": (2.0, 10.0), "window": (10, 200)}
LOOKBACK = 200


def detect(values, timestamps, params):
    k = float(params["k"])
    w = max(3, int(params["window"]))
    n = len(values)
    out = np.zeros(n, dtype=bool)
    if n <= w:
        return out
    windows = np.lib.stride_tricks.sliding_window_view(values[:-1], w)
    med = np.median(windows, axis=1)
    mad = np.median(np.abs(windows - med[:, None]), axis=1)
    scale = 1.4826 * mad
    scale = np.where(scale > 1e-12, scale, 1e-12)
    z = np.abs(values[w:] - med) / scale
    out[w:] = z > k
    return out
