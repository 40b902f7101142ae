"""Evaluation: methods run side by side on the same splits, and the baselines."""
