"""Prometheus's Dagster layer: assets, checks, resources and jobs wired over ``prometheus_lib``."""
