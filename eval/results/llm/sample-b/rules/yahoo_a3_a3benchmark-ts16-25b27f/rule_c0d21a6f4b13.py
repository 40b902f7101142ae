"""Normal: the seasonal residual (value minus the median of the same slot in the previous `cycles` periods of `period` points) stays within `threshold` robust deviations of the median residual of the `short` points before it; one robust deviation is 1.4826 x the MAD of the residual over the previous `window` points.
Abnormal: the seasonal residual is more than `threshold` robust deviations above or below the median residual of the `short` points before it: the value breaks sharply from both its usual time-of-day level and its recent offset (a one-point dip or jump); alarms only when the condition was off at the previous point.
"""
import numpy as np

PARAMS = {
    "period": 24,
    "cycles": 4,
    "short": 6,
    "window": 200,
    "threshold": 2.027385001701481,
}
PARAM_RANGES = {"period": (24, 24), "cycles": (1, 7), "short": (1, 6), "window": (24, 240),
                "threshold": (2.0, 12.0)}
LOOKBACK = 415  # >= max cycles * period + max window + 2


def _rolling_before(r, width, mad=False):
    """Median (and MAD) of r[t-width..t-1] for each t; NaN where that window is incomplete or has NaN."""
    n = len(r)
    med, dev = np.full(n, np.nan), np.full(n, np.nan)
    if n <= width:
        return med, dev
    win = np.lib.stride_tricks.sliding_window_view(r[:-1], width)  # entry j: t = j + width
    for s in range(0, len(win), 20000):
        w = win[s:s + 20000]
        m = np.median(w, axis=1)
        med[width + s:width + s + len(w)] = m
        if mad:
            dev[width + s:width + s + len(w)] = np.median(np.abs(w - m[:, None]), axis=1)
    return med, dev


def detect(values, timestamps, params):
    x = np.asarray(values, dtype=float)
    n = len(x)
    out = np.zeros(n, dtype=bool)
    P, K = int(params["period"]), max(1, int(params["cycles"]))
    S, W = max(1, int(params["short"])), max(3, int(params["window"]))
    if P < 1 or n <= K * P:
        return out
    same_slot = np.stack([x[K * P - k * P:n - k * P] for k in range(1, K + 1)])
    resid = np.full(n, np.nan)
    with np.errstate(invalid="ignore"):
        resid[K * P:] = x[K * P:] - np.median(same_slot, axis=0)
        ref, _ = _rolling_before(resid, S)
        _, mad = _rolling_before(resid, W, mad=True)
        scale = np.maximum(1.4826 * mad, 1e-12)
        cond = np.abs(resid - ref) > params["threshold"] * scale  # NaN -> False
    out[:] = cond
    out[1:] &= ~cond[:-1]
    return out
