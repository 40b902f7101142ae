"""static_diff_up: static bound of the first difference, upward.

Normal: The change from the previous point stays within the fitted bound 6.492e+06.
Abnormal: The change from the previous point is at or above 6.492e+06.
"""

import numpy as np

PARAMS = {
    "threshold": 6492288.584000001,
    "persistence": 1,
}
LOOKBACK = 2


def score(values, timestamps, params):
    """Score of each point: larger means more anomalous in the rule's direction."""
    values = np.asarray(values, dtype=float)
    x = np.concatenate(([0.0], np.diff(values)))
    s = x
    return np.asarray(s, dtype=float)


def detect(values, timestamps, params=PARAMS):
    """True where the point is anomalous (see the module docstring)."""
    s = score(values, timestamps, params)
    k = int(params["persistence"])
    if k > 1:
        held = np.full(len(s), np.nan)
        if len(s) >= k:
            held[k - 1 :] = np.lib.stride_tricks.sliding_window_view(s, k).min(axis=1)
        s = held
    alarm = np.nan_to_num(s, nan=-np.inf) >= params["threshold"]
    return alarm
