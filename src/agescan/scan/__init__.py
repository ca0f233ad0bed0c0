"""Scan engines: the local streaming scan lives in the CLI; :mod:`agescan.scan.ray_engine` maps the same
pipeline over partitions of the file list on a Ray cluster."""
