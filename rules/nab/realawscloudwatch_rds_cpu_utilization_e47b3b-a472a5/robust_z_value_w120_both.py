"""robust_z_value_w120_both: robust z-score (median/MAD) of the value, both directions.

Normal: The value stays within 9.423 robust deviations (1.4826 x MAD, at least 0.0005, the
    data's resolution) of the median of the previous 120 points.
Abnormal: The value is more than 9.423 robust deviations above or below the median of the
    previous 120 points; it alarms once per burst: only when the condition was off for the 100
    points before.
"""

import numpy as np

PARAMS = {
    "window": 120,
    "min_scale": 0.0004999999999988347,
    "threshold": 9.422721898665527,
    "persistence": 1,
    "cooldown": 100,
}
LOOKBACK = 221


def past_median_mad(x, width):
    """Median and median absolute deviation of the `width` points before t (NaN until then)."""
    n = len(x)
    med = np.full(n, np.nan)
    mad = np.full(n, np.nan)
    if n <= width:
        return med, mad
    windows = np.lib.stride_tricks.sliding_window_view(x[:-1], width)
    for a in range(0, len(windows), 20000):
        block = windows[a : a + 20000]
        m = np.median(block, axis=1)
        med[width + a : width + a + len(block)] = m
        mad[width + a : width + a + len(block)] = np.median(np.abs(block - m[:, None]), axis=1)
    return med, mad


def floor_scale(scale, level):
    """Keep a scale strictly positive so a perfectly flat history still gives finite scores."""
    return np.maximum(scale, 1e-9 * (1.0 + np.abs(level)))


def score(values, timestamps, params):
    """Score of each point: larger means more anomalous in the rule's direction."""
    values = np.asarray(values, dtype=float)
    x = values
    median, mad = past_median_mad(x, int(params["window"]))
    spread = np.maximum(1.4826 * mad, params["min_scale"])
    s = (x - median) / floor_scale(spread, median)
    return np.asarray(s, dtype=float)


def apply_cooldown(alarm, quiet):
    """Keep an alarm only if the condition did not hold in any of the previous `quiet` points
    (one alarm at the start of each burst)."""
    held = np.concatenate(([0], np.cumsum(alarm)))
    idx = np.arange(len(alarm))
    return alarm & (held[idx] == held[np.maximum(idx - quiet, 0)])


def detect(values, timestamps, params=PARAMS):
    """True where the point is anomalous (see the module docstring)."""
    s = np.abs(score(values, timestamps, params))
    k = int(params["persistence"])
    if k > 1:
        # the smallest score of the last k points: the condition held k points in a row
        held = np.full(len(s), np.nan)
        if len(s) >= k:
            last_k = held[k - 1 :]
            last_k[:] = s[k - 1 :]
            for j in range(1, k):
                np.minimum(last_k, s[k - 1 - j : len(s) - j], out=last_k)
        s = held
    alarm = np.nan_to_num(s, nan=-np.inf) >= params["threshold"]
    quiet = int(params.get("cooldown", 0))
    if quiet > 0:
        alarm = apply_cooldown(alarm, quiet)
    return alarm
