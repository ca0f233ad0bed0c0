"""Command-line interface (``agescan``)."""
