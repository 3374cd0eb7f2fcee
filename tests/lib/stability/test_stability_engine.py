"""The stability engine and the soft-target classifier (prometheus_lib/stability).

On a synthetic market's real dbt panels (60 instruments, 2016-2020): no look-ahead (every array
perturbed after T, or the panel cut at T, leaves every row at or before T bit-identical), valid
rows (components, overall score and class probabilities in range, one row per key, canonical
JSON), range independence, and the truth report (planted fragility precursors are less stable).
On small hand-made panels: each component's direction and exact values, the history rule, and
the classes of textbook cases. A 500 instruments x 2,500 sessions panel times both.
"""

from __future__ import annotations

import json
from datetime import date

import numpy as np
import polars as pl
import pytest
from market_state_data import market_config, perturbed_after, synthetic_panel, truth_frame
from polars.testing import assert_frame_equal

from prometheus_lib.config.models import StabilityConfig
from prometheus_lib.market_state.checks import check_probabilities, check_values
from prometheus_lib.market_state.panel import MarketPanel
from prometheus_lib.market_state.records import dumps
from prometheus_lib.stability import (
    COMPONENTS,
    SOFT_TARGET_CLASSES,
    SoftTargetClassifier,
    StabilityEngine,
)
from prometheus_lib.stability.engine import component_weights
from prometheus_lib.storage.catalog import get_table

pytestmark = pytest.mark.xdist_group("market_state_us")

CONFIG = StabilityConfig()
KEY = ["entity_type", "entity_id", "session_date"]
MARKET_ID = "US_EQ"
CUT = date(2019, 6, 28)


# ------------------------------------------------------------------ helpers
def stand_in_fragility(panel: MarketPanel) -> pl.DataFrame:
    """A ``fragility_measures``-shaped frame from the panel up to T: rising vol, volume below its mean so far."""
    seen = np.cumsum(np.isfinite(panel.volume), axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        volume_so_far = np.nancumsum(panel.volume, axis=0) / seen
        x = 3.0 * np.log(panel.vol_21 / panel.vol_63) - 2.0 * np.log(panel.volume / volume_so_far)
    p = 1.0 / (1.0 + np.exp(-(x - 3.0)))
    r, c = np.nonzero(np.isfinite(p))
    return pl.DataFrame({
        "entity_type": "INSTRUMENT",
        "entity_id": np.asarray(panel.instrument_ids, dtype=object)[c].tolist(),
        "session_date": pl.Series(panel.sessions[r]).cast(pl.Date),
        "market_id": MARKET_ID,
        "fragility_score": p[r, c],
    })


def stand_in_regimes(panel: MarketPanel) -> pl.DataFrame:
    """A ``regimes``-shaped frame from the panel at T alone: P(crisis) rises with the average correlation."""
    crisis = np.clip(np.nan_to_num(panel.avg_correlation, nan=0.0), 0.0, 1.0) * 0.8
    return pl.DataFrame({
        "market_id": MARKET_ID, "session_date": pl.Series(panel.sessions).cast(pl.Date),
        "regime_label": "calm",
        "probabilities_json": [dumps({"calm": 1.0 - c, "volatile": 0.0, "crisis": c}) for c in crisis.tolist()],
    })


def components(vectors: pl.DataFrame) -> pl.DataFrame:
    """``vectors`` with components_json unnested into one column per component."""
    return vectors.with_columns(pl.col("components_json").str.json_decode(
        pl.Struct({name: pl.Float64 for name in COMPONENTS}))).unnest("components_json")


def up_to(frame: pl.DataFrame, cut: date) -> pl.DataFrame:
    return frame.filter(pl.col("session_date") <= cut)


def hand_panel(returns: dict[str, np.ndarray], *, vol_21: dict[str, np.ndarray] | None = None,
               volume: dict[str, np.ndarray] | None = None, market: np.ndarray | None = None) -> MarketPanel:
    """A hand-made panel: per instrument its log returns (NaN = not listed); vol_21 0.2 and
    volume 1e6 unless given; close rebuilt from the returns; the market return seeded noise."""
    ids = sorted(returns)
    t = len(next(iter(returns.values())))
    days = np.busday_offset(np.datetime64("2020-01-02"), np.arange(t), roll="forward")
    ret = np.column_stack([returns[i] for i in ids])
    listed = np.isfinite(ret) | np.isfinite(np.vstack([ret[1:], np.full((1, len(ids)), np.nan)]))
    close = np.where(listed, 100.0 * np.exp(np.nancumsum(ret, axis=0)), np.nan)
    ret = np.where(listed, ret, np.nan)

    def column(given: dict[str, np.ndarray] | None, default: float) -> np.ndarray:
        a = np.column_stack([(given or {}).get(i, np.full(t, default)) for i in ids])
        return np.where(listed, a, np.nan)

    flat = np.full((t, len(ids)), np.nan)
    return MarketPanel(
        market_id=MARKET_ID, region="US", sessions=days.astype("datetime64[D]"), instrument_ids=tuple(ids),
        sectors=(None,) * len(ids), close=close, volume=column(volume, 1e6), log_return=ret,
        vol_21=column(vol_21, 0.2), vol_63=flat, vol_ewma=flat, downside_vol_63=flat, beta=flat, residual_vol=flat,
        market_return=np.random.default_rng(3).normal(0.0, 0.01, t) if market is None else market,
        avg_correlation=np.full(t, 0.3))


def last_row(panel: MarketPanel, config: StabilityConfig = CONFIG) -> dict[str, dict]:
    """Each instrument's components and overall score at the panel's last session."""
    days = panel.session_dates()
    rows = components(StabilityEngine(config).run(panel, days[-1], days[-1]).vectors)
    return {r["entity_id"]: r for r in rows.iter_rows(named=True)}


def noise(t: int, scale: float = 0.01, seed: int = 5) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.0, scale, t)


