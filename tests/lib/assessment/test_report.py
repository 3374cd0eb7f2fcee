"""Tests of the score evaluation report (IC, quantiles, turnover, calibration, HTML/JSON output)."""

from __future__ import annotations

import json
import math
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from scipy import stats

from prometheus_lib.assessment import report
from prometheus_lib.assessment.report import (
    calibration,
    daily_ic,
    evaluate,
    ic_by_group,
    ic_summary,
    quantile_returns,
    top_quantile_turnover,
    write_report,
)
from prometheus_lib.errors import DataValidationError


def _sessions(n: int, start: date = date(2021, 1, 4)) -> list[date]:
    days: list[date] = []
    d = start
    while len(days) < n:
        if d.weekday() < 5:
            days.append(d)
        d += timedelta(days=1)
    return days


def _panel(
    sessions: int,
    names: int,
    *,
    seed: int = 0,
    start: date = date(2021, 1, 4),
    noise: float = 1.0,
) -> pl.DataFrame:
    """Panel with ``ml = forward_return + noise * N(0, sd)``: corr(ml, r) = 1/sqrt(1 + noise^2)."""
    rng = np.random.default_rng(seed)
    days = _sessions(sessions, start)
    r = rng.normal(0.0, 0.02, sessions * names)
    return pl.DataFrame({
        "session_date": pl.Series(days, dtype=pl.Date).gather(np.repeat(np.arange(sessions), names)),
        "instrument_id": np.tile([f"I{i:03d}" for i in range(names)], sessions),
        "forward_return": r,
        "ml": r + noise * rng.normal(0.0, 0.02, sessions * names),
        "rsi": rng.normal(size=sessions * names),
    })


# ------------------------------------------------------------------------------------------------
# IC


def test_ic_recovers_the_planted_correlation_and_matches_numpy_per_session() -> None:
    frame = _panel(60, 300, noise=1.0)  # corr = 1/sqrt(2)
    daily = daily_ic(frame, "ml")
    assert daily.height == 60 and daily["n"].to_list() == [300] * 60
    assert daily["ic"].mean() == pytest.approx(1 / math.sqrt(2), abs=0.01)
    # Spearman of a bivariate normal: (6/pi) asin(rho/2).
    assert daily["rank_ic"].mean() == pytest.approx(6 / math.pi * math.asin(1 / math.sqrt(2) / 2), abs=0.01)
    for day, ic in daily.select("session_date", "ic").head(5).iter_rows():
        part = frame.filter(pl.col("session_date") == day)
        assert ic == pytest.approx(np.corrcoef(part["ml"].to_numpy(), part["forward_return"].to_numpy())[0, 1],
                                   abs=1e-12)


def test_rank_ic_equals_scipy_spearman_with_ties_and_nulls() -> None:
    frame = _panel(12, 40, seed=3).with_columns(
        (pl.col("ml") * 200).round(0).alias("ml"),  # many ties
        pl.when(pl.int_range(pl.len()) % 7 == 0).then(None).otherwise(pl.col("forward_return")).alias("forward_return"),
    )
    daily = daily_ic(frame, "ml")
    assert daily.height == 12
    for day, rank_ic, n in daily.select("session_date", "rank_ic", "n").iter_rows():
        part = frame.filter(pl.col("session_date") == day).drop_nulls(["ml", "forward_return"])
        assert n == part.height
        expected = stats.spearmanr(part["ml"].to_numpy(), part["forward_return"].to_numpy()).statistic
        assert rank_ic == pytest.approx(expected, abs=1e-12)


def test_anti_ordered_score_gives_minus_one_and_a_negative_spread() -> None:
    frame = _panel(20, 50, seed=1).with_columns((-pl.col("forward_return")).alias("anti"))
    daily = daily_ic(frame, "anti")
    assert daily["rank_ic"].to_list() == pytest.approx([-1.0] * 20, abs=1e-12)
    assert daily["ic"].to_list() == pytest.approx([-1.0] * 20, abs=1e-12)
    q = quantile_returns(frame, "anti", 10)
    assert q["long_short_mean"] < 0
    assert q["mean_return"][0] > 0 > q["mean_return"][-1]
    assert q["monotonicity"] == pytest.approx(-1.0)
    good = quantile_returns(frame.with_columns(pl.col("forward_return").alias("good")), "good", 10)
    assert good["long_short_mean"] == pytest.approx(-q["long_short_mean"], abs=1e-12)


