"""Normal: Points rarely leave the range of the `baseline_window` points before the last `recent_window` points; fewer than `min_count` of the last `recent_window` points lie more than `margin` robust deviations (1.4826 x MAD of the baseline, at least `min_rel_scale` times the baseline median's magnitude) below the baseline minimum. Single outliers, and upward moves unless `check_up` is set, are ignored.
Abnormal: At least `min_count` of the last `recent_window` points lie below the baseline minimum by more than `margin` robust deviations (or, with `check_up`, above the baseline maximum by that much): a sustained move out of the recent range; it alarms once per burst: only when the condition was off for the `cooldown` points before.
"""
import numpy as np

PARAMS = {"recent_window": 5, "min_count": 4, "baseline_window": 60,
          "margin": 0.5, "min_rel_scale": 0.05, "check_up": False, "cooldown": 12}
PARAM_RANGES = {"recent_window": (2, 15), "min_count": (2, 15),
                "baseline_window": (20, 120), "margin": (0.1, 5.0),
                "min_rel_scale": (0.01, 0.3), "cooldown": (0, 30)}
LOOKBACK = 170


def detect(values, timestamps, params):
    x = np.asarray(values, dtype=float)
    n = len(x)
    m = max(1, int(params["recent_window"]))
    k = min(m, max(1, int(params["min_count"])))
    b = max(5, int(params["baseline_window"]))
    cd = max(0, int(params["cooldown"]))
    cond = np.zeros(n, dtype=bool)
    if n < b + m:
        return cond
    w = np.lib.stride_tricks.sliding_window_view(x, b + m)   # rows end at t = b+m-1 .. n-1
    base, rec = w[:, :b], w[:, b:]
    with np.errstate(invalid="ignore"):
        med = np.median(base, axis=1)
        mad = 1.4826 * np.median(np.abs(base - med[:, None]), axis=1)
        pad = params["margin"] * np.maximum(mad, np.maximum(params["min_rel_scale"] * np.abs(med), 1e-9))
        below = (rec < (base.min(axis=1) - pad)[:, None]).sum(axis=1)
        hit = below >= k
        if params["check_up"]:
            above = (rec > (base.max(axis=1) + pad)[:, None]).sum(axis=1)
            hit |= above >= k
        cond[b + m - 1:] = hit
    if cd > 0:
        padded = np.concatenate([np.zeros(cd, dtype=bool), cond])
        prior = np.lib.stride_tricks.sliding_window_view(padded, cd)[:n].any(axis=1)
        return cond & ~prior
    return cond
