"""Vectorised row building shared by the stability engine and the soft-target classifier."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import polars as pl

__all__ = ["JSON_DECIMALS", "json_objects", "percentile_rows"]

# JSON numbers are rounded to 12 decimals: then ``repr`` of the rounded float is exactly what
# ``records.dumps`` writes for it (12 significant digits never round such a number further).
JSON_DECIMALS = 12
_POSITIONAL_FROM = 1e-4  # polars prints a float as Python's repr does from here up


def _number_texts(values: np.ndarray) -> pl.Series:
    """Python's ``repr`` of each (rounded, finite) value, built with polars where it agrees."""
    text = pl.Series(values + 0.0).cast(pl.String)  # + 0.0 turns -0.0 into 0.0
    small = np.flatnonzero((values != 0.0) & (np.abs(values) < _POSITIONAL_FROM))
    if small.size:
        text = text.scatter(small, [repr(v) for v in values[small].tolist()])
    return text


def json_objects(columns: Mapping[str, np.ndarray]) -> pl.Series:
    """One compact JSON object per row with the keys sorted: byte for byte ``records.dumps`` of
    ``{name: value}`` for values already rounded to ``JSON_DECIMALS`` decimals (finite)."""
    names = sorted(columns)
    parts: list[pl.Expr] = []
    frame = pl.DataFrame({name: _number_texts(columns[name]) for name in names})
    for k, name in enumerate(names):
        parts += [pl.lit(("{" if k == 0 else ",") + f'"{name}":'), pl.col(name)]
    return frame.select(pl.concat_str([*parts, pl.lit("}")]).alias("json")).to_series()


def percentile_rows(values: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Cross-sectional percentile of each valid cell within its row, in [0, 1].

    (average rank - 1) / (valid cells in the row - 1), ties sharing their average rank; 0.5 when
    the row has one valid cell. Invalid cells get an arbitrary value (callers mask them).
    """
    n_cols = values.shape[1]
    v = np.where(valid, values, np.inf)
    order = np.argsort(v, axis=1, kind="stable")
    s = np.take_along_axis(v, order, axis=1)
    pos = np.broadcast_to(np.arange(n_cols), s.shape)
    starts = np.ones(s.shape, dtype=bool)
    starts[:, 1:] = s[:, 1:] != s[:, :-1]
    ends = np.ones(s.shape, dtype=bool)
    ends[:, :-1] = starts[:, 1:]
    first = np.maximum.accumulate(np.where(starts, pos, 0), axis=1)
    last = np.minimum.accumulate(np.where(ends, pos, n_cols - 1)[:, ::-1], axis=1)[:, ::-1]
    n = valid.sum(axis=1, keepdims=True)
    ranked = np.where(n > 1, (first + last) / 2.0 / np.maximum(n - 1, 1), 0.5)
    out = np.empty_like(ranked)
    np.put_along_axis(out, order, ranked, axis=1)
    return out
