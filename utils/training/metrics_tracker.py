"""The seed notebook's module path for MetricsTracker (ours: metrics.py, loop_metrics.py)."""

from .metrics import MetricsTracker

__all__ = ["MetricsTracker"]