def test_icir_is_mean_over_std_and_horizon_one_t_stat_is_classic() -> None:
    daily = daily_ic(_panel(40, 30, seed=5, noise=3.0), "ml")
    s = ic_summary(daily, horizon_sessions=1)
    ic = daily["ic"].to_numpy()
    ric = daily["rank_ic"].to_numpy()
    assert s["n_sessions"] == 40
    assert s["ic_mean"] == pytest.approx(ic.mean(), abs=1e-15)
    assert s["icir"] == pytest.approx(ic.mean() / ic.std(ddof=1), rel=1e-12)
    assert s["rank_icir"] == pytest.approx(ric.mean() / ric.std(ddof=1), rel=1e-12)
    assert s["t_stat_method"] == "iid"
    classic = stats.ttest_1samp(ric, 0.0).statistic
    assert s["rank_ic_t_stat"] == pytest.approx(classic, rel=1e-12)
    assert s["rank_ic_t_stat_nonoverlap"] == pytest.approx(classic, rel=1e-12)


def test_overlap_corrected_t_stat_is_hansen_hodrick_and_nonoverlap_subsamples_the_calendar() -> None:
    daily = daily_ic(_panel(50, 30, seed=6, noise=3.0), "ml")
    h = 4
    s = ic_summary(daily, horizon_sessions=h)
    x = daily["rank_ic"].to_numpy()
    t, m = x.size, x.mean()
    g = [sum((x[i] - m) * (x[i - j] - m) for i in range(j, t)) / t for j in range(h)]
    lrv = g[0] + 2 * sum(g[1:])
    assert lrv > 0 and s["t_stat_method"] == "hansen-hodrick"
    assert s["rank_ic_t_stat"] == pytest.approx(m / math.sqrt(lrv / (t - 1)), rel=1e-10)
    sub = x[::h]
    assert s["n_nonoverlap"] == sub.size == 13
    assert s["rank_ic_t_stat_nonoverlap"] == pytest.approx(stats.ttest_1samp(sub, 0.0).statistic, rel=1e-12)


def test_overlapping_labels_deflate_the_t_stat() -> None:
    # A label summed over h iid daily returns: the daily IC series is an MA(h-1).
    rng = np.random.default_rng(11)
    sessions, names, h = 300, 40, 10
    daily_ret = rng.normal(0, 0.01, (sessions + h, names))
    signal = rng.normal(0, 1, names)  # static signal, weakly predictive
    daily_ret += 0.0005 * signal
    label = np.stack([daily_ret[t + 1: t + 1 + h].sum(axis=0) for t in range(sessions)])
    days = _sessions(sessions)
    frame = pl.DataFrame({
        "session_date": pl.Series(days, dtype=pl.Date).gather(np.repeat(np.arange(sessions), names)),
        "instrument_id": np.tile([f"I{i:02d}" for i in range(names)], sessions),
        "forward_return": label.ravel(),
        "score": np.tile(signal, sessions),
    })
    daily = daily_ic(frame, "score")
    naive = ic_summary(daily, horizon_sessions=1)["rank_ic_t_stat"]
    corrected = ic_summary(daily, horizon_sessions=h)["rank_ic_t_stat"]
    assert abs(corrected) < 0.6 * abs(naive)


def test_min_names_drops_thin_sessions() -> None:
    frame = _panel(3, 12)
    thin = frame.with_columns(
        pl.when((pl.col("session_date") == pl.col("session_date").min()) & (pl.col("instrument_id") > "I008"))
        .then(None).otherwise(pl.col("ml")).alias("ml")
    )
    assert daily_ic(thin, "ml").height == 2
    assert daily_ic(thin, "ml", min_names=9).height == 3


# ------------------------------------------------------------------------------------------------
# Null handling


