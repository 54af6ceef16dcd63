"""The seed notebook's module path for MetricsTracker (ours: metrics.py, loop_metrics.py)."""

from utils.training.tracking.metrics import MetricsTracker

__all__ = ["MetricsTracker"]
