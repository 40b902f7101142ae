"""Normal: each hour-to-hour step is close to the median step at the same slot in the previous `cycles` periods of `period` points; the residual stays within `threshold` robust deviations (1.4826 * median absolute residual over the previous `window` points).
Abnormal: a step whose residual is more than `threshold` robust deviations above or below, flagged only when the previous step was not itself such a jump (so the reversion of a spike is not flagged again).
"""
import numpy as np

PARAMS = {"period": 24, "cycles": 3, "window": 72, "threshold": 6.0, "min_rel_scale": 0.001}
PARAM_RANGES = {"cycles": (1, 3), "window": (24, 120), "threshold": (3.0, 12.0), "min_rel_scale": (0.0, 0.02)}
LOOKBACK = 200  # >= max window (120) + max cycles*period (72) + 2


def _nanmedian(m, axis):
    allnan = np.all(np.isnan(m), axis=axis)
    filled = np.where(np.expand_dims(allnan, axis), 0.0, m)
    med = np.nanmedian(filled, axis=axis)
    med[allnan] = np.nan
    return med


def detect(values, timestamps, params):
    v = np.asarray(values, dtype=float)
    n = len(v)
    out = np.zeros(n, dtype=bool)
    p, c, w = int(params["period"]), int(params["cycles"]), int(params["window"])
    if n < 3 or w < 2:
        return out
    d = np.full(n, np.nan)
    d[1:] = v[1:] - v[:-1]
    shifted = np.full((max(c, 1), n), np.nan)
    for k in range(1, c + 1):
        if k * p < n:
            shifted[k - 1, k * p:] = d[:n - k * p]
    base = _nanmedian(shifted, axis=0)
    r = np.where(np.isnan(base), d, d - base)
    a = np.concatenate([np.full(w, np.nan), np.abs(r)])[:n + w - 1]
    win = np.lib.stride_tricks.sliding_window_view(a, w)[:n]  # previous w residuals, current excluded
    cnt = np.sum(~np.isnan(win), axis=1)
    scale = 1.4826 * _nanmedian(win, axis=1)
    floor = params["min_rel_scale"] * np.abs(v) + 1e-9
    scale = np.maximum(np.nan_to_num(scale, nan=0.0), floor)
    jump = (np.abs(np.nan_to_num(r, nan=0.0)) > params["threshold"] * scale) & (cnt >= w // 2)
    prev = np.zeros(n, dtype=bool)
    prev[1:] = jump[:-1]
    out = jump & ~prev & ~np.isnan(v)
    return out
