"""Evaluation protocols and metrics. The inference path never imports this package."""
