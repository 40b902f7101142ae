"""Normal: the change from the previous point is within `threshold` times the median absolute change of the previous `scale_window` points, or it matches the median change at the same time of day over the previous `season_days` days within `threshold` times the median absolute mismatch.
Abnormal: the hourly change (up or down) exceeds `threshold` times its recent typical size AND departs from the seasonal expected change by more than `threshold` times the typical mismatch (scales over the previous `scale_window` points, at least `min_points` at the series start); alarms once per burst.
"""
import numpy as np

PARAMS = {"threshold": 4.5, "scale_window": 168, "season_days": 3, "min_points": 24, "min_scale": 1e-9}
PARAM_RANGES = {"threshold": (3.0, 10.0), "scale_window": (24, 168), "season_days": (1, 4),
                "min_points": (8, 96)}
LOOKBACK = 270


def _scale(x, w, m, floor):
    """Median of x over the previous w points (expanding from index 1 while fewer exist)."""
    n = len(x)
    s = np.full(n, np.nan)
    for t in range(m + 1, min(w, n - 1) + 1):
        s[t] = np.median(x[1:t])
    if n > w + 1:
        s[w + 1:] = np.median(np.lib.stride_tricks.sliding_window_view(x[1:], w)[: n - w - 1], axis=1)
    return np.maximum(s, floor)


def detect(values, timestamps, params):
    v = np.asarray(values, dtype=float)
    n = len(v)
    out = np.zeros(n, dtype=bool)
    w = max(2, int(params["scale_window"]))
    m = max(2, min(int(params["min_points"]), w))
    if n <= m + 1:
        return out
    isnan = np.isnan(v)
    v = v[np.maximum.accumulate(np.where(isnan, 0, np.arange(n)))]  # causal forward fill
    period = max(1, int(round(86400.0 / max(1, int(timestamps[1] - timestamps[0])))))
    days = min(max(0, int(params["season_days"])), (LOOKBACK - w - 2) // period)
    dif = np.full(n, np.nan)
    dif[1:] = v[1:] - v[:-1]
    exp = np.zeros(n)
    if days >= 1:
        stack = np.full((days, n), np.nan)
        for d in range(1, days + 1):
            if d * period < n:
                stack[d - 1, d * period:] = dif[: n - d * period]
        srt, cnt, cols = np.sort(stack, axis=0), np.sum(~np.isnan(stack), axis=0), np.arange(n)
        mid = 0.5 * (srt[np.maximum((cnt - 1) // 2, 0), cols] + srt[cnt // 2 - (cnt == 0), cols])
        exp = np.where(cnt > 0, mid, 0.0)
    a1, a2 = np.abs(dif), np.abs(dif - exp)
    floor, k = float(params["min_scale"]), float(params["threshold"])
    with np.errstate(invalid="ignore"):
        cond = (a1 > k * _scale(a1, w, m, floor)) & (a2 > k * _scale(a2, w, m, floor))
    cond &= ~isnan
    prev = np.concatenate(([False], cond[:-1]))
    return cond & ~prev
