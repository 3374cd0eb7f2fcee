"""Prometheus library: domain types, calendars, storage, data providers and engines.

This package never imports Dagster (enforced by an import-linter contract run in the tests).
"""

import os as _os

# OpenMP threads (LightGBM, scikit-learn, numpy's BLAS) sleep instead of spinning while they wait:
# on a shared 2-core machine a spinning team of 2 threads, next to any other busy process, made a
# LightGBM fit 10-15x slower than 1 thread (measured: 2.2 s vs 21.7 s); sleeping, 2 threads stay
# the faster (1.2-1.4 s vs 1.9 s). Read by the OpenMP runtime when it loads, so set on the
# package's import, before any engine imports LightGBM; an explicit setting is kept.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
