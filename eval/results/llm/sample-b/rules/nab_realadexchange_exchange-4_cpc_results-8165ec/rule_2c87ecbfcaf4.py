"""Normal: Each value stays below, or only slightly above, the highest value of the previous `window` points: it exceeds that trailing maximum by at most `threshold` robust deviations (1.4826 x MAD of the window, at least `min_rel_scale` times the window median's magnitude). Repeats of spikes already seen within the window are normal.
Abnormal: The value is a new high for the trailing `window` points, above their maximum by more than `threshold` robust deviations (upward only; needs a full window of history); it alarms once per burst: only when the condition was off for the `cooldown` points before.
"""
import numpy as np

PARAMS = {"window": 168, "threshold": 3.0, "min_rel_scale": 0.05, "cooldown": 24}
PARAM_RANGES = {"window": (48, 336), "threshold": (0.5, 20.0),
                "min_rel_scale": (0.01, 0.2), "cooldown": (0, 48)}
LOOKBACK = 390


def detect(values, timestamps, params):
    x = np.asarray(values, dtype=float)
    n = len(x)
    w = max(5, int(params["window"]))
    cd = max(0, int(params["cooldown"]))
    cond = np.zeros(n, dtype=bool)
    if n <= w:
        return cond
    sw = np.lib.stride_tricks.sliding_window_view
    past = sw(x, w)[: n - w]                  # row for t = w..n-1: x[t-w .. t-1]
    with np.errstate(invalid="ignore"):
        pmax = past.max(axis=1)               # NaN in the window -> no alarm
        med = np.median(past, axis=1)
        mad = 1.4826 * np.median(np.abs(past - med[:, None]), axis=1)
        scale = np.maximum(mad, np.maximum(params["min_rel_scale"] * np.abs(med), 1e-12))
        cond[w:] = (x[w:] - pmax) / scale > params["threshold"]
    if cd > 0:
        padded = np.concatenate([np.zeros(cd, dtype=bool), cond])
        prior = sw(padded, cd)[:n].any(axis=1)   # condition seen in t-cd..t-1
        return cond & ~prior
    return cond