def test_null_and_nan_labels_and_scores_are_excluded() -> None:
    frame = _panel(10, 30, seed=2)
    mask = pl.int_range(pl.len()) % 5 == 0
    holed = frame.with_columns(
        pl.when(mask).then(None).otherwise(pl.col("forward_return")).alias("forward_return"),
        pl.when(pl.int_range(pl.len()) % 9 == 0).then(float("nan")).otherwise(pl.col("ml")).alias("ml"),
    )
    dropped = holed.filter(pl.col("forward_return").is_not_null() & pl.col("ml").is_not_nan())
    a, b = daily_ic(holed, "ml"), daily_ic(dropped, "ml")
    assert a["n"].to_list() == b["n"].to_list()
    assert a["rank_ic"].to_list() == pytest.approx(b["rank_ic"].to_list(), abs=1e-15)
    assert quantile_returns(holed, "ml")["mean_return"] == pytest.approx(
        quantile_returns(dropped, "ml")["mean_return"], abs=1e-15)
    # Sessions with no label at all (the most recent ones) contribute nothing.
    last = frame["session_date"].max()
    recent = frame.with_columns(
        pl.when(pl.col("session_date") == last).then(None).otherwise(pl.col("forward_return")).alias("forward_return")
    )
    assert daily_ic(recent, "ml").height == 9


def test_constant_score_gives_null_ic_and_json_none() -> None:
    frame = _panel(5, 20).with_columns(pl.lit(1.0).alias("flat"))
    daily = daily_ic(frame, "flat")
    assert daily.height == 5 and daily["rank_ic"].null_count() == 5
    result = evaluate(frame, ["flat"], 1)
    assert result["scores"]["flat"]["ic"]["rank_ic_mean"] is None
    assert json.loads(json.dumps(result, allow_nan=False)) == result


def test_duplicate_rows_raise() -> None:
    frame = _panel(2, 12)
    with pytest.raises(DataValidationError, match="unique"):
        daily_ic(pl.concat([frame, frame.head(1)]), "ml")


# ------------------------------------------------------------------------------------------------
# Quantiles and turnover


def test_quantile_assignment_is_equal_sized_and_ties_break_by_instrument() -> None:
    frame = _panel(4, 30).with_columns(pl.lit(0.0).alias("tied"))
    q = quantile_returns(frame, "tied", 10)
    assert q["mean_count"] == [3.0] * 10
    # All tied: quantile follows instrument_id, so Q1 = I000..I002 of each session.
    first = frame.filter(pl.col("instrument_id") <= "I002").group_by("session_date").agg(pl.col("forward_return").mean())
    assert q["mean_return"][0] == pytest.approx(first["forward_return"].mean(), abs=1e-15)


def test_long_short_sharpe_uses_non_overlapping_periods() -> None:
    sessions, names, h = 23, 10, 3
    rng = np.random.default_rng(4)
    a = rng.normal(0.002, 0.01, sessions)
    days = _sessions(sessions)
    idx = np.tile(np.arange(names), sessions)
    frame = pl.DataFrame({
        "session_date": pl.Series(days, dtype=pl.Date).gather(np.repeat(np.arange(sessions), names)),
        "instrument_id": [f"I{i}" for i in idx],
        "score": idx.astype(float),
        "forward_return": np.where(idx >= 5, np.repeat(a, names), 0.0),
    })
    q = quantile_returns(frame, "score", 2, horizon_sessions=h)
    sub = a[::h]
    assert q["n_sessions"] == 23 and q["n_periods"] == sub.size == 8
    assert q["long_short_mean"] == pytest.approx(a.mean(), abs=1e-15)
    assert q["periods_per_year"] == pytest.approx(84.0)
    assert q["long_short_sharpe"] == pytest.approx(sub.mean() / sub.std(ddof=1) * math.sqrt(252 / h), rel=1e-12)
    assert q["long_short_ann_return"] == pytest.approx(sub.mean() * 84, rel=1e-12)
    assert q["long_short_cum_log_return"] == pytest.approx(sub.sum(), rel=1e-12)
    assert q["mean_return"] == pytest.approx([0.0, a.mean()], abs=1e-15)


