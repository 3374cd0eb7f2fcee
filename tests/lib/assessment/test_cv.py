"""Purged, embargoed k-fold on dates and the walk-forward grids (prometheus_lib.assessment.ml.cv)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from prometheus_lib.assessment.ml.cv import Fold, purged_kfold, training_dates, walk_forward_cuts


@st.composite
def _samples(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, int, int]:
    n = draw(st.integers(2, 60))
    start = draw(st.integers(-50, 500))
    gaps = draw(st.lists(st.integers(1, 8), min_size=n - 1, max_size=n - 1))
    dates = start + np.concatenate([[0], np.cumsum(gaps, dtype=np.int64)])
    horizons = np.array(draw(st.lists(st.integers(0, 40), min_size=n, max_size=n)), dtype=np.int64)
    n_splits = draw(st.integers(2, n))
    embargo = draw(st.integers(0, 30))
    return dates, dates + horizons, n_splits, embargo


def _reference(dates: np.ndarray, label_end: np.ndarray, n_splits: int, embargo: int) -> list[tuple]:
    """A per-date loop written straight from the definitions, to compare against the vectorised code."""
    out = []
    for block in np.array_split(np.arange(len(dates)), n_splits):
        a = int(dates[block[0]])
        e = max(int(label_end[i]) for i in block)
        train, purged, embargoed = [], 0, 0
        for i in range(len(dates)):
            if i in block:
                continue
            t, end = int(dates[i]), int(label_end[i])
            if t <= e and end >= a:
                purged += 1
            elif e < t <= e + embargo:
                embargoed += 1
            else:
                train.append(t)
        out.append(([int(dates[i]) for i in block], train, purged, embargoed))
    return out


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_samples())
def test_purged_kfold_properties(sample: tuple[np.ndarray, np.ndarray, int, int]) -> None:
    dates, label_end, n_splits, embargo = sample
    folds = purged_kfold(dates, label_end, n_splits, embargo)
    assert [f.index for f in folds] == list(range(n_splits))
    end_of = dict(zip(dates.tolist(), label_end.tolist(), strict=True))

    # Test blocks: contiguous, disjoint, in order, and together all the dates.
    tests = [f.test for f in folds]
    assert np.array_equal(np.concatenate(tests), dates)
    assert all(t.size >= 1 for t in tests)

    for fold, (ref_test, ref_train, ref_purged, ref_embargoed) in zip(
        folds, _reference(dates, label_end, n_splits, embargo), strict=True
    ):
        train, test = fold.train, fold.test
        assert np.all(np.diff(train) > 0) and np.all(np.diff(test) > 0)
        assert np.isin(train, dates).all()
        assert not np.isin(train, test).any()
        a = int(test[0])
        e = max(end_of[t] for t in test.tolist())
        train_end = np.array([end_of[t] for t in train.tolist()], dtype=np.int64)
        # No training label interval [t, label_end] overlaps the test interval [a, e].
        assert not np.any((train <= e) & (train_end >= a))
        # No training date inside the embargo after the test block's latest label end.
        assert not np.any((train > e) & (train <= e + embargo))
        # Nothing removed without cause: every other date outside the block trains.
        others = dates[~np.isin(dates, test)]
        others_end = np.array([end_of[t] for t in others.tolist()], dtype=np.int64)
        overlap = (others <= e) & (others_end >= a)
        in_embargo = ~overlap & (others > e) & (others <= e + embargo)
        assert np.array_equal(train, others[~overlap & ~in_embargo])
        assert fold.purged == int(overlap.sum())
        assert fold.embargoed == int(in_embargo.sum())
        assert fold.purged + fold.embargoed + train.size + test.size == dates.size
        # Agrees with the straight per-date loop.
        assert test.tolist() == ref_test
        assert train.tolist() == ref_train
        assert (fold.purged, fold.embargoed) == (ref_purged, ref_embargoed)


def test_hand_example_horizon_21_on_daily_dates() -> None:
    dates = np.arange(200)
    label_end = dates + 21  # label over sessions (t, t+21]
    folds = purged_kfold(dates, label_end, n_splits=4, embargo_sessions=5)
    fold = folds[1]
    assert fold.test.tolist() == list(range(50, 100))
    a, e = 50, 99 + 21  # test interval [50, 120]
    removed = sorted(set(range(200)) - set(fold.train.tolist()) - set(fold.test.tolist()))
    purged_before = [t for t in removed if t < a]
    purged_after = [t for t in removed if 99 < t <= e]
    embargoed = [t for t in removed if t > e]
    print(f"fold 1: test {a}..99, label end {e}")
    print(f"  purged before: {purged_before[0]}..{purged_before[-1]} ({len(purged_before)} dates)")
    print(f"  purged after:  {purged_after[0]}..{purged_after[-1]} ({len(purged_after)} dates)")
    print(f"  embargoed:     {embargoed[0]}..{embargoed[-1]} ({len(embargoed)} dates)")
    # Before: label ends t+21 >= 50 for t >= 29; t = 28 ends at 49 < 50 and trains.
    assert purged_before == list(range(29, 50))
    # After: every date up to the test block's latest label end, 120, is purged ...
    assert purged_after == list(range(100, 121))
    # ... then 5 more sessions are embargoed.
    assert embargoed == list(range(121, 126))
    assert fold.train.tolist() == list(range(0, 29)) + list(range(126, 200))
    assert (fold.purged, fold.embargoed) == (42, 5)

    # First fold: nothing before it; last fold: labels end past the data, nothing after to embargo.
    assert folds[0].train.tolist() == list(range(76, 200))  # 50..70 purged, 71..75 embargoed
    assert (folds[0].purged, folds[0].embargoed) == (21, 5)
    assert folds[3].train.tolist() == list(range(0, 129))  # label of 128 ends at 149 < 150
    assert (folds[3].purged, folds[3].embargoed) == (21, 0)


def test_label_ending_exactly_at_test_start_is_purged() -> None:
    # Test block of the second fold is {20, 30}: a = 20.
    dates = np.array([0, 10, 20, 30])
    kept = purged_kfold(dates, np.array([9, 19, 20, 30]), n_splits=2, embargo_sessions=0)[1]
    assert kept.train.tolist() == [0, 10] and kept.purged == 0  # 19 < 20: trains
    at_start = purged_kfold(dates, np.array([9, 20, 20, 30]), n_splits=2, embargo_sessions=0)[1]
    assert at_start.train.tolist() == [0] and at_start.purged == 1  # ends exactly at a = 20: purged


def test_date_at_test_label_end_is_purged_and_embargo_starts_after_it() -> None:
    dates = np.array([0, 10, 15, 16, 18, 19, 30])
    label_end = dates.copy()
    label_end[1] = 15
    fold = purged_kfold(dates, label_end, n_splits=2, embargo_sessions=3)[0]
    # test {0, 10, 15, 16}, e = 16: 18 and 19 lie in (16, 19] and are embargoed.
    assert fold.test.tolist() == [0, 10, 15, 16]
    assert fold.train.tolist() == [30] and (fold.purged, fold.embargoed) == (0, 2)
    dates = np.array([0, 10, 15, 20, 30, 40])
    label_end = np.array([0, 15, 15, 20, 30, 40])
    fold = purged_kfold(dates, label_end, n_splits=3, embargo_sessions=0)[0]
    # test {0, 10}, e = 15: the date 15 outside the block is purged (its interval touches e).
    assert fold.test.tolist() == [0, 10]
    assert fold.train.tolist() == [20, 30, 40] and fold.purged == 1


def test_rows_of_one_date_never_straddle_a_split() -> None:
    dates = np.arange(0, 100, 5)
    folds = purged_kfold(dates, dates + 10, n_splits=3, embargo_sessions=2)
    row_dates = np.repeat(dates, 7)  # 7 instruments per date
    for fold in folds:
        in_train = np.isin(row_dates, fold.train)
        in_test = np.isin(row_dates, fold.test)
        assert not np.any(in_train & in_test)
        for d in dates:
            rows = row_dates == d
            assert in_train[rows].all() or not in_train[rows].any()
            assert in_test[rows].all() or not in_test[rows].any()


def test_fold_arrays_are_read_only() -> None:
    fold = purged_kfold(np.arange(10), np.arange(10) + 1, 2, 0)[0]
    assert isinstance(fold, Fold)
    with pytest.raises(ValueError):
        fold.train[0] = 99


@pytest.mark.parametrize(
    ("dates", "label_end", "n_splits", "embargo", "message"),
    [
        ([0, 1, 2], [0, 1, 2], 1, 0, "n_splits must be >= 2"),
        ([0, 1, 2], [0, 1, 2], 4, 0, r"n_splits must be <= the number of dates \(3\)"),
        ([0, 1, 2], [0, 1, 2], 2.0, 0, "n_splits must be an integer"),
        ([0, 1, 2], [0, 1, 2], 2, -1, "embargo_sessions must be >= 0"),
        ([0, 1, 2], [0, 1], 2, 0, "dates and label_end must have the same length"),
        ([0, 2, 2], [0, 2, 2], 2, 0, "dates must be strictly increasing"),
        ([0, 3, 2], [0, 3, 2], 2, 0, "dates must be strictly increasing"),
        ([0, 1, 2], [0, 0, 2], 2, 0, r"label_end must be >= dates, but label_end\[1\]=0 < dates\[1\]=1"),
        ([0.0, 1.0, 2.0], [0, 1, 2], 2, 0, "dates must hold integer session positions"),
        ([[0, 1, 2]], [[0, 1, 2]], 2, 0, "dates must be one-dimensional"),
    ],
)
def test_purged_kfold_errors(dates: list, label_end: list, n_splits: object, embargo: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        purged_kfold(np.array(dates), np.array(label_end), n_splits, embargo)  # type: ignore[arg-type]


def test_walk_forward_cuts() -> None:
    assert walk_forward_cuts(first=10, last=100, every=21, min_train=50).tolist() == [60, 81]
    assert walk_forward_cuts(first=10, last=102, every=21, min_train=50).tolist() == [60, 81, 102]
    assert walk_forward_cuts(first=10, last=59, every=21, min_train=50).tolist() == []
    assert walk_forward_cuts(first=0, last=3, every=1, min_train=1).tolist() == [1, 2, 3]
    with pytest.raises(ValueError, match="every must be >= 1"):
        walk_forward_cuts(0, 10, 0, 1)
    with pytest.raises(ValueError, match="min_train must be >= 1"):
        walk_forward_cuts(0, 10, 1, 0)


@settings(max_examples=200, deadline=None)
@given(
    first=st.integers(0, 50),
    span=st.integers(0, 400),
    every=st.integers(1, 30),
    min_train=st.integers(1, 100),
    extra=st.integers(0, 100),
)
def test_walk_forward_cuts_anchored(first: int, span: int, every: int, min_train: int, extra: int) -> None:
    cuts = walk_forward_cuts(first, first + span, every, min_train)
    assert np.all(cuts <= first + span) and np.all((cuts - first - min_train) % every == 0)
    assert cuts.size == 0 or cuts[0] == first + min_train
    assert cuts.size == 0 or cuts[-1] + every > first + span
    longer = walk_forward_cuts(first, first + span + extra, every, min_train)
    assert np.array_equal(longer[: cuts.size], cuts)  # extending the range only appends cuts


def test_training_dates_hand_example() -> None:
    # cut 100, horizon 21, embargo 3: labels must end <= 96, so t <= 75; window 60: t >= 40.
    got = training_dates(cut=100, horizon=21, embargo=3, window=60, stride=5, first=2)
    assert got.tolist() == [42, 47, 52, 57, 62, 67, 72]
    assert training_dates(cut=100, horizon=21, embargo=3, window=60, stride=1, first=0).tolist() == list(range(40, 76))
    assert training_dates(cut=20, horizon=21, embargo=0, window=60, stride=1, first=0).tolist() == []
    with pytest.raises(ValueError, match="stride must be >= 1"):
        training_dates(100, 21, 3, 60, 0, 0)
    with pytest.raises(ValueError, match="horizon must be >= 1"):
        training_dates(100, 0, 3, 60, 1, 0)
    with pytest.raises(ValueError, match="embargo must be >= 0"):
        training_dates(100, 5, -1, 60, 1, 0)
    with pytest.raises(ValueError, match="window must be >= 1"):
        training_dates(100, 5, 0, 0, 1, 0)


@settings(max_examples=300, deadline=None)
@given(
    cut=st.integers(-20, 600),
    horizon=st.integers(1, 30),
    embargo=st.integers(0, 10),
    window=st.integers(1, 400),
    stride=st.integers(1, 10),
    first=st.integers(-20, 100),
    every=st.integers(1, 40),
)
def test_training_dates_properties(
    cut: int, horizon: int, embargo: int, window: int, stride: int, first: int, every: int
) -> None:
    got = training_dates(cut, horizon, embargo, window, stride, first)
    assert np.all(np.diff(got) == stride)
    # Every label ends strictly before the cut, less the embargo.
    assert np.all(got + horizon < cut - embargo)
    # Window and start respected, on the grid anchored on first.
    assert np.all(got >= cut - window) and np.all(got >= first)
    assert np.all((got - first) % stride == 0)
    # Nothing left out: brute force over the candidates.
    expected = [
        t
        for t in range(min(first, cut - window) - 1, cut + 1)
        if t >= first and t >= cut - window and t + horizon <= cut - 1 - embargo and (t - first) % stride == 0
    ]
    assert got.tolist() == expected
    # Anchored grid: moving the cut by `every` picks the same dates where the ranges overlap.
    later = training_dates(cut + every, horizon, embargo, window, stride, first)
    lo, hi = max(first, cut + every - window), cut - 1 - embargo - horizon
    assert got[(got >= lo) & (got <= hi)].tolist() == later[(later >= lo) & (later <= hi)].tolist()
    assert set(got.tolist()) & set(later.tolist()) == set(got[(got >= lo) & (got <= hi)].tolist())