# ------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def us():
    """The synthetic US market's panel (60 instruments, 2016-2020) and the market (its truth)."""
    return synthetic_panel(market_config("US", 60), date(2020, 12, 31))


@pytest.fixture(scope="module")
def us_runs(us):
    """Stability and soft-target results over the whole panel (stand-in fragility and regimes)."""
    panel, _ = us
    days = panel.session_dates()
    stability = StabilityEngine(CONFIG).run(panel, days[0], days[-1])
    classes = SoftTargetClassifier(CONFIG).run(MARKET_ID, stability.vectors, stand_in_fragility(panel),
                                               stand_in_regimes(panel))
    return stability, classes


# ------------------------------------------------------------------ look-ahead
def test_rows_up_to_t_ignore_everything_after_t(us, us_runs) -> None:
    # Arrange
    panel, _ = us
    stability, classes = us_runs
    days = panel.session_dates()
    noisy = perturbed_after(panel, CUT)
    cut = panel.truncated(CUT)

    # Act
    noisy_stability = StabilityEngine(CONFIG).run(noisy, days[0], days[-1])
    noisy_classes = SoftTargetClassifier(CONFIG).run(MARKET_ID, noisy_stability.vectors, stand_in_fragility(noisy),
                                                     stand_in_regimes(noisy))
    cut_stability = StabilityEngine(CONFIG).run(cut, days[0], CUT)
    cut_classes = SoftTargetClassifier(CONFIG).run(MARKET_ID, cut_stability.vectors, stand_in_fragility(cut),
                                                   stand_in_regimes(cut))

    # Assert
    expected_vectors, expected_classes = up_to(stability.vectors, CUT), up_to(classes.classes, CUT)
    assert expected_vectors.height > 30_000
    assert not noisy_stability.vectors.filter(pl.col("session_date") > CUT).equals(
        stability.vectors.filter(pl.col("session_date") > CUT))  # the noise did reach the engine
    assert_frame_equal(up_to(noisy_stability.vectors, CUT), expected_vectors)
    assert_frame_equal(up_to(noisy_classes.classes, CUT), expected_classes)
    assert_frame_equal(cut_stability.vectors, expected_vectors)
    assert_frame_equal(cut_classes.classes, expected_classes)
    n = len(cut_stability.sessions)
    assert cut_stability.decisions == stability.decisions[:n] == noisy_stability.decisions[:n]
    assert cut_classes.decisions == classes.decisions[:n] == noisy_classes.decisions[:n]


