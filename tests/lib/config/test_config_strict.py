"""Config is strict: a duplicated key, a history in the future or a key the code never reads is
an error naming the file, the line or key path and the value; every key the models accept is
read somewhere by the platform's code.
"""

from __future__ import annotations

import ast
import shutil
from pathlib import Path

import pytest
from pydantic import BaseModel

from prometheus_lib.config import models
from prometheus_lib.config.loader import load_config
from prometheus_lib.errors import ConfigError

ROOT = Path(__file__).resolve().parents[3]

# Fields that select among alternatives rather than being read as a value.
DISCRIMINATORS = {"StrategyConfig.engine": "a Literal with one engine today: validated, selects the chain"}


def _configs(tmp_path: Path) -> Path:
    target = tmp_path / "configs"
    shutil.copytree(ROOT / "configs", target)
    return target


def test_load_config_with_duplicated_yaml_key_names_file_line_and_key(tmp_path: Path) -> None:
    # Arrange: PyYAML alone would keep the last value silently
    folder = _configs(tmp_path)
    path = folder / "warehouse.yaml"
    path.write_text("warehouse:\n  backend: duckdb\n  backend: postgres\n")

    # Act
    with pytest.raises(ConfigError) as info:
        load_config(folder)

    # Assert
    assert str(info.value) == f"{path}: line 3, column 3: invalid YAML: duplicate key 'backend' (first at line 2)"


def test_load_config_with_duplicated_key_deep_in_a_list_item_is_refused(tmp_path: Path) -> None:
    # Arrange
    folder = _configs(tmp_path)
    path = folder / "strategies.yaml"
    text = path.read_text()
    path.write_text(text.replace("      momentum_weight:", "      low_vol_weight: 0.5\n      momentum_weight:", 1))

    # Act
    with pytest.raises(ConfigError, match=r"strategies.yaml: line \d+, column 7: invalid YAML: duplicate key 'low_vol_weight'"):
        load_config(folder)


def test_load_config_with_history_start_in_the_future_names_file_and_key(tmp_path: Path) -> None:
    # Arrange
    folder = _configs(tmp_path)
    path = folder / "markets.yaml"
    path.write_text(path.read_text().replace("history_start: 2015-01-02", "history_start: 2030-01-02", 1))

    # Act
    with pytest.raises(ConfigError) as info:
        load_config(folder)

    # Assert
    message = str(info.value)
    assert message.startswith(f"{path}: markets[US_EQ].history_start: must lie between 1970-01-01 and today")
    assert message.endswith("(was 2030-01-02)")


def test_load_config_with_a_key_the_engine_never_read_is_an_unknown_key(tmp_path: Path) -> None:
    # Arrange: the baseline's momentum is the factor panel's 12-1; a window key would not act
    folder = _configs(tmp_path)
    path = folder / "strategies.yaml"
    path.write_text(path.read_text().replace("      momentum_weight:", "      momentum_lookback: 100000\n      momentum_weight:", 1))

    # Act
    with pytest.raises(ConfigError) as info:
        load_config(folder)

    # Assert
    assert str(info.value) == f"{path}: strategies[US_CORE_LONG_EQ].baseline.momentum_lookback: unknown key (was 100000)"


def _fields(model: type[BaseModel], seen: set[type]) -> list[tuple[str, str]]:
    out = []
    for name, field in model.model_fields.items():
        out.append((model.__name__, name))
        args = getattr(field.annotation, "__args__", ()) + (field.annotation,)
        for inner in args:
            for t in getattr(inner, "__args__", ()) + (inner,):
                if isinstance(t, type) and issubclass(t, BaseModel) and t not in seen:
                    seen.add(t)
                    out += _fields(t, seen)
    return out


def _attribute_reads() -> set[str]:
    """Every ``x.name`` attribute read and ``getattr(x, "name")`` in the platform's code, outside the models."""
    names: set[str] = set()
    skip = {ROOT / "prometheus_lib/config/models.py", ROOT / "prometheus_lib/data/synthetic/config.py"}
    for package in ("prometheus_lib", "prometheus_assets"):
        for path in (ROOT / package).rglob("*.py"):
            if path in skip:
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Attribute):
                    names.add(node.attr)
                elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                    names.add(node.value)
    return names


def test_every_config_key_is_read_by_the_code() -> None:
    # Arrange
    fields = _fields(models.PlatformConfig, set())
    read = _attribute_reads()

    # Act
    unread = [f"{owner}.{name}" for owner, name in fields
              if name not in read and f"{owner}.{name}" not in DISCRIMINATORS]

    # Assert: a key must act or not exist
    assert len(fields) > 60
    assert unread == []
