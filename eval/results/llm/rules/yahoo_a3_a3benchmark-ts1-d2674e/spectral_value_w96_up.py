"""spectral_value_w96_up: spectral-residual saliency of the value, upward.

Normal: The spectral-residual saliency of the value stays below 5.224 times the mean saliency of
    the last 96 points.
Abnormal: The value is salient: its spectral-residual saliency is at least 5.224 times the mean
    saliency of the last 96 points; it alarms once per burst: only when the condition was off
    for the 1 points before.
"""

import numpy as np

PARAMS = {
    "window": 96,
    "threshold": 4.223576805260956,
    "persistence": 1,
    "cooldown": 1,
}
LOOKBACK = 97


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


def score(values, timestamps, params):
    """Score of each point: larger means more anomalous in the rule's direction."""
    values = np.asarray(values, dtype=float)
    x = values
    s = spectral_saliency(x, int(params["window"]))
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
    quiet = int(params.get("cooldown", 0))
    if quiet > 0:
        alarm = apply_cooldown(alarm, quiet)
    return alarm
