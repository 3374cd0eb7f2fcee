"""Who trades in a synthetic market, and when: slots, their occupants and static attributes.

A market has ``n_instruments`` *slots*. Each slot holds one listed company at a time: when its
occupant delists (a takeover or a going-private, at a yearly hazard ``delisting_rate``), a new
company lists in the slot after a gap (an IPO). Delisted companies keep their history (no
survivorship bias). A slot has a size rank: caps follow a Zipf-Mandelbrot law whose exponent is
solved so that the ten largest slots hold ``top10_share`` of the index and the largest at most
``largest_share``; an occupant's own target cap is
its slot's times log-normal noise, so the cross-section is stationary however long the run.

Every draw comes from a generator keyed by the market's seed and a fixed key (the slot, or a
chunk of 64 occupants), so an occupant's attributes do not depend on how many there are.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from prometheus_lib.data.synthetic.config import SyntheticMarketConfig

__all__ = ["SECTORS", "Universe", "build_universe", "zipf_exponent"]

# (sector, industries). The first eleven follow GICS; the rest let a config ask for up to 20.
SECTORS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Technology", ("Software", "Semiconductors", "IT Services")),
    ("Financials", ("Banks", "Insurance", "Capital Markets")),
    ("Health Care", ("Pharmaceuticals", "Biotechnology", "Medical Devices")),
    ("Consumer Discretionary", ("Specialty Retail", "Automobiles", "Hotels & Leisure")),
    ("Consumer Staples", ("Food Products", "Beverages", "Household Products")),
    ("Industrials", ("Machinery", "Aerospace & Defense", "Air Freight & Logistics")),
    ("Energy", ("Oil & Gas Producers", "Energy Equipment", "Refining & Marketing")),
    ("Materials", ("Chemicals", "Metals & Mining", "Containers & Packaging")),
    ("Utilities", ("Electric Utilities", "Gas Utilities", "Water Utilities")),
    ("Real Estate", ("Office REITs", "Residential REITs", "Real Estate Services")),
    ("Communication Services", ("Telecom Carriers", "Media", "Interactive Media")),
    ("Transportation", ("Railroads", "Airlines", "Trucking")),
    ("Capital Goods", ("Electrical Equipment", "Building Products", "Construction & Engineering")),
    ("Media & Entertainment", ("Broadcasting", "Publishing", "Entertainment")),
    ("Software & Services", ("Application Software", "Systems Software", "Data Processing")),
    ("Semiconductors & Equipment", ("Chip Design", "Semiconductor Equipment", "Foundries")),
    ("Pharmaceuticals & Life Sciences", ("Life Sciences Tools", "Generic Drugs", "Specialty Pharma")),
    ("Insurance", ("Property & Casualty", "Life Insurance", "Reinsurance")),
    ("Automobiles & Components", ("Auto Parts", "Car Makers", "Tires & Rubber")),
    ("Food & Beverage", ("Packaged Foods", "Brewers", "Agricultural Products")),
)

_NAME_PREFIXES = (
    "Alder", "Birch", "Cobalt", "Delta", "Ember", "Falcon", "Granite", "Harbor", "Iris", "Juniper",
    "Kestrel", "Lumen", "Meridian", "Northgate", "Onyx", "Pioneer", "Quarry", "Redwood", "Summit",
    "Tidewater", "Union", "Vantage", "Westbrook", "Xenon", "Yardley", "Zephyr", "Atlas", "Beacon",
    "Cedar", "Dover", "Evergreen", "Frontier", "Glacier", "Highland", "Ironwood", "Keystone",
    "Lakeside", "Monarch", "Nimbus", "Orchard",
)
_NAME_ROOTS = (
    "Systems", "Dynamics", "Networks", "Energy", "Foods", "Labs", "Logistics", "Materials",
    "Devices", "Capital", "Therapeutics", "Brands", "Motors", "Power", "Media", "Software",
    "Metals", "Water", "Realty", "Health", "Robotics", "Analytics", "Aerospace", "Chemicals",
    "Pharma", "Telecom", "Retail", "Industries", "Semiconductor", "Bancorp", "Partners",
    "Resources", "Instruments", "Biosciences", "Solutions", "Outfitters", "Airlines", "Mining",
    "Utilities", "Textiles",
)
_NAME_SUFFIXES = ("Inc.", "Corp.", "Holdings", "Group", "Co.", "Ltd.", "plc", "Technologies")

_STREAM_REFERENCE = 0
# Zipf-Mandelbrot: caps fall like (rank + 6)**-a, so the few largest names are closer together
# than a pure power law makes them (as in broad real indices) and no single name runs away.
ZIPF_OFFSET = 6.0
_CHUNK = 64
_N_ATTR = 14  # normal draws per occupant (see _attributes)


@dataclass(frozen=True, slots=True)
class Universe:
    """Static attributes of every occupant (index ``j``) and the slots' lifecycle schedule."""

    n_slots: int
    slot: np.ndarray  # (M,) slot of occupant j
    listing_k: np.ndarray  # (M,) session ordinal of the first price
    delisting_k: np.ndarray  # (M,) session ordinal of the last price, -1 when it outlives the calendar
    instrument_ids: tuple[str, ...]
    issuer_ids: tuple[str, ...]
    tickers: tuple[str, ...]
    names: tuple[str, ...]
    sector: np.ndarray  # (M,) index into SECTORS
    industry: tuple[str, ...]
    beta: np.ndarray
    styles: np.ndarray  # (M, 3): size, value, quality exposures
    idio_vol: np.ndarray  # annualised unconditional idiosyncratic vol
    target_log_cap: np.ndarray
    start_price: np.ndarray
    shares_at_listing: np.ndarray  # at the target cap, before growing with the market (see market._listing_shares)
    turnover: np.ndarray  # daily share turnover at normal liquidity
    dividend_yield: np.ndarray  # 0 for non-payers
    dividend_offset_days: np.ndarray  # ex-dividend day after a quarter's start
    earnings_yield: np.ndarray
    call_offset_days: np.ndarray
    filing_lag_days: np.ndarray

    @property
    def size(self) -> int:
        return int(self.slot.shape[0])


