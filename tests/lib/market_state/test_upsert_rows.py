"""``Warehouse.upsert_rows`` on DuckDB and PostgreSQL: insert-or-replace by primary key, in one transaction."""

from __future__ import annotations

import json
from datetime import date, datetime, timezone

import polars as pl
import pytest

from prometheus_lib.errors import SchemaMismatchError, WarehouseError
from prometheus_lib.market_state import decision_frame
from prometheus_lib.storage.catalog import get_table
from prometheus_lib.storage.warehouse import Warehouse, WriteResult

CREATED = datetime(2024, 1, 2, 21, 0, tzinfo=timezone.utc)


def configs(*rows: tuple[str, str, str]) -> pl.DataFrame:
    """engine_configs rows from (engine_name, config_hash, description)."""
    return pl.DataFrame(
        [{"engine_name": e, "config_hash": h, "config_json": f'{{"d":"{d}"}}', "created_at": CREATED, "description": d}
         for e, h, d in rows],
        schema=get_table("engine_configs").polars_schema)


def stored(wh: Warehouse) -> list[tuple[str, str, str]]:
    frame = wh.read_table("engine_configs", columns=["engine_name", "config_hash", "description"])
    return sorted(frame.iter_rows())


SEEDED = [("fragility", "h1", "fragility v1"), ("regime", "h1", "regime v1"), ("regime", "h2", "regime v2")]


@pytest.fixture
def seeded(warehouse: Warehouse) -> Warehouse:
    warehouse.replace_table("engine_configs", configs(*SEEDED))
    return warehouse


def test_upsert_rows_into_an_empty_table_inserts_every_row(warehouse: Warehouse) -> None:
    # Arrange
    frame = configs(("regime", "h1", "a"), ("stability", "h1", "b"))

    # Act
    result = warehouse.upsert_rows("engine_configs", frame)

    # Assert
    assert result == WriteResult("engine_configs", 0, 2, None, None)
    back = warehouse.read_table("engine_configs")
    assert back.drop("config_json").equals(frame.drop("config_json"))
    assert [json.loads(v) for v in back["config_json"]] == [{"d": "a"}, {"d": "b"}]   # PostgreSQL's JSONB respaces


def test_upsert_rows_adds_new_keys_and_leaves_other_rows_alone(seeded: Warehouse) -> None:
    # Arrange
    frame = configs(("regime", "h3", "regime v3"), ("stability", "h1", "stability v1"))

    # Act
    result = seeded.upsert_rows("engine_configs", frame)

    # Assert
    assert (result.rows_deleted, result.rows_written) == (0, 2)
    assert stored(seeded) == sorted([*SEEDED, ("regime", "h3", "regime v3"), ("stability", "h1", "stability v1")])


def test_upsert_rows_replaces_the_row_with_the_same_engine_and_config_hash_only(seeded: Warehouse) -> None:
    # Arrange: same key as ("regime", "h1"); ("fragility", "h1") and ("regime", "h2") share one column each
    frame = configs(("regime", "h1", "regime v1, redescribed"))

    # Act
    result = seeded.upsert_rows("engine_configs", frame)

    # Assert
    assert (result.rows_deleted, result.rows_written) == (1, 1)
    assert stored(seeded) == [("fragility", "h1", "fragility v1"), ("regime", "h1", "regime v1, redescribed"),
                              ("regime", "h2", "regime v2")]
    row = seeded.read_table("engine_configs", scope={"engine_name": "regime", "config_hash": "h1"})
    assert json.loads(row["config_json"][0]) == {"d": "regime v1, redescribed"}


def test_upsert_rows_twice_with_the_same_frame_keeps_one_row_per_key(seeded: Warehouse) -> None:
    # Arrange
    frame = configs(("regime", "h1", "x"), ("regime", "h9", "y"))
    seeded.upsert_rows("engine_configs", frame)

    # Act
    result = seeded.upsert_rows("engine_configs", frame)

    # Assert
    assert (result.rows_deleted, result.rows_written) == (2, 2)
    assert seeded.row_count("engine_configs") == 4


def test_upsert_rows_with_a_frame_repeating_a_key_raises_and_changes_nothing(seeded: Warehouse) -> None:
    # Arrange
    frame = configs(("regime", "h1", "first"), ("regime", "h4", "new"), ("regime", "h1", "second"))

    # Act / Assert
    with pytest.raises(WarehouseError, match="repeats a primary key"):
        seeded.upsert_rows("engine_configs", frame)
    assert stored(seeded) == SEEDED


def test_upsert_rows_with_a_wrong_type_raises_and_changes_nothing(seeded: Warehouse) -> None:
    # Arrange: created_at as text that is no timestamp
    frame = configs(("regime", "h1", "replaced"), ("regime", "h5", "new")).with_columns(
        pl.lit("yesterday").alias("created_at"))

    # Act / Assert
    with pytest.raises(SchemaMismatchError):
        seeded.upsert_rows("engine_configs", frame)
    assert stored(seeded) == SEEDED


def test_upsert_rows_failing_in_the_database_rolls_back_the_replaced_rows(
    seeded: Warehouse, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Arrange: the insert itself runs, then the database "fails" before the commit
    real = seeded._bulk_insert
    calls = []

    def insert_then_fail(table, frame):
        real(table, frame)
        calls.append(frame.height)
        raise RuntimeError("connection lost")

    monkeypatch.setattr(seeded, "_bulk_insert", insert_then_fail)
    frame = configs(("regime", "h1", "replaced"), ("regime", "h6", "new"))

    # Act / Assert
    with pytest.raises(WarehouseError, match="rolled back"):
        seeded.upsert_rows("engine_configs", frame)
    assert calls == [2]
    monkeypatch.undo()
    assert stored(seeded) == SEEDED


def test_upsert_rows_inside_a_failing_outer_transaction_is_rolled_back_with_it(seeded: Warehouse) -> None:
    # Arrange
    frame = configs(("regime", "h1", "replaced"), ("regime", "h7", "new"))

    # Act
    with pytest.raises(ValueError, match="later step"), seeded.transaction():
        seeded.upsert_rows("engine_configs", frame)
        raise ValueError("a later step of the same write failed")

    # Assert
    assert stored(seeded) == SEEDED


def test_upsert_rows_with_an_empty_frame_changes_nothing(seeded: Warehouse) -> None:
    # Arrange
    frame = configs()

    # Act
    result = seeded.upsert_rows("engine_configs", frame)

    # Assert
    assert (result.rows_deleted, result.rows_written) == (0, 0)
    assert stored(seeded) == SEEDED


def test_upsert_rows_of_engine_decisions_replaces_by_decision_id(warehouse: Warehouse) -> None:
    # Arrange
    days = [date(2024, 1, 2), date(2024, 1, 3)]
    warehouse.upsert_rows("engine_decisions", decision_frame("regime", "US_EQ", "h1", days, [{"s": "calm"}] * 2))
    update = decision_frame("regime", "US_EQ", "h2", days[1:], [{"s": "crisis"}])

    # Act
    result = warehouse.upsert_rows("engine_decisions", update)

    # Assert
    assert (result.rows_deleted, result.rows_written) == (1, 1)
    rows = warehouse.read_table("engine_decisions", columns=["decision_id", "config_hash", "decision_json"])
    assert [(r[0], r[1]) for r in rows.iter_rows()] == [("regime:US_EQ:2024-01-02", "h1"), ("regime:US_EQ:2024-01-03", "h2")]
    assert [json.loads(v) for v in rows["decision_json"]] == [{"s": "calm"}, {"s": "crisis"}]
