"""Metric sinks, reward-hacking detectors, plots and reports."""
