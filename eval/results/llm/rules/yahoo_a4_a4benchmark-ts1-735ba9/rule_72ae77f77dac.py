"""Normal: each value lies close to its local extrapolation (the median, over the previous `fit_points` values, of value plus the median recent hourly change times the distance), within `threshold` times the median absolute extrapolation error of the previous `scale_window` points.
Abnormal: the value departs (up or down) from that extrapolation by more than `threshold` times the median absolute error of the previous `scale_window` points (at least `min_points` at the series start); alarms once per burst (only when the condition was off at the previous point).
"""
import numpy as np

PARAMS = {
    "fit_points": 4,
    "scale_window": 53,
    "threshold": 3.8167774105720973,
    "min_points": 59,
    "min_scale": 5.72276603525129e-10,
}
PARAM_RANGES = {"fit_points": (2, 6), "scale_window": (24, 168), "threshold": (3.0, 12.0),
                "min_points": (8, 96)}
LOOKBACK = 180


def detect(values, timestamps, params):
    v = np.asarray(values, dtype=float)
    n = len(v)
    out = np.zeros(n, dtype=bool)
    k = max(1, int(params["fit_points"]))
    w = max(2, int(params["scale_window"]))
    m = max(2, min(int(params["min_points"]), w))
    s0 = k + 1  # first index with a prediction
    if n <= s0 + m:
        return out
    isnan = np.isnan(v)
    v = v[np.maximum.accumulate(np.where(isnan, 0, np.arange(n)))]  # causal forward fill
    past = np.lib.stride_tricks.sliding_window_view(v, k + 1)[: n - s0]  # v[t-k-1 .. t-1] for t >= s0
    slope = np.median(np.diff(past, axis=1), axis=1)
    dist = np.arange(k + 1, 0, -1)  # distance of v[t-k-1 .. t-1] to t
    pred = np.median(past[:, 1:] + slope[:, None] * dist[None, 1:], axis=1)
    err = np.full(n, np.nan)
    err[s0:] = np.abs(v[s0:] - pred)
    scale = np.full(n, np.nan)  # median |err| of the previous w points, expanding at the start
    for t in range(s0 + m, min(w + s0, n - 1) + 1):
        scale[t] = np.median(err[s0:t])
    if n > w + s0 + 1:
        scale[w + s0 + 1:] = np.median(
            np.lib.stride_tricks.sliding_window_view(err[s0 + 1:], w)[: n - w - s0 - 1], axis=1)
    scale = np.maximum(scale, float(params["min_scale"]))
    with np.errstate(invalid="ignore"):
        cond = err > float(params["threshold"]) * scale
    cond &= ~isnan
    prev = np.concatenate(([False], cond[:-1]))
    return cond & ~prev
