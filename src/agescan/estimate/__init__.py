"""The AgeEstimator pipeline."""

from agescan.estimate.estimator import AgeEstimator

__all__ = ["AgeEstimator"]
