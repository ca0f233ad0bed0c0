"""Reviewer reports from a results database: a self-contained HTML page plus CSV exports."""

from agescan.report.html import write_report

__all__ = ["write_report"]
