"""zscore_diff_w60_both: rolling z-score of the first difference, both directions.

Normal: The change from the previous point stays within 5.901 standard deviations of its mean
    over the previous 60 points.
Abnormal: The change from the previous point is more than 5.901 standard deviations above or
    below the mean of the previous 60 points; it alarms once per burst: only when the condition
    was off for the 14 points before.
"""

import numpy as np

PARAMS = {
    "window": 60,
    "threshold": 5.901054297605667,
    "persistence": 1,
    "cooldown": 14,
}
LOOKBACK = 76


def window_stats(x, width, lag):
    """Mean and std of the `width` points ending `lag` points before t (NaN until they exist).

    Every window is summarised from its own points only: blocks of 1, 2, 4, ... points are merged
    pairwise (Chan's formula for the mean and the sum of squared deviations), then the blocks
    that add up to `width` are merged. So the numbers are precise at any level of the series and
    identical wherever the window sits in the input, and a missing value spoils only the windows
    that hold it.
    """
    n = len(x)
    mean = np.full(n, np.nan)
    std = np.full(n, np.nan)
    first = width - 1 + lag
    if n <= first:
        return mean, std
    # block_mean[i] and block_m2[i] describe the `size` points starting at index i
    size, block_mean, block_m2 = 1, np.asarray(x, dtype=float), np.zeros(n)
    blocks = []
    while size <= width:
        if width & size:
            blocks.append((size, block_mean, block_m2))
        if 2 * size > width:
            break
        d = block_mean[size:] - block_mean[:-size]
        block_m2 = block_m2[:-size] + block_m2[size:] + d * d * (size / 2)
        block_mean = block_mean[:-size] + d * 0.5
        size *= 2
    # merge the blocks of the window starting at i, largest first, each after the previous one
    windows = n - width + 1
    count, offset = 0, 0
    m = m2 = np.zeros(windows)
    for size, block_mean, block_m2 in reversed(blocks):
        bm = block_mean[offset : offset + windows]
        bq = block_m2[offset : offset + windows]
        if count == 0:
            m, m2 = bm, bq
        else:
            d = bm - m
            m2 = m2 + bq + d * d * (count * size / (count + size))
            m = m + d * (size / (count + size))
        count += size
        offset += size
    mean[first:] = m[: n - first]
    std[first:] = np.sqrt(m2[: n - first] / width)
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
