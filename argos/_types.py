"""Types shared by every layer: the numpy array aliases and the progress callback.

The lowest module of the package: it imports nothing from ``argos``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

ProgressFn = Callable[[int, float], None]
"""Called by generators as they go: (candidates tried so far, best selection score so far)."""
