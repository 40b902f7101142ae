"""spectral_value_w96_up_k3_and_zscore_diff_w1440_both: spectral-residual saliency of the value,
upward, AND rolling z-score of the first difference, both directions.

Normal: The spectral-residual saliency of the value stays below 4.523 times the mean saliency of
    the last 96 points, or the change from the previous point stays within 3.953 standard
    deviations of its mean over the previous 1440 points.
Abnormal: The value is salient: its spectral-residual saliency is at least 4.523 times the mean
    saliency of the last 96 points, for 3 consecutive points, and at the same point the change
    from the previous point is more than 3.953 standard deviations above or below the mean of
    the previous 1440 points; it alarms once per burst: only when the condition was off for the
    239 points before.
"""

import numpy as np

PARAMS = {
    "window": 96,
    "threshold": 3.5233165333671845,
    "persistence": 3,
    "cooldown": 239,
    "gate_window": 1440,
    "gate_threshold": 3.953138873695936,
}
LOOKBACK = 1681


def spectral_saliency(x, width):
    """Spectral-residual saliency of the last point of each window of `width` points ending at t,
    relative to the window's mean saliency (Ren et al., 2019; 5 extrapolated points pad it)."""
    n = len(x)
    out = np.full(n, np.nan)
    if n < width:
        return out
    windows = np.lib.stride_tricks.sliding_window_view(x, width)
    for a in range(0, len(windows), 8000):
        block = windows[a : a + 8000]
        block = block - block.mean(axis=1, keepdims=True)
        # extrapolate from the 6 points before the last one, so the last point stays the edge
        seg = block[:, -7:-1]
        slopes = (seg[:, -1:] - seg[:, :-1]) / np.arange(5, 0, -1)
        ahead = seg[:, 1] + slopes.sum(axis=1)
        ext = np.concatenate((block, np.repeat(ahead[:, None], 5, axis=1)), axis=1)
        spec = np.fft.fft(ext, axis=1)
        log_amp = np.log(np.abs(spec) + 1e-8)
        pad = np.concatenate((log_amp[:, :1], log_amp, log_amp[:, -1:]), axis=1)
        smooth = (pad[:, :-2] + pad[:, 1:-1] + pad[:, 2:]) / 3.0
        residual = np.exp(log_amp - smooth + 1j * np.angle(spec))
        sal = np.abs(np.fft.ifft(residual, axis=1))
        ref = sal[:, :width].mean(axis=1) + 1e-8
        out[width - 1 + a : width - 1 + a + len(block)] = (sal[:, width - 1] - ref) / ref
    return out


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
    x = values
    s = spectral_saliency(x, int(params["window"]))
    return np.asarray(s, dtype=float)


def gate_score(values, timestamps, params):
    """Score of the second condition (the gate), on its own parameters."""
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
    s = score(values, timestamps, params)
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
    # AND: the gate's condition must hold at the same point
    gate = {k[5:]: v for k, v in params.items() if k.startswith("gate_")}
    g = np.abs(gate_score(values, timestamps, gate))
    alarm &= np.nan_to_num(g, nan=-np.inf) >= gate["threshold"]
    quiet = int(params.get("cooldown", 0))
    if quiet > 0:
        alarm = apply_cooldown(alarm, quiet)
    return alarm