# ------------------------------------------------------------------ validity
def test_stability_rows_are_valid(us, us_runs) -> None:
    # Arrange
    panel, _ = us
    stability, _ = us_runs
    vectors = stability.vectors
    wide = components(vectors)
    weights = component_weights(CONFIG)

    # Act
    outcome = check_values(vectors, KEY, {"overall_score": (0.0, 1.0)}, {"components_json": (0.0, 1.0)})
    weighted = sum(weights[c] * wide[c] for c in COMPONENTS) / sum(weights.values())

    # Assert
    assert outcome.passed, outcome.description
    assert vectors.schema == get_table("stability_vectors").polars_schema
    assert set(json.loads(vectors["components_json"][0])) == set(COMPONENTS)
    assert all(dumps(json.loads(s)) == s for s in vectors["components_json"].to_list())  # canonical JSON
    assert np.abs(weighted.to_numpy() - vectors["overall_score"].to_numpy()).max() < 1e-12
    assert vectors.select(pl.col(c).n_unique() for c in ("entity_type", "market_id", "config_hash")).row(0) == (1, 1, 1)
    assert vectors["config_hash"][0] == CONFIG.config_hash()
    assert stability.sessions == sorted(set(vectors["session_date"].to_list()))
    assert len(stability.decisions) == len(stability.inputs) == len(stability.sessions)
    last = stability.decisions[-1]
    least = vectors.filter(pl.col("session_date") == stability.sessions[-1]).sort("overall_score", "entity_id").head(5)
    assert last["n"] == least.height or last["n"] > 5
    assert [i for i, _ in last["least_stable"]] == least["entity_id"].to_list()
    # An instrument is scored once it is listed with a vol_21 and 21 returns.
    listed = int(panel.listed.sum())
    assert 0.9 * listed < vectors.height <= listed


def test_soft_target_rows_are_valid(us_runs) -> None:
    # Arrange
    stability, result = us_runs
    classes = result.classes
    probs = classes["probabilities_json"].str.json_decode(pl.Struct({k: pl.Float64 for k in SOFT_TARGET_CLASSES}))
    p = probs.struct.unnest().to_numpy()

    # Act
    outcome = check_probabilities(classes, KEY, "probabilities_json", SOFT_TARGET_CLASSES, "soft_target_class")
    values = check_values(classes, KEY, {c: (0.0, 1.0) for c in ("soft_target_score", "instability",
                                                                  "high_fragility", "complacent_pricing")})

    # Assert
    assert outcome.passed, outcome.description
    assert values.passed, values.description
    assert classes.schema == get_table("soft_target_classes").polars_schema
    assert classes.height == stability.vectors.height
    assert classes.select(KEY).equals(stability.vectors.select(KEY).sort("session_date", "entity_id"))
    assert ((p >= 0.0) & (p <= 1.0)).all() and np.abs(p.sum(axis=1) - 1.0).max() <= 1e-12
    assert (np.asarray(SOFT_TARGET_CLASSES)[p.argmax(axis=1)] == classes["soft_target_class"].to_numpy()).all()
    assert (classes["soft_target_score"].to_numpy() == p[:, 3]).all()
    assert all(dumps(json.loads(s)) == s for s in classes["probabilities_json"].to_list())
    assert (classes["weak_profile"] == (classes["instability"] > CONFIG.weak_profile_instability)).all()
    counts = classes["soft_target_class"].value_counts()
    print("\nclass counts (stand-in fragility):", dict(counts.iter_rows()))
    assert set(counts["soft_target_class"]) == set(SOFT_TARGET_CLASSES)
    last = result.decisions[-1]
    assert sum(last["counts"].values()) == result.inputs[-1]["n"]
    assert [i for i, _ in last["targetable"]] == (
        classes.filter((pl.col("session_date") == result.sessions[-1]) & (pl.col("soft_target_class") == "TARGETABLE"))
        .sort(["soft_target_score", "entity_id"], descending=[True, False]).head(5)["entity_id"].to_list())


# ------------------------------------------------------------------ determinism and ranges
def test_a_sub_range_gives_the_same_rows_as_the_whole_range(us, us_runs) -> None:
    # Arrange
    panel, _ = us
    stability, classes = us_runs
    start, end = date(2018, 3, 1), date(2018, 9, 28)
    days = panel.session_dates()

    # Act
    again = StabilityEngine(CONFIG).run(panel, days[0], days[-1])
    part = StabilityEngine(CONFIG).run(panel, start, end)
    part_classes = SoftTargetClassifier(CONFIG).run(MARKET_ID, part.vectors, stand_in_fragility(panel),
                                                    stand_in_regimes(panel))

    # Assert
    def window(frame: pl.DataFrame) -> pl.DataFrame:
        return frame.filter(pl.col("session_date").is_between(start, end))

    assert_frame_equal(again.vectors, stability.vectors)
    assert part.sessions[0] >= start and part.sessions[-1] <= end
    assert_frame_equal(part.vectors, window(stability.vectors))
    assert_frame_equal(part_classes.classes, window(classes.classes))
    k = stability.sessions.index(part.sessions[0])
    assert part.decisions == stability.decisions[k:k + len(part.sessions)]
    assert part_classes.decisions == classes.decisions[k:k + len(part.sessions)]


