"""static_value_both: static bound of the value, both directions.

Normal: The value stays within the fitted bound 1.143e+07.
Abnormal: The value is beyond +/- 1.143e+07.
"""

import numpy as np

PARAMS = {
    "threshold": 11434085,
    "persistence": 1,
}
LOOKBACK = 1


def score(values, timestamps, params):
    """Score of each point: larger means more anomalous in the rule's direction."""
    values = np.asarray(values, dtype=float)
    x = values
    s = x
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