def zipf_exponent(n: int, top10_share: float, noise_sd: float = 0.0, largest_share: float = 0.055) -> float:
    """The exponent ``a`` whose caps ``(k + ZIPF_OFFSET)**-a * exp(noise_sd * z)`` give the ten largest ``top10_share``
    of the total, lowered where needed so that the largest alone holds at most ``largest_share``.

    Expectations over the log-normal noise are taken on 32 fixed draws; clipped to [0, 3].
    """
    ranks = np.arange(1, n + 1, dtype=float) + ZIPF_OFFSET
    noise = np.exp(noise_sd * np.random.default_rng(12345).standard_normal((32, n)))

    def shares(a: float) -> tuple[float, float]:
        w = -np.sort(-(ranks**-a) * noise, axis=1)
        total = w.sum(axis=1)
        return float((w[:, :10].sum(axis=1) / total).mean()), float((w[:, 0] / total).mean())

    def solve(which: int, target: float) -> float:
        lo, hi = 0.0, 3.0
        if shares(lo)[which] >= target:
            return lo
        if shares(hi)[which] <= target:
            return hi
        for _ in range(50):
            mid = 0.5 * (lo + hi)
            if shares(mid)[which] < target:
                lo = mid
            else:
                hi = mid
        return 0.5 * (lo + hi)

    return min(solve(0, top10_share), solve(1, largest_share))


