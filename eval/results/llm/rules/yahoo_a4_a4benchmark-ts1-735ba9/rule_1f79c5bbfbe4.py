"""Normal: each hourly step (change from the previous point) is close to the median step at the same slot in the previous `cycles` periods of `period` points; the leftover is of the usual size (trailing median absolute leftover over `window` points).
Abnormal: the seasonal-adjusted step exceeds `k` times the trailing median absolute leftover, in either direction; alarms once per burst (no alarm condition in the previous `cooldown` points), so the snap-back after a spike is not flagged again.
"""
import numpy as np

PARAMS = {"period": 24, "cycles": 3, "window": 72, "k": 6.0, "cooldown": 3}
PARAM_RANGES = {"cycles": (1, 7), "window": (24, 168), "k": (2.5, 20.0), "cooldown": (1, 6)}
LOOKBACK = 360


def detect(values, timestamps, params):
    values = np.asarray(values, dtype=float)
    n = len(values)
    out = np.zeros(n, dtype=bool)
    p = int(params["period"])
    c = int(params["cycles"])
    w = int(params["window"])
    k = float(params["k"])
    cool = int(params["cooldown"])
    if n < 3:
        return out
    d = np.full(n, np.nan)
    d[1:] = np.diff(values)  # step into point t
    e = np.full(n, np.nan)  # step minus the typical step at the same slot
    for t in range(1, n):
        lags = [d[t - j * p] for j in range(1, c + 1) if t - j * p >= 1]
        lags = [x for x in lags if np.isfinite(x)]
        if lags and np.isfinite(d[t]):
            e[t] = d[t] - float(np.median(lags))
    ae = np.abs(e)
    last_hit = -10 ** 9
    for t in range(1, n):
        if not np.isfinite(ae[t]):
            continue
        past = ae[max(0, t - w):t]
        past = past[np.isfinite(past)]
        if len(past) < 12:
            continue
        scale = float(np.median(past))
        if scale <= 0:
            scale = max(float(np.mean(past)), 1e-9)
        if ae[t] > k * scale:
            if t - last_hit > cool:
                out[t] = True
            last_hit = t
    return out
