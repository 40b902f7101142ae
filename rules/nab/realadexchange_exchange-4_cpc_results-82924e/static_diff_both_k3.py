"""static_diff_both_k3: static bound of the first difference, both directions.

Normal: The change from the previous point stays within the fitted bound 0.05201.
Abnormal: The change from the previous point is beyond +/- 0.05201, for 3 consecutive points.
"""

import numpy as np

PARAMS = {
    "threshold": 0.05201332491645,
    "persistence": 3,
}
LOOKBACK = 4


def score(values, timestamps, params):
    """Score of each point: larger means more anomalous in the rule's direction."""
    values = np.asarray(values, dtype=float)
    x = np.concatenate(([0.0], np.diff(values)))
    s = x
    return np.asarray(s, dtype=float)


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
    return alarm
