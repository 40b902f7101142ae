"""zscore_diff_w120_both: rolling z-score of the first difference, both directions.

Normal: The change from the previous point stays within 19.26 standard deviations of its mean
    over the previous 120 points.
Abnormal: The change from the previous point is more than 19.26 standard deviations above or
    below the mean of the previous 120 points.
"""

import numpy as np

PARAMS = {
    "window": 120,
    "threshold": 19.258768157155096,
    "persistence": 1,
}
LOOKBACK = 122


def window_stats(x, width, lag):
    """Mean and std of the `width` points ending `lag` points before t (NaN until they exist)."""
    n = len(x)
    mean = np.full(n, np.nan)
    std = np.full(n, np.nan)
    first = width - 1 + lag
    if n <= first:
        return mean, std
    base = x[0]
    c1 = np.concatenate(([0.0], np.cumsum(x - base)))
    c2 = np.concatenate(([0.0], np.cumsum((x - base) ** 2)))
    end = np.arange(first, n) - lag + 1
    s1 = c1[end] - c1[end - width]
    s2 = c2[end] - c2[end - width]
    m = s1 / width
    mean[first:] = m + base
    std[first:] = np.sqrt(np.maximum(s2 / width - m * m, 0.0))
    return mean, std


def floor_scale(scale, level):
    """Keep a scale strictly positive so a perfectly flat history still gives finite scores."""
    return np.maximum(scale, 1e-9 * (1.0 + np.abs(level)))


def score(values, timestamps, params):
    """Score of each point: larger means more anomalous in the rule's direction."""
    values = np.asarray(values, dtype=float)
    x = np.concatenate(([0.0], np.diff(values)))
    mean, std = window_stats(x, int(params["window"]), 1)
    s = (x - mean) / floor_scale(std, mean)
    return np.asarray(s, dtype=float)


def detect(values, timestamps, params=PARAMS):
    """True where the point is anomalous (see the module docstring)."""
    s = np.abs(score(values, timestamps, params))
    k = int(params["persistence"])
    if k > 1:
        held = np.full(len(s), np.nan)
        if len(s) >= k:
            held[k - 1 :] = np.lib.stride_tricks.sliding_window_view(s, k).min(axis=1)
        s = held
    alarm = np.nan_to_num(s, nan=-np.inf) >= params["threshold"]
    return alarm
