"""Normal: the value changes gradually: the change over `span` points stays within the usual size of such changes over the `window` points before, even during slow daily swings.
Abnormal: the change over the last `span` points is larger than both `threshold` robust standard deviations of the `span`-point changes in the baseline (1.4826 * MAD over the preceding `window` points) and `min_rel_change` times the baseline median level: an abrupt collapse (if `detect_drops`) or jump (if `detect_rises`); it alarms once per episode, only when the condition was off for the `cooldown` points before.
"""
import numpy as np

PARAMS = {
    "span": 9,
    "window": 122,
    "threshold": 18.794771753549107,
    "min_rel_change": 0.05445052378790765,
    "detect_drops": False,
    "detect_rises": True,
    "cooldown": 1,
}
PARAM_RANGES = {"span": (1, 12), "window": (48, 192), "threshold": (3.0, 20.0),
                "min_rel_change": (0.03, 0.4), "cooldown": (1, 144)}
LOOKBACK = 360


def _med(a):
    return np.nanmedian(a, axis=1) if np.isnan(a).any() else np.median(a, axis=1)


def detect(values, timestamps, params):
    x = np.asarray(values, dtype=float)
    n = len(x)
    out = np.zeros(n, dtype=bool)
    k = max(1, int(params["span"]))
    w = max(3, int(params["window"]))
    cd = max(0, int(params["cooldown"]))
    t0 = 2 * k + w - 1                   # first t with a full baseline
    m = n - t0
    if m <= 0:
        return out
    swv = np.lib.stride_tricks.sliding_window_view
    dk = x[k:] - x[:-k]                  # dk[i]: change over k points ending at i + k
    cur = x[t0:] - x[t0 - k:n - k]       # change over the last k points
    base = swv(dk, w)[:m]                # the w k-point changes ending by t - k
    b_med = _med(base)
    rsd = 1.4826 * _med(np.abs(base - b_med[:, None]))
    level = _med(swv(x, w)[k:k + m])     # baseline level over the same stretch
    with np.errstate(invalid="ignore"):
        lim = np.maximum(float(params["threshold"]) * rsd,
                         float(params["min_rel_change"]) * np.abs(level))
        lim = np.maximum(lim, 1e-9 * (1.0 + np.abs(level)))
        dev = np.nan_to_num(cur - b_med, nan=0.0)
        c = np.zeros(m, dtype=bool)
        if params["detect_rises"]:
            c |= dev > lim
        if params["detect_drops"]:
            c |= dev < -lim
    cond = np.zeros(n, dtype=bool)
    cond[t0:] = c
    if cd > 0:
        cs = np.concatenate(([0], np.cumsum(cond.astype(np.int64))))
        idx = np.arange(n)
        prev = cs[idx] - cs[np.maximum(idx - cd, 0)]   # conditions in the cd points before t
        out = cond & (prev == 0)
    else:
        out = cond
    return out
