"""Argos: agentic anomaly detection for cloud metrics with readable, sandboxed Python rules."""

from argos.data.series import DataError, Dataset, Series, SplitSpec

__version__ = "0.1.0"

__all__ = ["DataError", "Dataset", "Series", "SplitSpec", "__version__"]
