"""Specification by a peer: the same orders on the same closes give vectorbt's fills and equity curve.

A deterministic random order list (10 instruments x 250 sessions, buys and sells of whole
shares, filled at the close) goes through our ``BacktestBroker`` (and so the
``MarketSimulator``) and through ``vectorbt.Portfolio.from_orders`` with one shared cash
account. The cost definitions are the same on both sides, checked here rather than assumed:

* slippage: a buy fills at ``close * (1 + bps / 1e4)``, a sell at ``close * (1 - bps / 1e4)``
  (our ``fixed_bps`` slippage; vectorbt's ``slippage``);
* commission: ``bps / 1e4`` of the value at the slipped price (our ``bps`` commission;
  vectorbt's ``fees``), or a flat fee per fill (our ``per_share`` commission with no per-share
  rate, the flat fee as its minimum and a 100 % cap, on fills worth more than the fee;
  vectorbt's ``fixed_fees``);
* funding: a buy larger than cash fills the whole shares that cash pays for, fee included
  (our buying power at ``max_leverage = 1``; vectorbt's ``allow_partial`` with
  ``size_granularity = 1``);
* sequence: sells before buys, each group in instrument order (our simulator; an explicit
  vectorbt ``call_seq``).

Equity and cash agree to 1e-8 relative (in practice ~1e-15: only the order of float sums
differs); fill sizes agree exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import numpy as np
import pandas as pd
import pytest
from panel_data import CALENDAR

from prometheus_lib.config.models import CommissionConfig, ExecutionConfig, SlippageConfig
from prometheus_lib.execution.backtest_broker import BacktestBroker
from prometheus_lib.execution.domain import InstrumentId, Order, OrderId, OrderSide, PortfolioId
from prometheus_lib.execution.market import InstrumentIndex, MarketSnapshot

vbt = pytest.importorskip("vectorbt")

SESSIONS = CALENDAR.sessions(date(2023, 1, 3), date(2023, 12, 29))[:250]
IDS = tuple(f"VBT{k:02d}" for k in range(10))
BOOK = PortfolioId("VBT_BOOK")
SLIPPAGE_BPS = 5.0
COMMISSION_BPS = 10.0
FIXED_FEE = 1.25


@dataclass(frozen=True)
class Case:
    """One comparison: our commission config, vectorbt's fee arguments, starting cash."""

    name: str
    commission: CommissionConfig
    vbt_fees: dict[str, float]
    initial_cash: float


CASES = [
    Case("bps_commission", CommissionConfig(model="bps", bps=COMMISSION_BPS),
         {"fees": COMMISSION_BPS / 1e4}, 5_000_000.0),
    Case("fixed_fee_per_fill", CommissionConfig(model="per_share", per_share=0.0, minimum=FIXED_FEE, maximum_pct=1.0),
         {"fixed_fees": FIXED_FEE}, 5_000_000.0),
    # Little cash: many buys are cut to what cash pays for.
    Case("bps_commission_cash_limited", CommissionConfig(model="bps", bps=COMMISSION_BPS),
         {"fees": COMMISSION_BPS / 1e4}, 60_000.0),
]


def _closes(seed: int = 2024) -> np.ndarray:
    """Closes (sessions x instruments): geometric random walks from 50."""
    rng = np.random.default_rng(seed)
    return 50.0 * np.exp(np.cumsum(rng.normal(0.0003, 0.02, (len(SESSIONS), len(IDS))), axis=0))


