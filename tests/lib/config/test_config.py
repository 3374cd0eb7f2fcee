"""Specification of the configuration: what ``configs/`` holds, and how a broken file is reported.

Every error is a ``ConfigError`` naming the file, the key path inside it and the bad value.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from prometheus_lib.config.home import prometheus_home, resolve_under_home
from prometheus_lib.config.loader import default_config_dir, load_config
from prometheus_lib.config.models import PlatformConfig, PostgresConfig, WarehouseConfig
from prometheus_lib.errors import ConfigError
from prometheus_lib.storage.factory import resolve_backend

ROOT = Path(__file__).resolve().parents[3]
REPO_CONFIGS = ROOT / "configs"
URL = "postgresql://postgres@127.0.0.1:5432/prometheus"


# ------------------------------------------------------------------ builders
def copy_configs(tmp_path: Path) -> Path:
    """A private copy of the repository's ``configs/``."""
    target = tmp_path / "configs"
    shutil.copytree(REPO_CONFIGS, target)
    return target


def edit_yaml(folder: Path, file: str, change: Callable[[dict[str, Any]], None]) -> None:
    """Load ``folder/file``, apply ``change`` to the document and write it back."""
    path = folder / file
    doc = yaml.safe_load(path.read_text())
    change(doc)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))


def market(doc: dict[str, Any], market_id: str) -> dict[str, Any]:
    return next(m for m in doc["markets"] if m["market_id"] == market_id)


def strategy(doc: dict[str, Any], strategy_id: str) -> dict[str, Any]:
    return next(s for s in doc["strategies"] if s["strategy_id"] == strategy_id)


@pytest.fixture(scope="module")
def repo_config() -> PlatformConfig:
    return load_config(REPO_CONFIGS)


# ------------------------------------------------------------------ the repository's configs
def test_load_config_with_repository_configs_makes_us_eq_on_xnys_primary(repo_config: PlatformConfig) -> None:
    # Act
    primary = repo_config.market(repo_config.primary_market)

    # Assert
    assert repo_config.primary_market == "US_EQ"
    assert (primary.calendar, primary.currency, primary.asset_class) == ("XNYS", "USD", "EQUITY")


@pytest.mark.parametrize(
    ("market_id", "calendar", "currency"),
    [
        ("US_EQ", "XNYS", "USD"),
        ("EU_EQ", "XETR", "EUR"),
        ("JP_EQ", "XTKS", "JPY"),
        ("US_FUT", "CMES", "USD"),
        ("FX_GLOB", "24/5", "USD"),
    ],
)
def test_load_config_with_repository_configs_defines_market(
    repo_config: PlatformConfig, market_id: str, calendar: str, currency: str,
) -> None:
    # Act
    m = repo_config.market(market_id)

    # Assert
    assert (m.calendar, m.currency) == (calendar, currency)


def test_load_config_with_repository_configs_defaults_to_us_core_long_eq(repo_config: PlatformConfig) -> None:
    # Act
    default = repo_config.strategy(repo_config.default_strategy)

    # Assert
    assert repo_config.default_strategy == "US_CORE_LONG_EQ"
    assert default.market_id == "US_EQ"
    assert [p.mode for p in default.portfolios] == ["BACKTEST"]


