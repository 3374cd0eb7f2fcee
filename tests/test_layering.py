"""Specification of the layering: ``prometheus_lib`` is a plain library that never imports Dagster.

The contract lives in ``pyproject.toml`` ([tool.importlinter]) and is checked by ``lint-imports``;
these tests run it on the repository, check the import graph directly, and prove the contract
fails on a package that breaks it.
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"
FORBIDDEN = ("dagster", "dagster_dbt", "dagster_postgres", "dagster_webserver", "prometheus_assets")


def lint_imports(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run import-linter without writing a cache into ``cwd``."""
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--no-logo", *args],
        cwd=cwd, capture_output=True, text=True, timeout=120,
    )


def repository_contract() -> dict:
    """The forbidden contract on prometheus_lib declared in pyproject.toml."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    return next(c for c in config["contracts"] if c["type"] == "forbidden" and "prometheus_lib" in c["source_modules"])


def test_repository_contract_with_pyproject_forbids_dagster_and_the_asset_layer() -> None:
    # Act
    contract = repository_contract()

    # Assert
    assert set(FORBIDDEN) <= set(contract["forbidden_modules"])


def test_lint_imports_with_repository_config_keeps_every_contract() -> None:
    # Act
    result = lint_imports(ROOT)

    # Assert
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_import_graph_with_prometheus_lib_has_no_import_of_dagster_or_assets() -> None:
    # Arrange
    graph = grimp.build_graph("prometheus_lib", "prometheus_assets", include_external_packages=True, cache_dir=None)

    # Act
    offending = sorted(
        (module, imported)
        for module in graph.find_descendants("prometheus_lib") | {"prometheus_lib"}
        for imported in graph.find_modules_directly_imported_by(module)
        if imported.split(".")[0] in FORBIDDEN
    )

    # Assert
    assert offending == []
    assert not graph.chain_exists(importer="prometheus_lib", imported="prometheus_assets", as_packages=True)


@pytest.mark.parametrize(
    ("core_source", "expected_returncode"),
    [
        pytest.param("import polars\n", 0, id="clean-package-passes"),
        pytest.param("import dagster\n", 1, id="direct-dagster-import-fails"),
        pytest.param("def build():\n    from dagster_dbt import DbtCliResource\n", 1, id="lazy-dagster-dbt-import-fails"),
    ],
)
def test_lint_imports_with_package_importing_dagster_breaks_the_contract(
    tmp_path: Path, core_source: str, expected_returncode: int,
) -> None:
    # Arrange: a tiny package checked by the repository's own contract
    package = tmp_path / "fakelib"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "core.py").write_text(core_source)
    contract = repository_contract()
    forbidden = ", ".join(f'"{m}"' for m in contract["forbidden_modules"])
    (tmp_path / "importlinter.toml").write_text(
        "[tool.importlinter]\n"
        'root_packages = ["fakelib"]\n'
        "include_external_packages = true\n\n"
        "[[tool.importlinter.contracts]]\n"
        f'name = "{contract["name"]}"\n'
        'type = "forbidden"\n'
        'source_modules = ["fakelib"]\n'
        f"forbidden_modules = [{forbidden}]\n"
    )

    # Act
    result = lint_imports(tmp_path, "--config", str(tmp_path / "importlinter.toml"))

    # Assert
    assert result.returncode == expected_returncode, result.stdout + result.stderr
    if expected_returncode:
        assert "BROKEN" in result.stdout
        assert "fakelib.core -> dagster" in result.stdout


ENGINE_PACKAGES = ("prometheus_lib.execution", "prometheus_lib.backtest", "prometheus_lib.strategies",
                   "prometheus_lib.analytics", "prometheus_lib.calendars")


def test_engine_packages_with_the_repository_contract_never_import_the_synthetic_truth() -> None:
    # Arrange
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    contract = next(c for c in config["contracts"] if "prometheus_lib.data.synthetic" in c.get("forbidden_modules", []))
    graph = grimp.build_graph("prometheus_lib", cache_dir=None)

    # Act
    offending = sorted(
        (module, imported)
        for package in ENGINE_PACKAGES
        for module in graph.find_descendants(package) | {package}
        for imported in graph.find_modules_directly_imported_by(module)
        if imported.startswith("prometheus_lib.data.synthetic")
    )

    # Assert
    assert set(ENGINE_PACKAGES) <= set(contract["source_modules"])
    assert offending == []