def test_an_empty_range_gives_empty_frames(us) -> None:
    # Arrange
    panel, _ = us

    # Act
    stability = StabilityEngine(CONFIG).run(panel, date(2030, 1, 1), date(2030, 12, 31))
    classes = SoftTargetClassifier(CONFIG).run(MARKET_ID, stability.vectors, None)

    # Assert
    assert stability.vectors.height == 0 and stability.sessions == [] and stability.decisions == []
    assert classes.classes.height == 0 and classes.classes.schema == get_table("soft_target_classes").polars_schema


# ------------------------------------------------------------------ hand-made panels
T = 150


def test_exact_components_of_a_steady_instrument_and_a_steady_fall() -> None:
    # Arrange: A rises 0.1 % a session on constant vol and volume; B falls 1 % a session.
    panel = hand_panel({"A": np.full(T, 0.001), "B": np.full(T, -0.01)}, market=noise(T))

    # Act
    rows = last_row(panel)

    # Assert
    a, b = rows["A"], rows["B"]
    assert a["volatility_of_volatility"] == b["volatility_of_volatility"] == 1.0  # vol_21 never moved
    assert a["liquidity_stability"] == b["liquidity_stability"] == 1.0  # volume never moved
    assert a["correlation_drift"] == 0.5  # a flat series has no correlation: neutral, not "most stable"
    assert a["volatility_level"] == b["volatility_level"] == 0.75  # tied in the cross-section, at its own level
    assert a["drawdown_state"] == 1.0  # at its high
    drawdown = 1.0 - np.exp(-0.01 * (CONFIG.window_sessions - 1))
    assert b["drawdown_state"] == pytest.approx(1.0 - np.tanh(drawdown / 0.15), abs=1e-12)
    assert b["overall_score"] < a["overall_score"]


def test_an_instrument_whose_vol_doubles_is_less_stable_in_both_vol_components() -> None:
    # Arrange
    vol = np.full(T, 0.2)
    vol[-CONFIG.short_window_sessions:] = 0.4
    ret = noise(T)
    doubled = ret.copy()
    doubled[-CONFIG.short_window_sessions:] *= 2.0
    panel = hand_panel({"CALM": ret, "DOUBLED": doubled}, vol_21={"DOUBLED": vol})

    # Act
    rows = last_row(panel)

    # Assert
    calm, doubled_row = rows["CALM"], rows["DOUBLED"]
    assert doubled_row["volatility_level"] < calm["volatility_level"]
    assert doubled_row["volatility_of_volatility"] < calm["volatility_of_volatility"] == 1.0
    assert doubled_row["overall_score"] < calm["overall_score"]


def test_collapsing_volume_lowers_liquidity_stability() -> None:
    # Arrange
    volume = np.full(T, 1e6)
    volume[-CONFIG.short_window_sessions:] = 1e5
    panel = hand_panel({"STEADY": noise(T), "DRYING": noise(T, seed=6)}, volume={"DRYING": volume})

    # Act
    rows = last_row(panel)

    # Assert
    assert rows["DRYING"]["liquidity_stability"] < 0.5 < rows["STEADY"]["liquidity_stability"] == 1.0


def test_nothing_traded_over_the_window_means_no_liquidity_stability() -> None:
    # Arrange
    volume = np.full(T, 1e6)
    volume[-CONFIG.window_sessions:] = 0.0
    panel = hand_panel({"HALTED": noise(T), "OK": noise(T, seed=6)}, volume={"HALTED": volume})

    # Act
    rows = last_row(panel)

    # Assert
    assert rows["HALTED"]["liquidity_stability"] == 0.0


def test_decoupling_from_the_market_lowers_correlation_drift() -> None:
    # Arrange: both track the market, then one switches to its own news for the short window.
    market = noise(T, seed=7)
    own = noise(T, seed=8)
    decoupled = market + 0.2 * own
    decoupled[-CONFIG.short_window_sessions:] = own[-CONFIG.short_window_sessions:]
    panel = hand_panel({"TRACKS": market + 0.2 * own, "DECOUPLES": decoupled}, market=market)

    # Act
    rows = last_row(panel)

    # Assert
    assert rows["DECOUPLES"]["correlation_drift"] < 0.5 < rows["TRACKS"]["correlation_drift"]


def test_an_instrument_gets_rows_once_it_has_enough_returns() -> None:
    # Arrange: EARLY lists at session 0, LATE at session 100 (each has its first return the session after).
    early, late = noise(T), noise(T, seed=9)
    early[0] = np.nan
    late[:101] = np.nan
    panel = hand_panel({"EARLY": early, "LATE": late})
    days = panel.session_dates()

    # Act
    vectors = StabilityEngine(CONFIG).run(panel, days[0], days[-1]).vectors

    # Assert
    first = vectors.group_by("entity_id").agg(pl.col("session_date").min()).sort("entity_id")["session_date"].to_list()
    assert first == [days[CONFIG.short_window_sessions], days[100 + CONFIG.short_window_sessions]]


