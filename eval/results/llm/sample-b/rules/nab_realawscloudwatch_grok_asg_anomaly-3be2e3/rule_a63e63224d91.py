"""Normal: the share of large point-to-point changes (a change of more than `min_rel_change` x |previous value|) among the last `short_window` points stays within `rate_increase` of the same share over the `base_window` points before them: the series holds its level or alternates no faster than it did recently.
Abnormal: the share of large changes in the last `short_window` points exceeds the baseline share by more than `rate_increase` (a sudden onset of rapid flapping or repeated spikes); it alarms once per burst: only when the condition was off for the `cooldown` points before.
"""
import numpy as np

PARAMS = {
    "short_window": 13,
    "base_window": 156,
    "min_rel_change": 0.059340410774379376,
    "rate_increase": 0.5530326581019751,
    "cooldown": 61,
}
PARAM_RANGES = {"short_window": (12, 48), "base_window": (96, 576), "min_rel_change": (0.005, 0.2),
                "rate_increase": (0.1, 0.8), "cooldown": (6, 96)}
LOOKBACK = 725


def detect(values, timestamps, params):
    x = np.asarray(values, dtype=float)
    n = len(x)
    out = np.zeros(n, dtype=bool)
    w = max(2, int(params["short_window"]))
    b = max(w, int(params["base_window"]))
    cd = max(0, int(params["cooldown"]))
    if n < w + b + 1:
        return out
    big = np.zeros(n, dtype=np.int64)
    with np.errstate(invalid="ignore"):
        big[1:] = np.abs(np.diff(x)) > params["min_rel_change"] * np.abs(x[:-1])
    cs = np.concatenate(([0], np.cumsum(big)))           # integer counts: exact
    t = np.arange(w + b, n)
    rate_short = (cs[t + 1] - cs[t + 1 - w]) / w         # changes at t-w+1..t
    rate_base = (cs[t + 1 - w] - cs[t + 1 - w - b]) / b  # changes at t-w-b+1..t-w
    cond = np.zeros(n, dtype=bool)
    cond[w + b:] = (rate_short - rate_base) > params["rate_increase"]
    if cd > 0:
        padded = np.concatenate([np.zeros(cd, dtype=bool), cond[:-1]])
        out = cond & ~np.lib.stride_tricks.sliding_window_view(padded, cd).any(axis=1)
    else:
        out = cond
    return out
