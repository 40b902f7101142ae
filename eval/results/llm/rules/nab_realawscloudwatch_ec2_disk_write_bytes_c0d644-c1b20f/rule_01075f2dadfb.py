"""Normal: the metric is mostly idle with short bursts: fewer than `min_active_frac` of the last `window` points exceed `active_level`, and a burst climbs to its peak within a few steps, then falls back.
Abnormal: (a) at least `min_active_frac` of the last `window` points exceed `active_level` (bursts back to back), or (b) the value has strictly increased at each of the last `min_rises` steps and is now at least `min_level` (a sustained creep upwards); it alarms only when the condition was off for the `cooldown` points before.
"""
import numpy as np

PARAMS = {"window": 84, "active_level": 146502.0, "min_active_frac": 0.495,
          "min_rises": 5, "min_level": 1000000.0, "cooldown": 61}
PARAM_RANGES = {"window": (6, 96), "active_level": (1000.0, 10000000.0),
                "min_active_frac": (0.3, 0.95), "min_rises": (3, 12),
                "min_level": (10000.0, 50000000.0), "cooldown": (0, 144)}
LOOKBACK = 241


def detect(values, timestamps, params):
    values = np.asarray(values, dtype=float)
    n = len(values)
    w, k, cd = int(params["window"]), int(params["min_rises"]), int(params["cooldown"])
    cond = np.zeros(n, dtype=bool)
    v = np.nan_to_num(values, nan=-np.inf)  # missing values are not active
    # (a) density of active points over the last w points
    if 1 <= w <= n:
        active = (v > params["active_level"]).astype(np.int64)
        counts = np.lib.stride_tricks.sliding_window_view(active, w).sum(axis=1)  # ends at t
        cond[w - 1:] |= counts >= params["min_active_frac"] * w
    # (b) k consecutive strict rises ending at a value of at least min_level
    if 1 <= k and n >= k + 1:
        rise = np.zeros(n, dtype=np.int64)
        with np.errstate(invalid="ignore"):
            rise[1:] = values[1:] > values[:-1]  # NaN on either side is not a rise
        runs = np.zeros(n, dtype=np.int64)
        runs[k - 1:] = np.lib.stride_tricks.sliding_window_view(rise, k).sum(axis=1)
        creep = (runs == k) & (v >= params["min_level"])
        creep[:k] = False  # the first step needs a previous point
        cond |= creep
    if cd <= 0:
        return cond
    # alarm only when the condition was off for the previous cd points (integer counts: exact)
    cs = np.concatenate([[0], np.cumsum(cond.astype(np.int64))])
    idx = np.arange(n)
    return cond & ((cs[idx] - cs[np.maximum(idx - cd, 0)]) == 0)
