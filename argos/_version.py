"""The package version (one place; ``argos --version``, manifests and run records read it)."""

__version__ = "0.1.0"
