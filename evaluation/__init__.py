"""Evaluation: ADFD and the standard talking-face metrics."""