def test_embeddings_are_not_available_yet() -> None:
    panel = hand_panel({"A": noise(T)})
    with pytest.raises(NotImplementedError, match="embedding"):
        StabilityEngine(CONFIG).run(panel, date(2020, 1, 1), date(2020, 12, 31), embeddings=np.zeros((T, 1, 4)))


def test_textbook_soft_target_cases() -> None:
    # Arrange: CALM steady; PEAK steady and near its high; FALLING in a steady fall; NOFRAG has no fragility row.
    panel = hand_panel({"CALM": np.full(T, 0.001), "PEAK": np.full(T, 0.001), "FALLING": np.full(T, -0.02),
                        "NOFRAG": np.full(T, -0.02)}, market=noise(T))
    day = panel.session_dates()[-1]
    vectors = StabilityEngine(CONFIG).run(panel, day, day).vectors
    fragility = pl.DataFrame({"entity_id": ["CALM", "PEAK", "FALLING"], "session_date": [day] * 3,
                              "fragility_score": [0.02, 0.9, 0.9]})
    crisis = pl.DataFrame({"market_id": [MARKET_ID], "session_date": [day],
                           "probabilities_json": [dumps({"calm": 0.0, "volatile": 0.0, "crisis": 1.0})]})

    # Act
    calm_market = SoftTargetClassifier(CONFIG).run(MARKET_ID, vectors, fragility)
    in_crisis = SoftTargetClassifier(CONFIG).run(MARKET_ID, vectors, fragility, crisis)

    # Assert
    rows = {r["entity_id"]: r for r in calm_market.classes.iter_rows(named=True)}
    assert rows["CALM"]["soft_target_class"] == "STABLE"
    assert rows["PEAK"]["soft_target_class"] == "TARGETABLE" and rows["PEAK"]["soft_target_score"] > 0.9
    assert rows["FALLING"]["soft_target_class"] == "FRAGILE"
    assert rows["FALLING"]["instability"] > rows["PEAK"]["instability"]
    assert rows["NOFRAG"]["high_fragility"] == 0.0 and rows["NOFRAG"]["soft_target_class"] in ("STABLE", "WATCH")
    assert calm_market.decisions[0]["targetable"][0][0] == "PEAK"
    assert calm_market.inputs[0] == {"n": 4, "with_fragility": 3, "p_crisis": None}
    fragile = {r["entity_id"]: json.loads(r["probabilities_json"])["FRAGILE"]
               for r in in_crisis.classes.iter_rows(named=True)}
    assert fragile["PEAK"] > json.loads(rows["PEAK"]["probabilities_json"])["FRAGILE"]
    assert fragile["CALM"] == pytest.approx(json.loads(rows["CALM"]["probabilities_json"])["FRAGILE"], rel=0.2)


# ------------------------------------------------------------------ against the truth
def test_planted_precursors_are_less_stable(us, us_runs) -> None:
    # Arrange
    from sklearn.metrics import roc_auc_score

    panel, market = us
    stability, _ = us_runs
    truth = truth_frame(market, panel, "signals").select(pl.col("instrument_id").alias("entity_id"), "session_date",
                                                         "fragility_phase")
    joined = stability.vectors.join(truth, on=["entity_id", "session_date"], how="inner")

    # Act
    by_phase = dict(joined.group_by("fragility_phase").agg(pl.col("overall_score").mean()).sort("fragility_phase")
                    .iter_rows())
    rows = joined.filter(pl.col("fragility_phase").is_in([0, 1]))
    auc = roc_auc_score((rows["fragility_phase"] == 1).to_numpy(), 1.0 - rows["overall_score"].to_numpy())

    # Assert
    print(f"\nmean overall stability by fragility phase (0 none, 1 precursor, 2 crash, 3 recovery): "
          f"{ {k: round(v, 3) for k, v in by_phase.items()} }; ROC AUC of 1 - overall, precursor vs none: {auc:.3f}")
    assert by_phase[1] < by_phase[0]
    assert by_phase[2] < by_phase[0] - 0.1 and by_phase[3] < by_phase[0] - 0.1
    assert auc > 0.55


# ------------------------------------------------------------------ config
@pytest.mark.parametrize("fields", [{"short_window_sessions": 63, "window_sessions": 63},
                                    {f"{c}_weight": 0.0 for c in COMPONENTS}])
def test_config_rejects_inconsistent_windows_and_weights(fields: dict) -> None:
    with pytest.raises(ValueError, match="stability"):
        StabilityConfig(**fields)
