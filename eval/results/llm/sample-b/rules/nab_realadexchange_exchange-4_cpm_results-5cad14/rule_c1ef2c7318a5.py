"""Normal: most points of any short stretch stay below the higher of two robust limits: the median + `threshold` robust deviations of the `short_base` points before the stretch, and the median + `long_threshold` robust deviations of the `long_base` points before it. Recoveries from a dip exceed only the short limit, and lone spikes are too few to count.
Abnormal: at least `min_count` of the last `window` points exceed BOTH limits (robust deviation = 1.4826 x MAD of each baseline, floored at `min_rel_scale` x |its median|): a sustained rise above recent normal that also clears the longer-term level; alarms once per episode: only when the condition was off for the `cooldown` points before.
"""
import numpy as np

PARAMS = {"window": 6, "min_count": 5, "short_base": 48, "long_base": 168, "threshold": 2.0,
          "long_threshold": 0.5, "min_rel_scale": 0.05, "cooldown": 24}
PARAM_RANGES = {"window": (3, 24), "min_count": (2, 20), "short_base": (12, 96),
                "long_base": (96, 336), "threshold": (1.0, 8.0), "long_threshold": (0.0, 3.0),
                "min_rel_scale": (0.01, 0.2), "cooldown": (6, 72)}
LOOKBACK = 440  # >= max window + max long_base + max cooldown + 1


def _limit(x, n, W, B, k, rel):
    """Median + k robust deviations of the B points ending W points before t, for t = B+W-1..n-1
    (NaN if the input is too short for that)."""
    lim = np.full(n, np.nan)
    if B < 3 or n < W + B:
        return lim
    base = np.lib.stride_tricks.sliding_window_view(x[:n - W], B)  # entry j: t = j + B + W - 1
    for s in range(0, len(base), 20000):
        w = base[s:s + 20000]
        m = np.median(w, axis=1)  # a NaN in the baseline gives NaN -> no alarm there
        mad = np.median(np.abs(w - m[:, None]), axis=1)
        scale = np.maximum(np.maximum(1.4826 * mad, rel * np.abs(m)), 1e-12)
        lim[B + W - 1 + s:B + W - 1 + s + len(w)] = m + k * scale
    return lim


def detect(values, timestamps, params):
    x = np.asarray(values, dtype=float)
    n = len(x)
    W, C = max(1, int(params["window"])), int(params["cooldown"])
    rel = params["min_rel_scale"]
    if n < W:
        return np.zeros(n, dtype=bool)
    with np.errstate(invalid="ignore"):
        # the higher limit; NaN (no alarm) until both baselines exist. The long limit only
        # needs to sit a little above the long-term level, so it has its own, smaller threshold.
        lim = np.maximum(_limit(x, n, W, int(params["short_base"]), params["threshold"], rel),
                         _limit(x, n, W, int(params["long_base"]), params["long_threshold"], rel))
        recent = np.lib.stride_tricks.sliding_window_view(x, W)  # entry j ends at t = j + W - 1
        count = (recent > lim[W - 1:, None]).sum(axis=1)         # NaN never counts
    cond = np.zeros(n, dtype=bool)
    cond[W - 1:] = count >= params["min_count"]
    c = np.concatenate(([0], np.cumsum(cond, dtype=np.int64)))
    t = np.arange(n)
    return cond & (c[t] - c[np.maximum(0, t - C)] == 0)
