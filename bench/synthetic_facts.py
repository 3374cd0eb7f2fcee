"""Stylized facts of the synthetic world beside their published ranges, its planted signals'
oracle ICs, lifecycle counts, long-run stationarity and generation time.

    .venv/bin/python bench/synthetic_facts.py [--instruments 500] [--years 10] [--repeat 3]
                                              [--long-years 30] [--regions US,EU,JP]

Per region (US_EQ on XNYS, EU_EQ on XETR, JP_EQ on XTKS, one world seed) it generates the
market, measures every fact of ``prometheus_lib.data.synthetic.facts`` (Cont 2001; the
cross-section of a broad cap-weighted index) against its published range, prints the oracle
rank IC of each planted signal against its configured strength, the corporate actions and
fragility events, and then compares the first and last two years of a ``--long-years`` run
(stationarity). Generation is timed ``--repeat`` times in fresh objects (median and every run).
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time
from datetime import date

import polars as pl

from prometheus_lib.calendars.trading_calendar import TradingCalendar
from prometheus_lib.data.synthetic import SyntheticMarket, SyntheticMarketConfig
from prometheus_lib.data.synthetic.facts import format_facts, stylized_facts

REGIONS = {
    "US": ("US_EQ", "XNYS", "USD", (20.0, 300.0), 500.0, 1.0, 2.0e12, "SYN"),
    "EU": ("EU_EQ", "XETR", "EUR", (5.0, 250.0), 400.0, 0.5, 3.0e11, "SYNEU"),
    "JP": ("JP_EQ", "XTKS", "JPY", (300.0, 8000.0), 20000.0, 50.0, 4.0e13, "SYNJP"),
}


def config_for(region: str, n: int, start: date, seed: int) -> SyntheticMarketConfig:
    market_id, code, ccy, prices, split, reverse, cap, prefix = REGIONS[region]
    return SyntheticMarketConfig(market_id=market_id, calendar_code=code, currency=ccy, region=region, country=region,
                                 n_instruments=n, history_start=start, seed=seed, price_start_range=prices,
                                 split_above=split, reverse_split_below=reverse, largest_market_cap=cap, id_prefix=prefix)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instruments", type=int, default=500)
    parser.add_argument("--years", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--long-years", type=int, default=30)
    parser.add_argument("--regions", default="US,EU,JP")
    args = parser.parse_args()

    print(f"synthetic world: {args.instruments} instruments x {args.years} years per region, "
          f"run {time.strftime('%Y-%m-%d %H:%M')}")
    for i, region in enumerate(args.regions.split(",")):
        cfg = config_for(region, args.instruments, date(2015, 1, 5), seed=42 + i)
        calendar = TradingCalendar(cfg.calendar_code)
        sessions = calendar.sessions(calendar.next_session(date(2015, 1, 4)), date(2015 + args.years - 1, 12, 30))
        times = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            market = SyntheticMarket(cfg, calendar)
            prices = market.prices(sessions).frame
            times.append(time.perf_counter() - t0)
        actions = market.corporate_actions(sessions)
        regimes = market.true_regimes(sessions)
        print(f"\n=== {cfg.market_id} ({cfg.calendar_code}, {cfg.currency}): {prices.height:,} price rows, "
              f"{prices['instrument_id'].n_unique()} instruments over {len(sessions)} sessions")
        print(f"generation (prices, fresh object): median {statistics.median(times):.2f} s; runs "
              + ", ".join(f"{t:.2f}" for t in times))
        share = regimes.group_by("regime").len().with_columns(share=pl.col("len") / regimes.height)
        print("regime shares: " + ", ".join(f"{r} {s:.0%}" for r, _, s in share.sort("regime").iter_rows()))
        counts = dict(actions.group_by("action_type").len().iter_rows())
        halted = market.true_signals(sessions)["halted"].sum()
        events = market.true_fragility_events(sessions)
        print(f"corporate actions: {counts}; halted instrument-sessions: {halted}; fragility events: {events.height} "
              f"(median realised drawdown {events['realised_drawdown'].median():.1%})")
        lo, hi = cfg.price_start_range
        print(format_facts(stylized_facts(prices, regimes, price_range=(lo / 4, hi * 2))))
        t0 = time.perf_counter()
        ics = market.oracle_ics(sessions[:-30])
        print(f"\nplanted signals, oracle rank IC ({time.perf_counter() - t0:.1f} s):")
        for row in ics.iter_rows(named=True):
            target = "-" if row["target_ic"] is None else f"{row['target_ic']:.3f}"
            print(f"  {row['signal']:10s} horizon {row['horizon_sessions']:2d}  target {target:>6s}  "
                  f"realised {row['oracle_rank_ic']:.4f}  t {row['ic_t_stat']:.1f}  sessions {row['n_sessions']}")

    if args.long_years:
        cal = TradingCalendar("XNYS", start=date(1990, 1, 2))
        start = date(2024 - args.long_years + 1, 1, 3)
        cfg = config_for("US", min(args.instruments, 200), cal.next_session(start), seed=5)
        t0 = time.perf_counter()
        market = SyntheticMarket(cfg, cal)
        sessions = cal.sessions(cfg.history_start, date(2024, 12, 31))
        prices = market.prices(sessions).frame
        elapsed = time.perf_counter() - t0
        print(f"\n=== stationarity: {cfg.n_instruments} instruments x {args.long_years} years ({elapsed:.1f} s)")
        print(f"{'window':24s} {'largest w':>9s} {'top-10 w':>9s} {'median px':>9s} {'index vol':>9s} {'names':>6s}")
        years = sorted({d.year for d in sessions})
        for lo in range(years[0], years[-1], max(2, args.long_years // 6)):
            part = prices.filter(pl.col("session_date").dt.year().is_between(lo, lo + 1))
            f = {x.name: x.value for x in stylized_facts(part)}
            print(f"{lo}-{lo + 1:<19d} {f['largest index weight (mean over sessions)']:9.3f} "
                  f"{f['top-ten index weight (mean over sessions)']:9.3f} {f['median price level']:9.1f} "
                  f"{f['annualised volatility (all sessions)']:9.3f} {part['instrument_id'].n_unique():6d}")
    print(f"\npeak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
