"""Normal: the change from the previous point stays close to the usual change at this hour (the median of the changes at the same hour on the previous `days` days, `points_per_day` points apart): the difference stays within `threshold` robust sds (1.4826 * median absolute difference over the previous `scale_window` points, at least `min_scale_frac` of the typical absolute value).
Abnormal: a jump that breaks the daily rhythm: the change from the previous point differs from the usual change at this hour by more than `threshold` robust sds, up or down. Alarms only at the onset, when the condition was off for the previous `rearm` points (so the jump back after a spike is not a second alarm).
"""
import numpy as np

PARAMS = {
    "points_per_day": 24,
    "days": 11,
    "scale_window": 160,
    "threshold": 4.18870631278014,
    "min_scale_frac": 0.043415816845010884,
    "rearm": 5,
}
PARAM_RANGES = {"points_per_day": (24, 24), "days": (3, 14), "scale_window": (48, 336),
                "threshold": (2.5, 15.0), "min_scale_frac": (0.005, 0.1), "rearm": (1, 24)}
LOOKBACK = 710


def _trail_median(x, w):
    """Median of the w points ending at each index (NaN before enough points)."""
    out = np.full(len(x), np.nan)
    if w < 1 or len(x) < w:
        return out
    win = np.lib.stride_tricks.sliding_window_view(x, w)
    for a in range(0, len(win), 20000):
        chunk = win[a:a + 20000]
        out[w - 1 + a:w - 1 + a + len(chunk)] = np.median(chunk, axis=1)
    return out


def detect(values, timestamps, params):
    v = np.asarray(values, dtype=float)
    n = len(v)
    out = np.zeros(n, dtype=bool)
    day = max(int(params["points_per_day"]), 1)
    k = max(int(params["days"]), 1)
    w = max(int(params["scale_window"]), 5)
    r = max(int(params["rearm"]), 0)
    if n <= day * k + w + 1:
        return out
    d1 = np.full(n, np.nan)
    d1[1:] = np.diff(v)
    # the change at the same hour on each of the previous k days
    lagged = np.full((k, n), np.nan)
    for j in range(1, k + 1):
        lagged[j - 1, day * j:] = d1[:n - day * j]
    resid = d1 - np.median(lagged, axis=0)                 # NaN until k days of history
    scale = np.full(n, np.nan)
    amp = np.full(n, np.nan)
    scale[1:] = 1.4826 * _trail_median(np.abs(resid), w)[:-1]   # residual spread before t
    amp[1:] = _trail_median(np.abs(v), w)[:-1]                  # typical absolute value before t
    with np.errstate(invalid="ignore", divide="ignore"):
        scale = np.maximum(scale, params["min_scale_frac"] * amp + 1e-9)
        cond = np.abs(resid) / scale > params["threshold"]     # NaN compares False
    # onset only: no condition in the previous `rearm` points
    cs = np.concatenate(([0], np.cumsum(cond.astype(np.int64))))
    idx = np.arange(n)
    prior = cs[idx] - cs[np.maximum(idx - r, 0)]
    out = cond & (prior == 0)
    return out
