"""Types shared by every layer: the numpy array aliases, the progress callback, and the default
size of a pool of worker processes.

The lowest module of the package: it imports nothing from ``argos``.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

ProgressFn = Callable[[int, float], None]
"""Called by generators as they go: (candidates tried so far, best selection score so far)."""


def default_workers() -> int:
    """Worker processes for a pool on this machine (training units, a local Dask cluster): the
    CPU count, at most 4."""
    return max(1, min(4, os.cpu_count() or 1))
