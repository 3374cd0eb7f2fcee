"""Load ``configs/*.yaml`` into a frozen ``PlatformConfig``.

Each file is validated on its own so that an error names the file, the key path inside it
and the bad value, for example::

    configs/markets.yaml: markets[US_EQ].calendar: unknown exchange calendar 'XNYZ' ... (was 'XNYZ')
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from prometheus_lib.config.models import (
    EnginesConfig,
    FrozenModel,
    MarketConfig,
    PlatformConfig,
    StrategyConfig,
    WarehouseConfig,
)
from prometheus_lib.errors import ConfigError

CONFIG_FILES = ("markets.yaml", "strategies.yaml", "engines.yaml", "warehouse.yaml")


class MarketsFile(FrozenModel):
    """Shape of ``markets.yaml``."""

    primary_market: str
    markets: tuple[MarketConfig, ...]


class StrategiesFile(FrozenModel):
    """Shape of ``strategies.yaml``."""

    default_strategy: str
    strategies: tuple[StrategyConfig, ...]


class EnginesFile(FrozenModel):
    """Shape of ``engines.yaml``."""

    engines: EnginesConfig = EnginesConfig()


class WarehouseFile(FrozenModel):
    """Shape of ``warehouse.yaml``."""

    warehouse: WarehouseConfig = WarehouseConfig()


_FILE_MODELS: dict[str, type[FrozenModel]] = {
    "markets.yaml": MarketsFile,
    "strategies.yaml": StrategiesFile,
    "engines.yaml": EnginesFile,
    "warehouse.yaml": WarehouseFile,
}

_ID_KEYS = ("market_id", "strategy_id", "portfolio_id")
# Keys whose values an error message must not echo (a URL can carry a password).
_SECRET_KEY = re.compile(r"(^|_)(url|uri|dsn|password|secret|token)$", re.IGNORECASE)
# The key that names an item of each list: a strategy's own id, not the market it trades.
_LIST_ID_KEY = {"markets": "market_id", "strategies": "strategy_id", "portfolios": "portfolio_id"}


def default_config_dir() -> Path:
    """Return ``$PROMETHEUS_CONFIG_DIR`` or the repository's ``configs/`` folder."""
    env = os.environ.get("PROMETHEUS_CONFIG_DIR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / "configs"


def _key_path(loc: tuple[Any, ...], data: Any) -> str:
    """Render a pydantic error location as a readable key path, naming list items by their id."""
    parts: list[str] = []
    node = data
    list_name: Any = None
    for item in loc:
        if isinstance(item, int):
            label = str(item)
            if isinstance(node, list) and 0 <= item < len(node) and isinstance(node[item], dict):
                preferred = _LIST_ID_KEY.get(list_name)
                for k in ((preferred,) if preferred else ()) + _ID_KEYS:
                    if k in node[item]:
                        label = str(node[item][k])
                        break
            parts.append(f"[{label}]")
            node = node[item] if isinstance(node, list) and 0 <= item < len(node) else None
        else:
            parts.append(("." if parts else "") + str(item))
            node = node.get(item) if isinstance(node, dict) else None
        list_name = item
    return "".join(parts) or "<root>"


def _shown(value: Any) -> str:
    """A bad value as the user wrote it: dates in ISO form, other values as their repr."""
    from datetime import date as _date

    return value.isoformat() if isinstance(value, _date) else repr(value)


def _format_errors(path: Path, error: ValidationError, data: Any) -> str:
    lines = []
    for e in error.errors(include_url=False):
        loc = _key_path(tuple(e["loc"]), data)
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown key"
        value = e.get("input")
        shown = "" if e["type"] == "missing" else f" (was {_shown(value)})"
        if isinstance(value, dict):
            shown = ""
        elif e["loc"] and _SECRET_KEY.search(str(e["loc"][-1])):
            shown = " (value hidden: URLs and secrets belong in environment variables)"
        lines.append(f"{path}: {loc}: {msg}{shown}")
    return "\n".join(lines)


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a mapping that repeats a key (YAML says keys are unique;
    PyYAML would silently keep the last value)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, yaml.Node] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                first = seen[key].start_mark.line + 1
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (first at line {first})", key_node.start_mark)
            seen[key] = key_node
        return super().construct_mapping(node, deep=deep)


