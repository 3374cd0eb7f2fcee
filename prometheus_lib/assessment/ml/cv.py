"""Purged, embargoed cross-validation and walk-forward refit grids for a date x instrument panel.

After López de Prado, *Advances in Financial Machine Learning*, ch. 7 (``PurgedKFold``), but
counted in **dates** (integer session positions), never in rows: every row of one date lands on
the same side of a split, however many instruments the date holds.

Conventions
-----------
* A sample date ``t`` carries a label built from the returns over sessions ``(t, label_end]``.
  Its *label interval* is taken as the closed interval ``[t, label_end]``: the features are
  known at the close of ``t`` and the label needs prices up to the close of ``label_end``.
* Test blocks are the ``n_splits`` contiguous blocks of the sample dates, in order
  (``np.array_split``). A block with first date ``a``, last date ``b`` and latest label end
  ``e = max(label_end over the block)`` (so ``e >= b``) occupies the *test interval* ``[a, e]``.
* **Purge** (closed intervals): a date outside the block is purged when its label interval
  overlaps the test interval, ``dates[i] <= e and label_end[i] >= a``. A label that ends
  *exactly* at ``a`` is **purged**: a training label must end strictly before the test block's
  first date, as elsewhere in the engine ("labels ended strictly before the cut"). Likewise a
  date after the block is purged up to and including ``e``. (``purgedcv`` 0.1.11 uses half-open
  horizons ``[prediction, evaluation)``: it keeps a label ending exactly at ``a`` and embargoes,
  rather than purges, a date at ``e``. Its ``PurgedKFold`` gives these splits when passed
  ``evaluation_times = label_end + 1`` and an embargo of ``embargo - 0.5`` sessions.)
* **Embargo**: a date that is not purged is embargoed when ``e < dates[i] <= e + embargo``.
  The embargo follows the test block's latest *label end*, not its last date, so it guards
  against serial correlation with the information the test labels used. There is no embargo
  before the block: purging already removes every label that reaches into it.
* Every other date outside the block trains: nothing is removed without one of these causes.

Walk-forward
------------
``walk_forward_cuts`` gives the anchored refit positions and ``training_dates`` the sample dates
a model fitted at a cut may use (labels ending strictly before the cut, less an embargo, on a
stride grid anchored on the first usable session so it does not move with the range asked for).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Fold", "purged_kfold", "training_dates", "walk_forward_cuts"]


@dataclass(frozen=True)
class Fold:
    """One purged, embargoed split; ``train`` and ``test`` hold session positions (read-only arrays)."""

    index: int
    train: np.ndarray  # sorted int session positions (a subset of the sample dates) used to train
    test: np.ndarray  # sorted int session positions of the test block
    purged: int  # sample dates removed from training: their label interval overlaps the test interval
    embargoed: int  # sample dates removed by the embargo after the test block's latest label end


def _check_int(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def _as_int_vector(name: str, values: object) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{name} must hold integer session positions, got dtype {arr.dtype}")
    return arr.astype(np.int64, copy=False)


def _frozen(arr: np.ndarray) -> np.ndarray:
    out = np.array(arr, dtype=np.int64)
    out.setflags(write=False)
    return out


def purged_kfold(dates: np.ndarray, label_end: np.ndarray, n_splits: int, embargo_sessions: int) -> list[Fold]:
    """Split the sample ``dates`` into ``n_splits`` contiguous test blocks with purged, embargoed training sets.

    ``dates`` are strictly increasing integer session positions; ``label_end[i] >= dates[i]`` is
    the session where the label of ``dates[i]`` ends. For the test block ``[a .. b]`` with latest
    label end ``e``, a date outside the block is purged when ``dates[i] <= e`` and
    ``label_end[i] >= a`` (a label ending exactly at ``a`` is purged), else embargoed when
    ``e < dates[i] <= e + embargo_sessions``, else it trains. See the module docstring.

    Raises ``ValueError`` naming the parameter when ``n_splits`` is not in ``[2, len(dates)]``,
    ``embargo_sessions < 0``, the lengths differ, ``dates`` is not strictly increasing or
    ``label_end < dates`` somewhere.
    """
    d = _as_int_vector("dates", dates)
    le = _as_int_vector("label_end", label_end)
    if d.shape != le.shape:
        raise ValueError(f"dates and label_end must have the same length, got {d.size} and {le.size}")
    k = _check_int("n_splits", n_splits, 2)
    if k > d.size:
        raise ValueError(f"n_splits must be <= the number of dates ({d.size}), got {k}")
    embargo = _check_int("embargo_sessions", embargo_sessions, 0)
    if np.any(np.diff(d) <= 0):
        raise ValueError("dates must be strictly increasing")
    bad = np.flatnonzero(le < d)
    if bad.size:
        i = int(bad[0])
        raise ValueError(f"label_end must be >= dates, but label_end[{i}]={le[i]} < dates[{i}]={d[i]}")

    folds: list[Fold] = []
    for index, block in enumerate(np.array_split(np.arange(d.size), k)):
        lo, hi = int(block[0]), int(block[-1]) + 1
        a = d[lo]
        e = le[lo:hi].max()
        outside = np.ones(d.size, dtype=bool)
        outside[lo:hi] = False
        overlaps = (d <= e) & (le >= a)
        purged = outside & overlaps
        embargoed = outside & ~overlaps & (d > e) & (d <= e + embargo)
        train = outside & ~purged & ~embargoed
        folds.append(
            Fold(
                index=index,
                train=_frozen(d[train]),
                test=_frozen(d[lo:hi]),
                purged=int(np.count_nonzero(purged)),
                embargoed=int(np.count_nonzero(embargoed)),
            )
        )
    return folds


def walk_forward_cuts(first: int, last: int, every: int, min_train: int) -> np.ndarray:
    """The anchored refit positions ``first + min_train + j * every`` (j >= 0) that are ``<= last``.

    ``first`` is the first usable session position and ``last`` the last session to score; a
    model refitted at cut ``c`` sees only sessions before ``c`` and scores ``[c, c + every)``.
    The grid is anchored on ``first``, so moving ``last`` only adds or drops cuts at the end.
    ``min_train`` (>= 1) is the number of sessions ``[first, first + min_train)`` of history before
    the first cut. Empty when ``first + min_train > last``.
    """
    first = _check_int("first", first, np.iinfo(np.int64).min)
    last = _check_int("last", last, np.iinfo(np.int64).min)
    every = _check_int("every", every, 1)
    min_train = _check_int("min_train", min_train, 1)
    return np.arange(first + min_train, last + 1, every, dtype=np.int64)


def training_dates(cut: int, horizon: int, embargo: int, window: int, stride: int, first: int) -> np.ndarray:
    """The sample dates (ascending session positions) for a model fitted at session position ``cut``.

    The positions ``t`` with ``t >= first``, ``t >= cut - window``,
    ``t + horizon <= cut - 1 - embargo`` (every label ends strictly before the cut, then
    ``embargo`` more sessions are left out) and ``(t - first) % stride == 0``. The stride grid is
    anchored on ``first``, not on the cut, so two cuts pick the same dates where their ranges
    overlap. ``horizon >= 1``, ``embargo >= 0``, ``window >= 1``, ``stride >= 1``; the result may
    be empty.
    """
    cut = _check_int("cut", cut, np.iinfo(np.int64).min)
    horizon = _check_int("horizon", horizon, 1)
    embargo = _check_int("embargo", embargo, 0)
    window = _check_int("window", window, 1)
    stride = _check_int("stride", stride, 1)
    first = _check_int("first", first, np.iinfo(np.int64).min)
    lo = max(first, cut - window)
    hi = cut - 1 - embargo - horizon
    start = first + -(-(lo - first) // stride) * stride  # first grid point >= lo
    return np.arange(start, hi + 1, stride, dtype=np.int64)
