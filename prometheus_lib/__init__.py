"""Prometheus library: domain types, calendars, storage, data providers and engines.

This package never imports Dagster (enforced by an import-linter contract run in the tests).
"""
