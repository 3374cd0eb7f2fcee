"""Engine bookkeeping rows shared by the market-state engines: ``engine_configs`` and ``engine_decisions``.

A market-state engine (regime, stability, soft-target, fragility) describes the market, not one
book, so its decisions are shared by every mode: they are written with ``mode = SHARED`` and the
run id ``<engine>/<market_id>`` (the scope a re-materialisation replaces). A decision's id is
``<engine>:<market_id>:<session>``: one decision per engine per market per session, whose
``decision_json`` says what was decided (the regime and its probabilities; the class counts and
the most fragile instruments) and whose ``config_hash`` names the ``engine_configs`` row.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import date, datetime, timezone

import numpy as np
import polars as pl

from prometheus_lib.config.models import FrozenModel
from prometheus_lib.storage.catalog import get_table

__all__ = ["SHARED_MODE", "decision_frame", "engine_config_frame", "engine_run_id", "json_safe"]

SHARED_MODE = "SHARED"


def engine_run_id(engine_name: str, market_id: str) -> str:
    """The ``engine_decisions.run_id`` scope of a market-state engine on one market."""
    return f"{engine_name}/{market_id}"


def json_safe(value):
    """Round floats to 12 significant digits and turn non-finite ones into None (JSON has no NaN)."""
    if isinstance(value, (float, np.floating)):
        v = float(value)
        return float(f"{v:.12g}") if np.isfinite(v) else None
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [json_safe(v) for v in value]
    return value


def dumps(value) -> str:
    """Canonical JSON of ``value`` (sorted keys, NaN as null)."""
    return json.dumps(json_safe(value), sort_keys=True, separators=(",", ":"))


def engine_config_frame(engine_name: str, config: FrozenModel, description: str) -> pl.DataFrame:
    """The ``engine_configs`` row of ``engine_name`` running with ``config``."""
    return pl.DataFrame([{
        "engine_name": engine_name, "config_hash": config.config_hash(),
        # Exact (not rounded like decisions): the payload config_hash() hashes, so the row reproduces the config.
        "config_json": json.dumps(config.model_dump(mode="json"), sort_keys=True, separators=(",", ":")),
        "created_at": datetime.now(timezone.utc).replace(microsecond=0), "description": description,
    }], schema=get_table("engine_configs").polars_schema)


def decision_frame(engine_name: str, market_id: str, config_hash: str, sessions: Sequence[date],
                   decisions: Sequence[Mapping], inputs: Sequence[Mapping] | None = None,
                   strategy_id: str | None = None) -> pl.DataFrame:
    """``engine_decisions`` rows: one per session, ``decisions[i]`` decided at ``sessions[i]``.

    With ``strategy_id`` (an engine run per strategy, like the assessment) the decision id is
    ``<engine>:<strategy>:<session>`` and the run id ``<engine>/<strategy>``.
    """
    if len(decisions) != len(sessions) or (inputs is not None and len(inputs) != len(sessions)):
        raise ValueError("decision_frame: sessions, decisions and inputs must have the same length")
    now = datetime.now(timezone.utc).replace(microsecond=0)
    owner = strategy_id or market_id
    run_id = engine_run_id(engine_name, owner)
    return pl.DataFrame({
        "decision_id": [f"{engine_name}:{owner}:{s.isoformat()}" for s in sessions],
        "engine_name": [engine_name] * len(sessions),
        "session_date": list(sessions),
        "strategy_id": [strategy_id] * len(sessions),
        "market_id": [market_id] * len(sessions),
        "config_hash": [config_hash] * len(sessions),
        "mode": [SHARED_MODE] * len(sessions),
        "run_id": [run_id] * len(sessions),
        "created_at": [now] * len(sessions),
        "inputs_json": [dumps(i) for i in inputs] if inputs is not None else [None] * len(sessions),
        "decision_json": [dumps(d) for d in decisions],
    }, schema=get_table("engine_decisions").polars_schema)
