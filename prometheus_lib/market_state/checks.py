"""Data-quality rules of the market-state engines' outputs (regimes, stability, fragility, soft targets).

Each takes the rows of one market and session range as stored and returns a ``CheckOutcome``:

* ``check_probabilities``: a JSON column of named probabilities has every expected name, each in
  [0, 1], summing to 1 (within 1e-9), and the label column is its argmax (ERROR: a downstream
  engine reading a malformed distribution would be misled).
* ``check_values``: named columns (and JSON components) are non-null, finite and within their
  range; one row per key (ERROR).
* ``check_coverage``: every session of the range with prices has rows, and at each such session
  at least ``min_share`` of the priced instruments have one (WARN: instruments without enough
  history are left out by design). Sessions before the engine's first output (its warm-up: the
  first walk-forward fit) are not counted; with no output yet, none is.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from datetime import date

import polars as pl

from prometheus_lib.data.quality import CheckOutcome, Severity

__all__ = ["check_coverage", "check_probabilities", "check_values", "combine"]

_EXAMPLES = 5
_SUM_TOL = 1e-9


def _examples(rows: list[dict]) -> list[dict]:
    return [{k: (str(v) if v is not None else None) for k, v in r.items()} for r in rows[:_EXAMPLES]]


def check_probabilities(frame: pl.DataFrame, key: Sequence[str], column: str, names: Sequence[str],
                        label_column: str | None = None) -> CheckOutcome:
    """Every row's ``column`` (JSON) holds a probability per name of ``names``, in [0, 1], summing to 1."""
    bad: list[dict] = []
    counts = {"missing_or_unknown_names": 0, "out_of_range": 0, "not_summing_to_one": 0, "label_not_argmax": 0}
    expected = set(names)
    cols = [*key, column, *([label_column] if label_column else [])]
    for row in frame.select(cols).iter_rows(named=True):
        raw = row[column]
        probs = json.loads(raw) if raw else {}
        problem = None
        if set(probs) != expected:
            problem = "missing_or_unknown_names"
        elif any(p is None or not math.isfinite(p) or p < 0.0 or p > 1.0 for p in probs.values()):
            problem = "out_of_range"
        elif abs(sum(probs.values()) - 1.0) > _SUM_TOL:
            problem = "not_summing_to_one"
        elif label_column and row[label_column] != max(probs, key=probs.get):
            if probs.get(row[label_column], -1.0) < max(probs.values()):  # ties: any maximiser is the argmax
                problem = "label_not_argmax"
        if problem:
            counts[problem] += 1
            bad.append({**{k: row[k] for k in key}, "problem": problem, column: raw})
    passed = not bad
    description = (f"{frame.height} rows carry a probability distribution over {list(names)}" if passed else
                   "malformed probabilities: " + ", ".join(f"{k}={v}" for k, v in counts.items() if v))
    return CheckOutcome(passed, Severity.ERROR, description, {**counts, "rows": frame.height, "examples": _examples(bad)})


def check_values(frame: pl.DataFrame, key: Sequence[str], ranges: Mapping[str, tuple[float, float]],
                 json_ranges: Mapping[str, tuple[float, float]] | None = None) -> CheckOutcome:
    """Columns of ``ranges`` are non-null, finite and within range; JSON columns of ``json_ranges`` too
    (every number of their top-level objects); one row per ``key``."""
    problems: dict[str, int] = {}
    bad: list[dict] = []
    for col, (lo, hi) in ranges.items():
        x = pl.col(col)
        off = frame.filter(x.is_null() | x.is_nan() | (x < lo) | (x > hi))
        problems[f"{col}_null_nan_or_out_of_range"] = off.height
        bad += off.select(*key, col).head(_EXAMPLES).to_dicts()
    for col, (lo, hi) in (json_ranges or {}).items():
        n = 0
        for row in frame.select(*key, col).iter_rows(named=True):
            values = json.loads(row[col]) if row[col] else None
            nums = [v for v in (values or {}).values() if not isinstance(v, (dict, list, str))]
            if values is None or any(v is None or not math.isfinite(v) or v < lo or v > hi for v in nums):
                n += 1
                if len(bad) < 2 * _EXAMPLES:
                    bad.append(row)
        problems[f"{col}_null_nan_or_out_of_range"] = n
    dup = frame.select(key).is_duplicated().sum() if frame.height else 0
    problems["duplicate_keys"] = int(dup)
    passed = not any(problems.values())
    description = (f"{frame.height} rows: values finite and in range, one row per {list(key)}" if passed else
                   "invalid rows: " + ", ".join(f"{k}={v}" for k, v in problems.items() if v))
    return CheckOutcome(passed, Severity.ERROR, description,
                        {**problems, "ranges": {k: list(v) for k, v in {**ranges, **(json_ranges or {})}.items()},
                         "examples": _examples(bad)})


def check_coverage(rows: pl.DataFrame, priced: pl.DataFrame, first_output: date | None, *,
                   entity_column: str | None = "entity_id", min_share: float = 0.8) -> CheckOutcome:
    """Sessions with prices have rows (from the engine's first output on), each covering ``min_share`` of the priced instruments.

    ``rows``: the engine's rows (session_date, and ``entity_column`` for per-instrument tables);
    ``priced``: prices_daily rows (instrument_id, session_date) of the range; ``first_output``: the
    earliest session the engine has ever written for the market (None: nothing yet).
    """
    sessions = priced.select("session_date").unique()
    # Before the engine's first output (its warm-up), or with no output yet, nothing is due.
    sessions = sessions.filter(pl.col("session_date") >= first_output) if first_output is not None else sessions.clear()
    covered = rows.select("session_date").unique()
    missing = sessions.join(covered, on="session_date", how="anti").sort("session_date")
    thin: pl.DataFrame = pl.DataFrame(schema={"session_date": pl.Date, "share": pl.Float64})
    if entity_column is not None and rows.height:
        n_priced = priced.group_by("session_date").agg(pl.len().alias("priced"))
        n_rows = rows.group_by("session_date").agg(pl.col(entity_column).n_unique().alias("covered"))
        thin = (n_priced.join(n_rows, on="session_date", how="inner")
                .with_columns((pl.col("covered") / pl.col("priced")).alias("share"))
                .filter(pl.col("share") < min_share).select("session_date", "share").sort("session_date"))
    problems = {"sessions_without_rows": missing.height, "sessions_below_min_share": thin.height}
    passed = not any(problems.values())
    description = (f"{covered.height} sessions covered" + (f", each at least {min_share:.0%} of priced instruments"
                                                          if entity_column else "")
                   if passed else "incomplete coverage: " + ", ".join(f"{k}={v}" for k, v in problems.items() if v))
    return CheckOutcome(passed, Severity.WARN, description,
                        {**problems, "min_share": min_share, "first_output": str(first_output) if first_output else None,
                         "examples": _examples(missing.to_dicts() + thin.to_dicts())})


def combine(*outcomes: CheckOutcome) -> CheckOutcome:
    """One outcome of several rules: passed when all pass, the most severe severity, descriptions joined."""
    failed = [o for o in outcomes if not o.passed]
    severity = Severity.ERROR if any(o.severity is Severity.ERROR for o in (failed or outcomes)) else Severity.WARN
    metadata: dict = {}
    for o in outcomes:
        metadata.update({k: v for k, v in o.metadata.items() if k != "examples"})
    metadata["examples"] = [e for o in outcomes for e in o.metadata.get("examples", [])][:_EXAMPLES * 2]
    return CheckOutcome(not failed, severity, "; ".join(o.description for o in (failed or outcomes)), metadata)
