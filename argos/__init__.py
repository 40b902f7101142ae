"""Argos: agentic anomaly detection for cloud metrics with readable, sandboxed Python rules."""

from argos._version import __version__
from argos.data.series import DataError, Dataset, Series, SplitSpec

__all__ = ["DataError", "Dataset", "Series", "SplitSpec", "__version__"]
