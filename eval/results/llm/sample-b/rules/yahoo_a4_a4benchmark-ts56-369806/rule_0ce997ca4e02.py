"""Normal: a new value stays inside the range (min to max) of the previous `window` values, or leaves it by less than `threshold` robust standard deviations of the point-to-point changes (the level wanders, so small new highs and lows are normal).
Abnormal: the value exceeds the maximum, or falls below the minimum, of the previous `window` values by more than `threshold` robust standard deviations of the changes (1.4826 * MAD of the `scale_window` changes before it): a spike or dip that breaks far out of the recent range; it alarms once per burst, only when the condition was off for the `cooldown` points before.
"""
import numpy as np

PARAMS = {"window": 5, "scale_window": 22, "threshold": 4.188434280814967, "cooldown": 8}
PARAM_RANGES = {"window": (4, 48), "scale_window": (12, 96), "threshold": (0.5, 6.0),
                "cooldown": (1, 12)}
LOOKBACK = 110


def _med(a):
    return np.nanmedian(a, axis=1) if np.isnan(a).any() else np.median(a, axis=1)


def detect(values, timestamps, params):
    x = np.asarray(values, dtype=float)
    n = len(x)
    out = np.zeros(n, dtype=bool)
    w = max(2, int(params["window"]))
    sw = max(4, int(params["scale_window"]))
    cd = max(0, int(params["cooldown"]))
    t0 = max(w, sw + 1)                  # first t with both baselines
    if n <= t0:
        return out
    swv = np.lib.stride_tricks.sliding_window_view
    m = n - t0                           # decisions for t = t0 .. n - 1
    prev = swv(x, w)[t0 - w:t0 - w + m]  # x[t-w .. t-1]
    with np.errstate(invalid="ignore"):
        hi = np.nanmax(prev, axis=1) if np.isnan(prev).any() else prev.max(axis=1)
        lo = np.nanmin(prev, axis=1) if np.isnan(prev).any() else prev.min(axis=1)
    d = np.diff(x)                       # d[i] = x[i+1] - x[i]
    base = swv(d, sw)[t0 - 1 - sw:t0 - 1 - sw + m]   # the sw changes ending at t - 1
    b_med = _med(base)
    dev = np.abs(base - b_med[:, None])
    rsd = 1.4826 * _med(dev)
    with np.errstate(invalid="ignore"):
        mean_dev = np.nanmean(dev, axis=1) if np.isnan(dev).any() else dev.mean(axis=1)
        rsd = np.where(rsd > 0, rsd, 1.2533 * mean_dev)     # fallback for quantised data
        rsd = np.maximum(rsd, 1e-9 * (1.0 + np.abs(x[t0:])))
        excess = np.maximum(x[t0:] - hi, lo - x[t0:]) / rsd
    c = np.nan_to_num(excess, nan=0.0) > float(params["threshold"])
    cond = np.zeros(n, dtype=bool)
    cond[t0:] = c
    if cd > 0:
        cs = np.concatenate(([0], np.cumsum(cond.astype(np.int64))))
        idx = np.arange(n)
        held = cs[idx] - cs[np.maximum(idx - cd, 0)]   # conditions in the cd points before t
        out = cond & (held == 0)
    else:
        out = cond
    return out