def test_load_config_with_no_folder_reads_the_repository_configs(
    repo_config: PlatformConfig, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Arrange
    monkeypatch.delenv("PROMETHEUS_CONFIG_DIR", raising=False)

    # Act
    config = load_config()

    # Assert
    assert default_config_dir() == REPO_CONFIGS
    assert config == repo_config


def test_default_config_dir_with_env_var_returns_that_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Arrange
    monkeypatch.setenv("PROMETHEUS_CONFIG_DIR", str(tmp_path))

    # Act / Assert
    assert default_config_dir() == tmp_path


@pytest.mark.parametrize(
    "assign",
    [
        pytest.param(lambda c: setattr(c, "primary_market", "EU_EQ"), id="platform"),
        pytest.param(lambda c: setattr(c.market("US_EQ"), "calendar", "XETR"), id="market"),
        pytest.param(lambda c: setattr(c.engines.data_quality, "max_instrument_gap_share", 0.5), id="engine"),
        pytest.param(lambda c: setattr(c.warehouse, "backend", "postgres"), id="warehouse"),
    ],
)
def test_assign_with_loaded_config_raises_because_models_are_frozen(repo_config: PlatformConfig, assign) -> None:
    # Act / Assert
    with pytest.raises(ValidationError, match="frozen"):
        assign(repo_config)


def test_assign_with_loaded_config_collections_raises_because_they_are_tuples(repo_config: PlatformConfig) -> None:
    # Act / Assert
    with pytest.raises(TypeError):
        repo_config.markets[0] = repo_config.markets[1]  # type: ignore[index]


def test_config_hash_with_same_content_is_stable(repo_config: PlatformConfig, tmp_path: Path) -> None:
    # Arrange
    copy = load_config(copy_configs(tmp_path))

    # Act
    hashes = {repo_config.config_hash(), copy.config_hash(), PlatformConfig.model_validate(repo_config.model_dump()).config_hash()}

    # Assert
    assert len(hashes) == 1
    (value,) = hashes
    assert len(value) == 16 and int(value, 16) >= 0


def test_config_hash_with_changed_value_differs(repo_config: PlatformConfig, tmp_path: Path) -> None:
    # Arrange
    folder = copy_configs(tmp_path)
    edit_yaml(folder, "strategies.yaml", lambda d: strategy(d, "US_CORE_LONG_EQ").update(universe_size=51))

    # Act
    changed = load_config(folder)

    # Assert
    assert changed.config_hash() != repo_config.config_hash()
    assert changed.market("US_EQ").config_hash() == repo_config.market("US_EQ").config_hash()


# ------------------------------------------------------------------ broken configs
def _set(path: list[Any], value: Any) -> Callable[[dict[str, Any]], None]:
    """A change setting the key at ``path`` (market/strategy ids select list items)."""

    def change(doc: dict[str, Any]) -> None:
        node: Any = doc
        for key in path[:-1]:
            if isinstance(node, list):
                node = next(item for item in node if key in (item.get("market_id"), item.get("strategy_id"), item.get("portfolio_id")))
            else:
                node = node[key]
        node[path[-1]] = value

    return change


def _delete(key: str) -> Callable[[dict[str, Any]], None]:
    return lambda doc: doc.pop(key)


BROKEN = [
    pytest.param("markets.yaml", _set(["markets", "US_EQ", "calender"], "XNYS"),
                 ["markets[US_EQ].calender", "unknown key", "'XNYS'"], id="markets-unknown-key"),
    pytest.param("markets.yaml", _set(["markets", "US_EQ", "calendar"], "XNYZ"),
                 ["markets[US_EQ].calendar", "'XNYZ'"], id="markets-bad-calendar"),
    pytest.param("markets.yaml", _set(["markets", "EU_EQ", "currency"], "usd"),
                 ["markets[EU_EQ].currency", "'usd'"], id="markets-bad-currency"),
    pytest.param("markets.yaml", _set(["markets", "JP_EQ", "pre_open_minutes"], -5),
                 ["markets[JP_EQ].pre_open_minutes", "-5"], id="markets-negative-pre-open"),
    pytest.param("markets.yaml", _set(["markets", "US_FUT", "asset_class"], "CRYPTO"),
                 ["markets[US_FUT].asset_class", "'CRYPTO'"], id="markets-bad-asset-class"),
    pytest.param("markets.yaml", _set(["markets", "US_EQ", "data_source", "kind"], "file"),
                 ["markets[US_EQ].data_source", "'file'", "paths"], id="markets-file-source-without-paths"),
    pytest.param("markets.yaml", _set(["markets", "US_EQ", "data_source"], {"kind": "yfinance"}),
                 ["markets[US_EQ].data_source", "'yfinance'", "tickers"], id="markets-yfinance-source-without-tickers"),
    pytest.param("markets.yaml", _set(["markets", "EU_EQ", "market_id"], "US_EQ"),
                 ["markets", "duplicate", "'US_EQ'"], id="markets-duplicate-id"),
    pytest.param("markets.yaml", _set(["primary_market"], "XX_EQ"),
                 ["primary_market", "'XX_EQ'"], id="markets-primary-not-defined"),
    pytest.param("markets.yaml", _delete("primary_market"),
                 ["primary_market", "required"], id="markets-primary-missing"),
    pytest.param("strategies.yaml", _set(["strategies", "US_CORE_LONG_EQ", "market_id"], "XX_EQ"),
                 ["strategies[US_CORE_LONG_EQ].market_id", "'XX_EQ'"], id="strategies-unknown-market"),
    pytest.param("strategies.yaml", _set(["default_strategy"], "NOT_A_STRATEGY"),
                 ["default_strategy", "'NOT_A_STRATEGY'"], id="strategies-default-not-defined"),
    pytest.param("strategies.yaml", _set(["strategies", "US_CORE_LONG_EQ", "portfolios", "US_CORE_LONG_EQ_MAIN", "mode"], "LIVEE"),
                 ["strategies[US_CORE_LONG_EQ].portfolios[US_CORE_LONG_EQ_MAIN].mode", "'LIVEE'"], id="strategies-bad-mode"),
    pytest.param("strategies.yaml", _set(["strategies", "US_CORE_LONG_EQ", "max_position_weight"], 1.5),
                 ["strategies[US_CORE_LONG_EQ].max_position_weight", "1.5"], id="strategies-weight-above-one"),
    pytest.param("engines.yaml", _set(["engines", "data_quality", "max_instrument_gap_share"], 1.5),
                 ["engines.data_quality.max_instrument_gap_share", "1.5"], id="engines-gap-share-above-one"),
    pytest.param("engines.yaml", _set(["engines", "data_quality", "freshness_max_lag"], 2),
                 ["engines.data_quality.freshness_max_lag", "unknown key", "2"], id="engines-unknown-key"),
    pytest.param("warehouse.yaml", _set(["warehouse", "duckdb", "file"], "w.duckdb"),
                 ["warehouse.duckdb.file", "unknown key", "'w.duckdb'"], id="warehouse-unknown-key"),
    pytest.param("warehouse.yaml", _set(["warehouse", "backend"], "sqlite"),
                 ["warehouse.backend", "'sqlite'"], id="warehouse-bad-backend"),
    pytest.param("warehouse.yaml", _set(["warehouse", "postgres", "url_env"], "lower_case"),
                 ["warehouse.postgres.url_env", "'lower_case'"], id="warehouse-bad-url-env"),
]


@pytest.mark.parametrize(("file", "change", "expected"), BROKEN)
def test_load_config_with_broken_value_raises_naming_file_key_path_and_value(
    tmp_path: Path, file: str, change: Callable[[dict[str, Any]], None], expected: list[str],
) -> None:
    # Arrange
    folder = copy_configs(tmp_path)
    edit_yaml(folder, file, change)

    # Act
    with pytest.raises(ConfigError) as raised:
        load_config(folder)

    # Assert
    message = str(raised.value)
    assert str(folder / file) in message
    for fragment in expected:
        assert fragment in message, f"{fragment!r} not in {message!r}"


@pytest.mark.parametrize("key", ["url", "password", "dsn"])
def test_load_config_with_secret_in_warehouse_file_raises_without_echoing_it(tmp_path: Path, key: str) -> None:
    # Arrange
    folder = copy_configs(tmp_path)
    edit_yaml(folder, "warehouse.yaml", _set(["warehouse", "postgres", key], "postgresql://app:s3cret@db/prometheus"))

    # Act
    with pytest.raises(ConfigError) as raised:
        load_config(folder)

    # Assert
    message = str(raised.value)
    assert f"warehouse.postgres.{key}: unknown key" in message
    assert "s3cret" not in message


@pytest.mark.parametrize(
    ("file", "text", "expected"),
    [
        pytest.param("markets.yaml", "primary_market: US_EQ\nmarkets: [\n  {market_id: US_EQ,\n", ["invalid YAML", "line"],
                     id="invalid-syntax"),
        pytest.param("engines.yaml", "engines:\n  data_quality: {max_instrument_gap_share: 0.1\n", ["invalid YAML"],
                     id="unclosed-mapping"),
        pytest.param("warehouse.yaml", "- backend: duckdb\n", ["top level must be a mapping", "list"], id="not-a-mapping"),
    ],
)
def test_load_config_with_unparsable_file_raises_naming_the_file(
    tmp_path: Path, file: str, text: str, expected: list[str],
) -> None:
    # Arrange
    folder = copy_configs(tmp_path)
    (folder / file).write_text(text)

    # Act
    with pytest.raises(ConfigError) as raised:
        load_config(folder)

    # Assert
    message = str(raised.value)
    assert str(folder / file) in message
    assert all(fragment in message for fragment in expected), message


@pytest.mark.parametrize("file", ["markets.yaml", "strategies.yaml", "engines.yaml", "warehouse.yaml"])
def test_load_config_with_missing_file_raises_naming_the_file(tmp_path: Path, file: str) -> None:
    # Arrange
    folder = copy_configs(tmp_path)
    (folder / file).unlink()

    # Act / Assert
    with pytest.raises(ConfigError, match="not found") as raised:
        load_config(folder)
    assert str(folder / file) in str(raised.value)


def test_load_config_with_empty_optional_files_uses_defaults(tmp_path: Path) -> None:
    # Arrange
    folder = copy_configs(tmp_path)
    (folder / "engines.yaml").write_text("# nothing configured\n")
    (folder / "warehouse.yaml").write_text("")

    # Act
    config = load_config(folder)

    # Assert
    assert config.engines.data_quality.max_instrument_gap_share == 0.0
    assert config.warehouse == WarehouseConfig()


# ------------------------------------------------------------------ backend and home
@pytest.mark.parametrize(
    ("backend", "environ", "expected"),
    [
        pytest.param("auto", {}, "duckdb", id="auto-without-url"),
        pytest.param("auto", {"PROMETHEUS_WAREHOUSE_URL": ""}, "duckdb", id="auto-with-empty-url"),
        pytest.param("auto", {"PROMETHEUS_WAREHOUSE_URL": URL}, "postgres", id="auto-with-url"),
        pytest.param("duckdb", {"PROMETHEUS_WAREHOUSE_URL": URL}, "duckdb", id="explicit-duckdb"),
        pytest.param("postgres", {}, "postgres", id="explicit-postgres"),
    ],
)
def test_resolve_backend_with_environment_returns_backend(backend: str, environ: dict[str, str], expected: str) -> None:
    # Arrange
    config = WarehouseConfig(backend=backend)

    # Act / Assert
    assert resolve_backend(config, environ=environ) == expected


def test_resolve_backend_with_custom_url_env_reads_that_variable() -> None:
    # Arrange
    config = WarehouseConfig(postgres=PostgresConfig(url_env="MY_WAREHOUSE_URL"))

    # Act / Assert
    assert resolve_backend(config, environ={"PROMETHEUS_WAREHOUSE_URL": URL}) == "duckdb"
    assert resolve_backend(config, environ={"MY_WAREHOUSE_URL": URL}) == "postgres"


def test_resolve_backend_with_no_environ_reads_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # Arrange
    monkeypatch.setenv("PROMETHEUS_WAREHOUSE_URL", URL)

    # Act / Assert
    assert resolve_backend(WarehouseConfig()) == "postgres"


def test_prometheus_home_with_env_var_creates_and_returns_that_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Arrange
    wanted = tmp_path / "somewhere" / "home"
    monkeypatch.setenv("PROMETHEUS_HOME", str(wanted))

    # Act
    home = prometheus_home()

    # Assert
    assert home == wanted.resolve()
    assert home.is_dir()


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        pytest.param("/var/data/warehouse.duckdb", Path("/var/data/warehouse.duckdb"), id="absolute-kept"),
        pytest.param("warehouse/prometheus.duckdb", None, id="relative-under-home"),
    ],
)
def test_resolve_under_home_with_path_keeps_absolute_and_anchors_relative(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, path: str, expected: Path | None,
) -> None:
    # Arrange
    monkeypatch.setenv("PROMETHEUS_HOME", str(tmp_path))

    # Act
    resolved = resolve_under_home(path)

    # Assert
    assert resolved == (expected if expected is not None else tmp_path.resolve() / path)
