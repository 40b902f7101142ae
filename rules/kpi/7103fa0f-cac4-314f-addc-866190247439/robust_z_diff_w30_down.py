"""robust_z_diff_w30_down: robust z-score (median/MAD) of the first difference, downward.

Normal: The change from the previous point stays within 1.085e+11 robust deviations (1.4826 x
    MAD, at least 2e-11, the data's resolution) of the median of the previous 30 points.
Abnormal: The change from the previous point is more than 1.085e+11 robust deviations below the
    median of the previous 30 points; it alarms once per burst: only when the condition was off
    for the 2 points before.
"""

import numpy as np

PARAMS = {
    "window": 30,
    "min_scale": 2.000000165480742e-11,
    "threshold": 108541665077.2,
    "persistence": 1,
    "cooldown": 2,
}
LOOKBACK = 34


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
    x = np.concatenate(([0.0], np.diff(values)))
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
    s = -score(values, timestamps, params)
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