def _lifecycle(cfg: SyntheticMarketConfig, n_sessions: int) -> list[tuple[int, int, int, int]]:
    """Occupants as (slot, generation, listing_k, delisting_k) for every slot, first generation first."""
    first: list[tuple[int, int, int, int]] = []
    later: list[tuple[int, int, int, int]] = []
    mean_life = 252.0 / cfg.delisting_rate if cfg.delisting_rate > 0 else math.inf
    ipo_slots = set(np.random.default_rng([cfg.seed, _STREAM_REFERENCE, 1]).permutation(cfg.n_instruments)[
        : int(round(cfg.ipo_fraction * cfg.n_instruments))].tolist())
    g_lo, g_hi = cfg.relisting_gap_sessions
    for s in range(cfg.n_instruments):
        rng = np.random.default_rng([cfg.seed, _STREAM_REFERENCE, 2, s])
        listing = int(rng.integers(1, cfg.ipo_window_sessions + 1)) if s in ipo_slots else 0
        generation = 0
        while listing < n_sessions:
            life = rng.exponential(mean_life) if math.isfinite(mean_life) else math.inf
            delist = listing + max(21, int(life)) if math.isfinite(life) else -1
            if delist >= n_sessions:
                delist = -1
            (first if generation == 0 else later).append((s, generation, listing, delist))
            if delist < 0:
                break
            listing = delist + int(rng.integers(g_lo, g_hi + 1))
            generation += 1
    later.sort(key=lambda o: (o[2], o[0]))
    return first + later


def _tickers(cfg: SyntheticMarketConfig, m: int) -> list[str]:
    rng = np.random.default_rng([cfg.seed, _STREAM_REFERENCE, 3])
    letters = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZ"))
    out: list[str] = []
    seen: set[str] = set()
    while len(out) < m:
        length = 3 if rng.random() < 0.5 else 4
        code = "".join(letters[rng.integers(0, 26, size=length)])
        if code not in seen:
            seen.add(code)
            out.append(code)
    return out


def _names(cfg: SyntheticMarketConfig, m: int) -> list[str]:
    combos = len(_NAME_PREFIXES) * len(_NAME_ROOTS) * len(_NAME_SUFFIXES)
    picks = np.random.default_rng([cfg.seed, _STREAM_REFERENCE, 4]).permutation(combos)
    out = []
    for j in range(m):
        p = int(picks[j % combos])
        a, rest = divmod(p, len(_NAME_ROOTS) * len(_NAME_SUFFIXES))
        b, c = divmod(rest, len(_NAME_SUFFIXES))
        name = f"{_NAME_PREFIXES[a]} {_NAME_ROOTS[b]} {_NAME_SUFFIXES[c]}"
        out.append(name if j < combos else f"{name} {j // combos + 1}")
    return out


