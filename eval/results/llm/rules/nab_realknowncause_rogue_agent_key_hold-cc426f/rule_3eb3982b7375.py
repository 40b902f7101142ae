"""Normal: after an outage (a run of at least `min_gap` zero points) the metric resumes at its usual on-level: the short trailing median (`median_window` points, removes single spikes) stays below `ratio` x the mean non-zero smoothed level of the previous `base_window` points; spikes and short dropouts elsewhere are ignored.
Abnormal: (a) within `post_window` points after such an outage, the smoothed value is above `ratio` x the usual on-level on at least `min_count` of the last `persist_window` points (an abnormal recovery); or (b) a value at or above `spike_threshold` while the median of the last `outage_window` points is zero (a spike in the middle of a long outage; spikes during normal operation or right after a short dropout are ignored); alarms once per episode: only when the condition was off for the `cooldown` points before.
"""
import numpy as np

PARAMS = {"min_gap": 36, "post_window": 48, "median_window": 5, "base_window": 288, "min_on": 24,
          "ratio": 1.12, "persist_window": 10, "min_count": 7, "spike_threshold": 0.1241, "outage_window": 9,
          "cooldown": 24}
PARAM_RANGES = {"min_gap": (12, 96), "post_window": (12, 96), "median_window": (3, 9),
                "base_window": (96, 288), "min_on": (6, 96), "ratio": (1.02, 2.0),
                "persist_window": (4, 24), "min_count": (2, 24), "spike_threshold": (0.03, 0.5), "outage_window": (3, 24),
                "cooldown": (0, 48)}
LOOKBACK = 570


def _wsum(x, w, inclusive):
    """Sum of x over the w points ending at t (inclusive) or just before t; NaN without history."""
    n = len(x)
    res = np.full(n, np.nan)
    src = x if inclusive else x[:-1]
    off = w - 1 if inclusive else w
    if 1 <= w and n > off:
        res[off:] = np.lib.stride_tricks.sliding_window_view(src, w).sum(axis=1)
    return res


def detect(values, timestamps, params):
    v = np.asarray(values, dtype=float)
    n = len(v)
    out = np.zeros(n, dtype=bool)
    g, pw_ = max(1, int(params["min_gap"])), max(1, int(params["post_window"]))
    mw, L = max(1, int(params["median_window"])), max(2, int(params["base_window"]))
    pw, c = max(1, int(params["persist_window"])), max(0, int(params["cooldown"]))
    ow = max(1, int(params["outage_window"]))
    if n < max(mw + L, g + pw_) + 1:
        return out
    zero = ~(np.abs(v) > 0)                                   # zeros and NaN count as outage
    full_gap = _wsum(zero.astype(float), g, True) == g        # v[t-g+1..t] all zero
    recent_gap = _wsum(full_gap.astype(float), pw_, False) > 0  # an outage ended within post_window
    f = np.full(n, np.nan)
    with np.errstate(all="ignore"):
        f[mw - 1:] = np.median(np.lib.stride_tricks.sliding_window_view(v, mw), axis=1)
    on = np.isfinite(f) & (f > 0)
    cnt = _wsum(on.astype(float), L, False)
    with np.errstate(all="ignore"):
        base = _wsum(np.where(on, f, 0.0), L, False) / cnt
        high = on & recent_gap & (cnt >= params["min_on"]) & (f > params["ratio"] * base)
    high &= np.isfinite(base)
    count = _wsum(high.astype(float), pw, True)
    cond = high & (count >= params["min_count"])
    fo = np.full(n, np.nan)                                   # median of the last ow points
    if n >= ow:
        fo[ow - 1:] = np.median(np.lib.stride_tricks.sliding_window_view(v, ow), axis=1)
    with np.errstate(all="ignore"):
        cond |= (v >= params["spike_threshold"]) & ~(fo > 0) & np.isfinite(fo)
    prev = np.zeros(n, dtype=bool)
    for j in range(1, c + 1):
        prev[j:] |= cond[:-j]
    out[:] = cond & ~prev
    return out