def test_turnover_static_rotating_and_random() -> None:
    names, sessions = 20, 6
    days = _sessions(sessions)
    k = np.repeat(np.arange(sessions), names)
    i = np.tile(np.arange(names), sessions)
    base = pl.DataFrame({
        "session_date": pl.Series(days, dtype=pl.Date).gather(k),
        "instrument_id": [f"I{x:02d}" for x in i],
        "forward_return": np.zeros(sessions * names),
        "static": i.astype(float),
        # Top decile = 2 names; shifting the ranking by 2 each session replaces both.
        "rotate2": ((i + 2 * k) % names).astype(float),
        # Shifting by 1 replaces one of the two.
        "rotate1": ((i + k) % names).astype(float),
    })
    assert top_quantile_turnover(base, "static") == 0.0
    assert top_quantile_turnover(base, "rotate2") == pytest.approx(1.0)
    assert top_quantile_turnover(base, "rotate1") == pytest.approx(0.5)
    # A score with no label yet still counts for turnover.
    unlabelled = base.with_columns(pl.lit(None, dtype=pl.Float64).alias("forward_return"))
    assert top_quantile_turnover(unlabelled, "rotate1") == pytest.approx(0.5)
    # Fully reshuffled every session: expected share replaced is 1 - 10/100 = 0.9.
    shuffled = _panel(200, 100, seed=9)
    assert top_quantile_turnover(shuffled, "rsi") == pytest.approx(0.9, abs=0.02)


# ------------------------------------------------------------------------------------------------
# Calibration


def test_brier_score_and_bins_by_hand() -> None:
    frame = pl.DataFrame({
        "session_date": [date(2021, 1, 4)] * 6,
        "instrument_id": list("abcdef"),
        "forward_return": [0.01, -0.02, 0.0, 0.03, None, -0.01],
        "probability": [0.9, 0.2, 0.65, 1.0, 0.5, None],
    })
    c = calibration(frame, bins=4)
    # Used rows: (0.9, 1), (0.2, 0), (0.65, 0: a zero return is a miss), (1.0, 1).
    assert c["n"] == 4
    assert c["brier"] == pytest.approx((0.01 + 0.04 + 0.4225 + 0.0) / 4, abs=1e-15)
    assert c["base_rate"] == pytest.approx(0.5)
    assert c["brier_skill"] == pytest.approx(1 - c["brier"] / 0.25)
    assert [b["count"] for b in c["bins"]] == [1, 0, 1, 2]
    assert c["bins"][1]["mean_predicted"] is None
    assert c["bins"][3]["mean_predicted"] == pytest.approx(0.95)
    assert c["bins"][3]["observed_frequency"] == pytest.approx(1.0)
    assert c["ece"] == pytest.approx((0.2 + 0.65 + 2 * 0.05) / 4)
    with pytest.raises(DataValidationError, match=r"\[0, 1\]"):
        calibration(frame.with_columns(pl.lit(1.5).alias("probability")))


def test_calibration_counts_sum_to_rows_with_probability() -> None:
    frame = _panel(8, 25, seed=7).with_columns(
        pl.when(pl.int_range(pl.len()) % 6 == 0).then(None)
        .otherwise(1 / (1 + (-40 * pl.col("ml")).exp())).alias("probability")
    )
    c = calibration(frame)
    assert sum(b["count"] for b in c["bins"]) == c["n"] == frame["probability"].is_not_null().sum()


# ------------------------------------------------------------------------------------------------
# Groups


def _two_year_panel() -> pl.DataFrame:
    frame = _panel(40, 20, seed=8, start=date(2021, 12, 6), noise=2.0)
    days = frame["session_date"].unique().sort()
    labels = {d: (None if i % 10 == 9 else ("calm" if i % 2 else "stress")) for i, d in enumerate(days)}
    return frame.with_columns(
        pl.col("session_date").replace_strict(labels, return_dtype=pl.String).alias("regime")
    )


def test_by_year_and_by_regime() -> None:
    frame = _two_year_panel()
    daily = daily_ic(frame, "ml")
    years = ic_by_group(daily, "year", horizon_sessions=2)
    assert list(years) == ["2021", "2022"]
    y22 = daily.filter(pl.col("session_date").dt.year() == 2022)
    assert years["2022"] == ic_summary(y22, horizon_sessions=2)
    assert years["2021"]["n_sessions"] + years["2022"]["n_sessions"] == 40
    regimes = ic_by_group(daily, "regime", frame=frame, horizon_sessions=2)
    assert list(regimes) == ["calm", "stress"]
    assert regimes["calm"]["n_sessions"] + regimes["stress"]["n_sessions"] == 36  # 4 unlabelled
    calm_days = frame.filter(pl.col("regime") == "calm")["session_date"].unique()
    calm = daily.filter(pl.col("session_date").is_in(calm_days.implode()))
    assert regimes["calm"]["rank_ic_mean"] == pytest.approx(calm["rank_ic"].mean(), abs=1e-15)
    conflicting = frame.with_columns(
        pl.when(pl.col("instrument_id") == "I000").then(pl.lit("other")).otherwise(pl.col("regime")).alias("regime")
    )
    with pytest.raises(DataValidationError, match="one label per session"):
        ic_by_group(daily, "regime", frame=conflicting)


