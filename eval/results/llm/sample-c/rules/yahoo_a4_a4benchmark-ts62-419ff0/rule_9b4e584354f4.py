"""Normal: Each hour-to-hour change (either direction) is no larger than `ratio` times the largest absolute change of the previous `window` points, or within `min_z` robust deviations (1.4826 x MAD of those changes) of their median.
Abnormal: A change whose size is at least `ratio` times the largest absolute change of the previous `window` points AND more than `min_z` robust deviations from their median (a jump bigger than anything seen recently); it alarms once per burst, only when the condition was off for the `cooldown` points before, which also skips the snap-back after a spike.
"""
import numpy as np

PARAMS = {"window": 24, "ratio": 1.3, "min_z": 3.0, "cooldown": 2}
PARAM_RANGES = {"window": (12, 72), "ratio": (0.8, 3.0), "min_z": (1.5, 8.0), "cooldown": (1, 12)}
LOOKBACK = 86  # max window (72) + 2 points for the changes + max cooldown (12)


def detect(values, timestamps, params):
    v = np.asarray(values, dtype=float)
    n = len(v)
    out = np.zeros(n, dtype=bool)
    w = int(params["window"])
    cd = max(int(params["cooldown"]), 0)
    if w < 3 or n < w + 2:
        return out
    d = np.diff(v)  # d[j] = v[j+1] - v[j], the change into point j+1
    # win[i] = d[i .. i+w-1]: the `window` changes before the change d[i+w] (into point i+w+1)
    win = np.lib.stride_tricks.sliding_window_view(d[:-1], w)
    biggest = np.max(np.abs(win), axis=1)
    med = np.median(win, axis=1)
    scale = np.maximum(1.4826 * np.median(np.abs(win - med[:, None]), axis=1), 1e-9)
    step = d[w:]
    with np.errstate(invalid="ignore"):  # NaN anywhere -> no alarm
        hit = (np.abs(step) >= params["ratio"] * biggest) & (np.abs(step - med) > params["min_z"] * scale)
    cond = np.zeros(n, dtype=bool)
    cond[w + 1:] = hit
    # once per burst: alarm only if the condition was off for the previous `cd` points
    c = np.concatenate(([0], np.cumsum(cond.astype(np.int64))))
    t = np.arange(n)
    prev = c[t] - c[np.maximum(t - cd, 0)]
    return cond & (prev == 0)