def load_yaml(path: Path) -> Any:
    """Read one YAML file, raising ConfigError naming the file on syntax errors and duplicated keys."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        raise ConfigError(f"{path}: {where}invalid YAML: {e.problem or e}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: invalid YAML: {e}") from None
    return {} if data is None else data


def load_file(path: Path, model: type[FrozenModel]) -> FrozenModel:
    """Validate one YAML file against ``model``.

    Raises
    ------
    ConfigError
        Naming the file, the key path and the bad value.
    """
    data = load_yaml(path)
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping, was {type(data).__name__}")
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise ConfigError(_format_errors(path, e, data)) from None


def _cross_check(folder: Path, markets: MarketsFile, strategies: StrategiesFile) -> None:
    """Check the ids the files refer to each other by, naming the file and key of each culprit."""
    mpath, spath = folder / "markets.yaml", folder / "strategies.yaml"
    market_ids = [m.market_id for m in markets.markets]
    strategy_ids = [s.strategy_id for s in strategies.strategies]
    errors = []
    for m in sorted({i for i in market_ids if market_ids.count(i) > 1}):
        errors.append(f"{mpath}: markets[{m}].market_id: duplicate market_id (was {m!r})")
    if markets.primary_market not in market_ids:
        errors.append(
            f"{mpath}: primary_market: not a market of this file; markets: {market_ids} "
            f"(was {markets.primary_market!r})"
        )
    for s in sorted({i for i in strategy_ids if strategy_ids.count(i) > 1}):
        errors.append(f"{spath}: strategies[{s}].strategy_id: duplicate strategy_id (was {s!r})")
    if strategies.default_strategy not in strategy_ids:
        errors.append(
            f"{spath}: default_strategy: not a strategy of this file; strategies: {strategy_ids} "
            f"(was {strategies.default_strategy!r})"
        )
    for s in strategies.strategies:
        if s.market_id not in market_ids:
            errors.append(
                f"{spath}: strategies[{s.strategy_id}].market_id: unknown market; markets in "
                f"{mpath.name}: {market_ids} (was {s.market_id!r})"
            )
    if errors:
        raise ConfigError("\n".join(errors))


def load_config(config_dir: str | Path | None = None) -> PlatformConfig:
    """Load and cross-check every file of ``config_dir`` into a ``PlatformConfig``.

    Parameters
    ----------
    config_dir
        Folder holding markets.yaml, strategies.yaml, engines.yaml and warehouse.yaml;
        defaults to :func:`default_config_dir`.

    Raises
    ------
    ConfigError
        If a file is missing, is not valid YAML, has an unknown key or a bad value, or the
        files disagree (a strategy trading an unknown market, say).
    """
    folder = Path(config_dir) if config_dir is not None else default_config_dir()
    files = {name: load_file(folder / name, model) for name, model in _FILE_MODELS.items()}
    markets: MarketsFile = files["markets.yaml"]  # type: ignore[assignment]
    strategies: StrategiesFile = files["strategies.yaml"]  # type: ignore[assignment]
    _cross_check(folder, markets, strategies)
    try:
        return PlatformConfig(
            markets=markets.markets,
            primary_market=markets.primary_market,
            strategies=strategies.strategies,
            default_strategy=strategies.default_strategy,
            engines=files["engines.yaml"].engines,  # type: ignore[attr-defined]
            warehouse=files["warehouse.yaml"].warehouse,  # type: ignore[attr-defined]
        )
    except ValidationError as e:
        msgs = "; ".join(x["msg"].removeprefix("Value error, ") for x in e.errors(include_url=False))
        raise ConfigError(f"{folder}/markets.yaml + strategies.yaml disagree: {msgs}") from None
