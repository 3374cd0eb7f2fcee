"""Corporate actions reach the backtest from the warehouse, market-scoped and point-in-time."""

from __future__ import annotations

from datetime import datetime, timezone

import polars as pl
import pytest
from backtest_providers import BACKTEST_SESSIONS, SESSIONS, load_data, shared_market
from panel_data import MARKET_ID

from prometheus_lib.errors import DataValidationError
from prometheus_lib.execution.corporate_actions import CorporateActionType
from prometheus_lib.storage.catalog import get_table
from prometheus_lib.storage.factory import open_warehouse

EX_DATE = BACKTEST_SESSIONS[10]
DELISTED = BACKTEST_SESSIONS[20]


def _rows(market_id: str, rows: list[tuple]) -> pl.DataFrame:
    stamp = datetime(2024, 1, 1, tzinfo=timezone.utc)
    return pl.DataFrame(
        [{"action_id": a, "instrument_id": i, "session_date": s, "market_id": market_id, "action_type": t,
          "ratio": r, "amount": m, "currency": "USD", "source": "test", "ingested_at": stamp}
         for a, i, s, t, r, m in rows],
        schema=get_table("corporate_actions").polars_schema,
    )


@pytest.fixture(scope="module")
def location(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A copy of the base market with a split, a dividend and a delisting (and another market's split)."""
    location = shared_market(tmp_path_factory, "base")
    with open_warehouse(**location) as wh:
        ours = _rows(MARKET_ID, [
            ("S1", "SYN0001", EX_DATE, "SPLIT", 2.0, None),
            ("D1", "SYN0002", EX_DATE, "DIVIDEND", None, 0.5),
            ("X1", "SYN0003", DELISTED, "DELISTING", None, 4.0),
        ])
        wh.write_partition("corporate_actions", ours, SESSIONS[0], SESSIONS[-1], {"market_id": MARKET_ID})
        theirs = _rows("OTHER_EQ", [("O1", "SYN0004", EX_DATE, "SPLIT", 3.0, None)])
        wh.write_partition("corporate_actions", theirs, SESSIONS[0], SESSIONS[-1], {"market_id": "OTHER_EQ"})
    return location


def test_load_reads_the_markets_actions_known_from_their_ex_date(location) -> None:
    # Act
    data = load_data(location)

    # Assert
    assert data.has_corporate_actions
    data.tm.advance_to(BACKTEST_SESSIONS[9])
    assert data.corporate_actions() == ()
    data.tm.advance_to(EX_DATE)
    today = data.corporate_actions()
    assert [(a.action_id, a.action_type) for a in today] == [
        ("S1", CorporateActionType.SPLIT), ("D1", CorporateActionType.DIVIDEND)]  # not OTHER_EQ's
    assert data.delisted() == frozenset()
    data.tm.advance_to(BACKTEST_SESSIONS[21])
    assert data.corporate_actions() == ()
    assert data.delisted() == frozenset({"SYN0003"})
    data.tm.advance_to(BACKTEST_SESSIONS[19])  # the clock moved back: the delisting is not known yet
    assert data.delisted() == frozenset()


def test_load_without_actions_serves_none(tmp_path_factory) -> None:
    data = load_data(shared_market(tmp_path_factory, "base"))

    assert not data.has_corporate_actions
    data.tm.advance_to(EX_DATE)
    assert data.corporate_actions() == () and data.delisted() == frozenset()


def test_load_refuses_an_invalid_action_naming_it(tmp_path_factory) -> None:
    location = shared_market(tmp_path_factory, "base")
    with open_warehouse(**location) as wh:
        bad = _rows(MARKET_ID, [("BAD-SPLIT", "SYN0001", EX_DATE, "SPLIT", None, None)])
        wh.write_partition("corporate_actions", bad, SESSIONS[0], SESSIONS[-1], {"market_id": MARKET_ID})

    with pytest.raises(DataValidationError, match="BAD-SPLIT"):
        load_data(location)
