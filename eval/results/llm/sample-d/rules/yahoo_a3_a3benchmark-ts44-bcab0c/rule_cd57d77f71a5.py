"""Normal: The value stays inside the envelope of the previous `window` points (about three daily cycles), at most `margin` times the envelope's range (max - min) above its max or below its min.
Abnormal: The value breaks out of that envelope: it rises above the max, or falls below the min, of the previous `window` points by more than `margin` times their range (a spike or dip beyond the recent daily extremes); it alarms once per burst: only when the condition was off for the `cooldown` points before.
"""
import numpy as np

PARAMS = {"window": 72, "margin": 0.15, "cooldown": 3}
PARAM_RANGES = {"window": (24, 168), "margin": (0.02, 0.6), "cooldown": (1, 12)}
LOOKBACK = 181


def detect(values, timestamps, params):
    raw = np.asarray(values, dtype=float)
    n = len(raw)
    out = np.zeros(n, dtype=bool)
    w = max(3, int(params["window"]))
    cd = max(0, int(params["cooldown"]))
    if n <= w:
        return out
    finite = np.isfinite(raw)
    idx = np.where(finite, np.arange(n), 0)
    np.maximum.accumulate(idx, out=idx)
    x = raw[idx]  # forward-fill NaN (leading NaNs stay NaN)
    env = np.lib.stride_tricks.sliding_window_view(x[:n - 1], w)  # row j: envelope of t = j + w
    hi = env.max(axis=1)
    lo = env.min(axis=1)
    cond = np.zeros(n, dtype=bool)
    with np.errstate(invalid="ignore"):
        rng = hi - lo
        pad = float(params["margin"]) * np.maximum(rng, 1e-9 * (1.0 + np.abs(hi)))
        cur = x[w:]
        cond[w:] = (cur > hi + pad) | (cur < lo - pad)
    # alarm only when the condition was off for the `cooldown` points before
    c = np.concatenate(([0], np.cumsum(cond.astype(np.int64))))
    t = np.arange(n)
    prior = c[t] - c[np.maximum(t - cd, 0)]
    return cond & (prior == 0) & finite