def _attributes(cfg: SyntheticMarketConfig, m: int) -> np.ndarray:
    """(M, _N_ATTR) standard normals, drawn per chunk of 64 occupants."""
    chunks = [np.random.default_rng([cfg.seed, _STREAM_REFERENCE, 5, c]).standard_normal((_CHUNK, _N_ATTR))
              for c in range((m + _CHUNK - 1) // _CHUNK)]
    return np.concatenate(chunks)[:m] if chunks else np.zeros((0, _N_ATTR))


def build_universe(cfg: SyntheticMarketConfig, n_sessions: int) -> Universe:
    """Draw every occupant that lists within the market's first ``n_sessions`` sessions."""
    occupants = _lifecycle(cfg, n_sessions)
    m = len(occupants)
    slot = np.array([o[0] for o in occupants], dtype=np.int64)
    listing_k = np.array([o[2] for o in occupants], dtype=np.int64)
    delisting_k = np.array([o[3] for o in occupants], dtype=np.int64)
    z = _attributes(cfg, m)
    u = 0.5 * (1.0 + np.vectorize(math.erf)(z / math.sqrt(2.0))) if m else z  # uniforms from normals

    # Slot size ranks and Zipf target caps.
    n = cfg.n_instruments
    # Caps wander around their targets: the occupant's own noise, and the stationary spread of the
    # drift between buy-back/issuance corrections (idiosyncratic vol over sqrt(2 x reversion rate)).
    kappa = math.log(2.0) / (cfg.cap_reversion_half_life_years * 261.0)
    wander = (cfg.idio_vol_median / math.sqrt(261.0)) / math.sqrt(2.0 * kappa)
    alpha = zipf_exponent(n, cfg.top10_share, math.sqrt(cfg.cap_noise**2 + wander**2), cfg.largest_share)
    rank = np.random.default_rng([cfg.seed, _STREAM_REFERENCE, 6]).permutation(n) + 1
    slot_log_cap = math.log(cfg.largest_market_cap) - alpha * np.log((rank + ZIPF_OFFSET) / (1.0 + ZIPF_OFFSET))
    target_log_cap = slot_log_cap[slot] + cfg.cap_noise * z[:, 0]
    size_z = _zscore(target_log_cap)

    sector_of_slot = np.random.default_rng([cfg.seed, _STREAM_REFERENCE, 7]).permutation(np.arange(n) % cfg.n_sectors)
    sector = np.where(np.array([o[1] for o in occupants]) == 0, sector_of_slot[slot],
                      (u[:, 1] * cfg.n_sectors).astype(np.int64).clip(0, cfg.n_sectors - 1))
    industry_pick = (u[:, 2] * 3).astype(np.int64).clip(0, 2)
    industry = tuple(SECTORS[int(s)][1][int(i)] for s, i in zip(sector, industry_pick, strict=True))

    lo, hi = cfg.price_start_range
    start_price = np.exp(math.log(lo) + u[:, 3] * (math.log(hi) - math.log(lo)))
    shares = np.maximum(np.round(np.exp(target_log_cap) / start_price, -3), 1000.0)
    styles = np.column_stack([size_z, z[:, 4], z[:, 5]])
    beta = np.clip(cfg.beta_mean + cfg.beta_std * z[:, 6] - 0.05 * size_z, 0.2, 2.5)
    idio_vol = np.clip(cfg.idio_vol_median * np.exp(cfg.idio_vol_dispersion * z[:, 7] - 0.15 * size_z), 0.08, 0.8)
    turnover = cfg.daily_turnover * np.exp(0.4 * z[:, 8] - 0.1 * size_z)
    payer = u[:, 9] < np.clip(cfg.dividend_payer_fraction + 0.15 * size_z, 0.0, 1.0)
    y_lo, y_hi = cfg.dividend_yield_range
    dividend_yield = np.where(payer, y_lo + u[:, 10] * (y_hi - y_lo), 0.0)
    dividend_offset_days = (40 + u[:, 11] * 40).astype(np.int64)
    earnings_yield = 0.05 + 0.025 * z[:, 12]
    call_offset_days = (15 + u[:, 13] * 31).astype(np.int64).clip(15, 45)
    filing_lag_days = (3 + u[:, 2] * 18).astype(np.int64).clip(3, 20)

    n_first = _n_first(occupants)
    pre = cfg.id_prefix
    ids = [f"{pre}{o[0] + 1:04d}" if o[1] == 0 else f"{pre}{n + j - n_first + 1:04d}" for j, o in enumerate(occupants)]
    return Universe(
        n_slots=n,
        slot=slot,
        listing_k=listing_k,
        delisting_k=delisting_k,
        instrument_ids=tuple(ids),
        issuer_ids=tuple(f"{pre}-ISS-{i[len(pre):]}" for i in ids),
        tickers=tuple(_tickers(cfg, m)),
        names=tuple(_names(cfg, m)),
        sector=sector.astype(np.int64),
        industry=industry,
        beta=beta,
        styles=styles,
        idio_vol=idio_vol,
        target_log_cap=target_log_cap,
        start_price=start_price,
        shares_at_listing=shares,
        turnover=turnover,
        dividend_yield=dividend_yield,
        dividend_offset_days=dividend_offset_days,
        earnings_yield=earnings_yield,
        call_offset_days=call_offset_days,
        filing_lag_days=filing_lag_days,
    )


def _n_first(occupants: list[tuple[int, int, int, int]]) -> int:
    return sum(1 for o in occupants if o[1] == 0)


def _zscore(x: np.ndarray) -> np.ndarray:
    sd = float(x.std()) if x.size else 0.0
    if x.size < 2 or sd == 0.0 or not math.isfinite(sd):
        return np.zeros_like(x, dtype=float)
    return (x - x.mean()) / sd
