"""Where Prometheus keeps its files: ``$PROMETHEUS_HOME`` (default ``<repo>/.prometheus_home``)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def prometheus_home() -> Path:
    """Return the project home directory (created if missing).

    ``PROMETHEUS_HOME`` moves it; by default it is ``.prometheus_home`` in the repository.
    It holds the embedded warehouse, Dagster's home (``dagster/``) and reports.
    """
    home = Path(os.environ.get("PROMETHEUS_HOME") or REPO_ROOT / ".prometheus_home").resolve()
    home.mkdir(parents=True, exist_ok=True)
    return home


def resolve_under_home(path: str | Path) -> Path:
    """Return ``path`` if absolute, else ``path`` under :func:`prometheus_home`."""
    p = Path(path)
    return p if p.is_absolute() else prometheus_home() / p


@contextmanager
def scoped_environment(values: Mapping[str, str] | None = None, keep: Iterable[str] = ()) -> Iterator[None]:
    """Set ``values`` in the environment inside the block; afterwards restore every key of
    ``values`` and ``keep`` (which the block may set) to what it was, unset ones unset."""
    values = dict(values or {})
    saved = {k: os.environ.get(k) for k in (*values, *keep)}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