def _run_ours(
    case: Case, closes: np.ndarray, seed: int = 7
) -> tuple[np.ndarray, list[float], list[float], list[tuple]]:
    """Draw each session's orders and run them through our broker; return the orders and results.

    Buys: 15 % of (session, instrument) pairs, 1..299 shares. Sells: 10 %, of a held
    instrument, 1..half the holding (+1), so the book stays long and nothing is sold short.
    The orders depend on our book only through what is held; vectorbt gets the same list.
    """
    rng = np.random.default_rng(seed)
    config = ExecutionConfig(
        fill_at="close", slippage=SlippageConfig(model="fixed_bps", bps=SLIPPAGE_BPS), commission=case.commission,
        max_participation=None, remainder="cancel", lot_size=1, min_trade_value=0.0, max_leverage=1.0,
    )
    broker = BacktestBroker(config, BOOK, case.initial_cash, instruments=IDS)
    index = InstrumentIndex.of(IDS)
    sizes = np.zeros_like(closes)
    equity, cash, fills = [], [], []
    nan = np.full(len(IDS), np.nan)
    for t, session in enumerate(SESSIONS):
        held = broker.positions()
        for k, iid in enumerate(IDS):
            u = rng.random()
            quantity = held[InstrumentId(iid)].quantity if InstrumentId(iid) in held else 0.0
            if u < 0.15:
                sizes[t, k] = float(rng.integers(1, 300))
            elif u < 0.25 and quantity >= 1:
                sizes[t, k] = -float(rng.integers(1, int(quantity) // 2 + 2))
            if sizes[t, k]:
                side = OrderSide.BUY if sizes[t, k] > 0 else OrderSide.SELL
                order_id = OrderId(f"{session}:{iid}")
                broker.submit(Order(order_id, BOOK, InstrumentId(iid), side, abs(sizes[t, k]), session))
        market = MarketSnapshot(session, index, open=closes[t], high=nan, low=nan, close=closes[t],
                                volume=np.full(len(IDS), 1e12), daily_volatility=nan,
                                halted=np.zeros(len(IDS), dtype=bool))
        for f in broker.process_fills(market):
            fills.append((t, IDS.index(str(f.instrument_id)), f.signed_quantity, f.price, f.commission))
        account = broker.account_state()
        equity.append(account.equity)
        cash.append(account.cash)
    return sizes, equity, cash, fills


def _call_sequence(sizes: np.ndarray) -> np.ndarray:
    # Our simulator's sequence: sells first, then buys, each in instrument order; then the rest.
    out = np.empty(sizes.shape, dtype=np.int64)
    cols = np.arange(sizes.shape[1])
    for t, row in enumerate(sizes):
        out[t] = np.concatenate([cols[row < 0], cols[row > 0], cols[row == 0]])
    return out


def _vectorbt(case: Case, closes: np.ndarray, sizes: np.ndarray):
    close = pd.DataFrame(closes, index=pd.DatetimeIndex(SESSIONS), columns=list(IDS))
    size = close * 0.0 + np.where(sizes == 0, np.nan, sizes)
    return vbt.Portfolio.from_orders(
        close, size, size_type="amount", direction="both", slippage=SLIPPAGE_BPS / 1e4, init_cash=case.initial_cash,
        cash_sharing=True, group_by=True, call_seq=_call_sequence(sizes), size_granularity=1.0,
        allow_partial=True, freq="1D", **case.vbt_fees,
    )


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_orders_with_same_prices_and_costs_reproduce_vectorbt_equity_curve(case: Case) -> None:
    # Arrange
    closes = _closes()

    # Act
    sizes, equity, cash, fills = _run_ours(case, closes)
    pf = _vectorbt(case, closes, sizes)

    # Assert
    np.testing.assert_allclose(equity, pf.value().to_numpy(), rtol=1e-8, atol=0.0)
    np.testing.assert_allclose(cash, pf.cash().to_numpy(), rtol=1e-8, atol=1e-8)
    records = pf.orders.records_arr  # side 0 is a buy, 1 a sell
    theirs = sorted(
        (int(r["idx"]), int(r["col"]), float(r["size"]) * (1 if r["side"] == 0 else -1),
         float(r["price"]), float(r["fees"]))
        for r in records
    )
    ours = sorted(fills)
    assert len(ours) == len(theirs) > 300
    assert [(t, k, q) for t, k, q, _, _ in ours] == [(t, k, q) for t, k, q, _, _ in theirs]
    np.testing.assert_allclose([f[3] for f in ours], [f[3] for f in theirs], rtol=1e-12)
    np.testing.assert_allclose([f[4] for f in ours], [f[4] for f in theirs], rtol=1e-9)


def test_cash_limited_case_with_small_cash_cuts_some_buys() -> None:
    # Arrange: the third case is only a test of funding if cash really binds in it.
    case = CASES[2]

    # Act
    sizes, _, _, fills = _run_ours(case, _closes())

    # Assert
    filled = {(t, k): q for t, k, q, _, _ in fills}
    wanted = {(t, k): q for t, k in zip(*np.nonzero(sizes)) for q in [sizes[t, k]]}
    cut = [key for key, q in wanted.items() if q > 0 and filled.get(key, 0.0) < q]
    assert len(cut) > 20
