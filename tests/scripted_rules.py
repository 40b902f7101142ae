"""Rule texts shared by the scripted-LLM tests (what a model might answer)."""

from __future__ import annotations

GOOD = '''"""Level shift.

Normal: the mean of the last `short` points stays near the mean of the `long` points before.
Abnormal: the short mean departs from the baseline mean by more than k baseline deviations.
"""
import numpy as np

PARAMS = {"k": 4.0, "short": 3, "long": 60}
LOOKBACK = 63


def detect(values, timestamps, params):
    k, s, w = float(params["k"]), int(params["short"]), int(params["long"])
    n = len(values)
    out = np.zeros(n, dtype=bool)
    if n < s + w:
        return out
    c = np.concatenate([[0.0], np.cumsum(values)])
    c2 = np.concatenate([[0.0], np.cumsum(values * values)])
    t = np.arange(s + w - 1, n)
    short = (c[t + 1] - c[t + 1 - s]) / s
    base = (c[t + 1 - s] - c[t + 1 - s - w]) / w
    var = (c2[t + 1 - s] - c2[t + 1 - s - w]) / w - base * base
    std = np.sqrt(np.maximum(var, 0.0)) + 1e-9
    out[t] = np.abs(short - base) > k * std
    return out
'''

# Flags nothing: a clear regression against GOOD.
QUIET = '''"""Never fires.

Normal: everything.
Abnormal: nothing.
"""
import numpy as np

PARAMS = {"k": 1.0}
LOOKBACK = 1


def detect(values, timestamps, params):
    return np.zeros(len(values), dtype=bool)
'''

SYNTAX_ERROR = GOOD.replace(
    "def detect(values, timestamps, params):", "def detect(values, timestamps, params)"
)
RUNTIME_ERROR = GOOD.replace("out[t] = np.abs", "out[t] = np.undefined_function")
TRUNCATED = GOOD[: GOOD.index("    std = ")]
READS_FILES = GOOD.replace(
    "    n = len(values)\n", "    n = len(open('/etc/passwd').read()) * 0 + len(values)\n", 1
)
READS_LABELS = GOOD.replace(
    "    n = len(values)\n", "    n = len(params['labels']) * 0 + len(values)\n", 1
)


def fenced(code: str, prose: str = "The anomalies are level shifts.") -> str:
    return f"{prose}\n```python\n{code}```\n"


# GOOD, plus a latch that depends on the whole history, but only once a value above 200 has been
# seen: stream-exact on demo data (never that high), not on the online detector's own sample
# (whose growth stretch passes 200), so only the detector's check finds it.
LATCH = GOOD.replace(
    "    out[t] = np.abs(short - base) > k * std\n    return out\n",
    "    out[t] = np.abs(short - base) > k * std\n"
    "    return out | (np.cumsum(values > 200.0) > 0)\n",
)

# A stuck metric: the value repeats exactly for `window` points (what a spike or level rule misses).
FLATLINE = '''"""Stuck metric.

Normal: consecutive values differ, as a live measurement does.
Abnormal: the last `window` values are all exactly equal (the metric is stuck).
"""
import numpy as np

PARAMS = {"window": 8}
PARAM_RANGES = {"window": (4, 16)}
LOOKBACK = 16


def detect(values, timestamps, params):
    v = np.asarray(values, dtype=float)
    n, w = len(v), int(params["window"])
    out = np.zeros(n, dtype=bool)
    if n < w or w < 2:
        return out
    same = np.concatenate(([0], (np.diff(v) == 0).astype(np.int64)))
    c = np.concatenate(([0], np.cumsum(same)))
    t = np.arange(w - 1, n)
    out[t] = (c[t + 1] - c[t + 2 - w]) == w - 1
    return out
'''
