"""Figures: one style, and the live plot, dashboard, report and run analysis built with it."""