# ------------------------------------------------------------------------------------------------
# evaluate / write_report


def test_evaluate_layout_and_json_round_trip() -> None:
    frame = _two_year_panel().with_columns((1 / (1 + (-40 * pl.col("ml")).exp())).alias("probability"))
    result = evaluate(frame, ["ml", "rsi"], horizon_sessions=5)
    assert set(result) == {"conventions", "sample", "scores", "calibration", "reference", "oracle"}
    assert result["oracle"] is None
    assert result["sample"]["first_session"] == "2021-12-06" and result["sample"]["n_sessions"] == 40
    ml = result["scores"]["ml"]
    assert set(ml) == {"ic", "by_year", "by_regime", "quantiles", "turnover", "daily"}
    assert set(ml["by_regime"]) == {"calm", "stress"}
    assert len(ml["daily"]["session_date"]) == 40 and isinstance(ml["daily"]["session_date"][0], str)
    assert ml["ic"]["rank_ic_mean"] > 0.2 > abs(result["scores"]["rsi"]["ic"]["rank_ic_mean"])
    assert result["calibration"]["n"] == 800
    text = json.dumps(result, allow_nan=False)
    assert json.loads(text) == result
    without = evaluate(frame.drop("probability", "regime"), ["ml"], horizon_sessions=5)
    assert without["calibration"] is None and without["scores"]["ml"]["by_regime"] == {}


def test_write_report_writes_every_file_and_mentions_every_score(tmp_path: Path) -> None:
    frame = _two_year_panel().with_columns(
        (1 / (1 + (-40 * pl.col("ml")).exp())).alias("probability"),
        (pl.col("ml") * 0.5 + pl.col("rsi") * 0.01).alias("ensemble"),
    )
    result = evaluate(frame, ["ml", "rsi", "ensemble"], horizon_sessions=5)
    oracle = {"momentum": {"target_ic": 0.05, "oracle_rank_ic": 0.048}}
    paths = write_report(result, tmp_path / "report", "Assessment <test>", oracle=oracle)
    assert set(paths) == {"html", "json", "ic", "quantiles", "calibration"}
    for p in paths.values():
        assert p.parent == tmp_path / "report" and p.stat().st_size > 0
    for key in ("ic", "quantiles", "calibration"):
        assert paths[key].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = paths["html"].read_text()
    for score in ("ml", "rsi", "ensemble"):
        assert f"<td>{score}</td>" in page
    for needle in ('src="ic.png"', 'src="quantiles.png"', 'src="calibration.png"', "238", "Hansen-Hodrick",
                   "non-overlapping", "momentum", "Assessment &lt;test&gt;", "Brier"):
        assert needle in page
    written = json.loads(paths["json"].read_text())
    assert written["oracle"] == oracle
    assert {k: v for k, v in written.items() if k != "oracle"} == {
        k: v for k, v in result.items() if k != "oracle"
    }
    assert [p.name for p in tmp_path.iterdir()] == ["report"]  # the temporary directory is gone


def test_write_report_failure_keeps_the_previous_report(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    result = evaluate(_panel(15, 20), ["ml"], horizon_sessions=1)
    paths = write_report(result, tmp_path / "out", "first")
    before = {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir()}

    def boom(_: object) -> bytes:
        raise RuntimeError("renderer crashed")

    monkeypatch.setattr(report, "_calibration_png", boom)
    with pytest.raises(RuntimeError, match="renderer crashed"):
        write_report(result, tmp_path / "out", "second")
    assert {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir()} == before
    assert "first" in paths["html"].read_text()
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
