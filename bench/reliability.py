"""Reliability experiments on the embedded DuckDB warehouse: commands at once, and commands killed.

    .venv/bin/python bench/reliability.py [--n 10] [--experiments concurrency,kill-ingest,kill-backtest]
                                          [--modes refuse,wait] [--instruments 12] [--keep DIR]
                                          [--source DIR] [--seed 1]

Every command is a real ``prometheus`` process (``python -m prometheus_assets.cli``) on a home
of its own under a temporary folder (``--keep DIR`` keeps it), with a small synthetic US_EQ market.

concurrency  Two ``prometheus ingest`` of the same range on one DuckDB home, the second started
             a random 0..T seconds after the first (T: the time of one ingest alone), N times
             per mode: ``refuse`` (the second without --wait) and ``wait`` (``--wait 600``). Each
             command is counted as completed (exit 0), waited then completed (said "waiting up
             to ..." first), refused cleanly (exit 2, one line naming the holder) or failed (any
             other exit, a step failure, DuckDB's IO Error, a traceback). A trial holds when no
             command failed and every table ends in the pre-run or the post-run state.
kill-ingest  ``prometheus ingest S..E2`` on a home holding S..E1, killed with SIGKILL at a random
             time between its taking the warehouse lock (imports done, nothing written) and T
             (0.15 T..T for code without the lock), N times. Then the warehouse is opened at once (a dead holder's
             lock file must not block) and, for every catalogue table, its rows in S..E2 of
             US_EQ (rows and distinct sessions) must equal the pre-run or the post-run state:
             no half-written range. At the end a full ingest runs on the last killed home.
kill-backtest  ``prometheus backtest --run-id R`` again over a home where run R is complete,
             killed at a random time as above, N times: every run-scoped table's rows of R
             must equal R's complete result (the earlier or the new one; the same rows, as the
             inputs did not change); staging rows left by a killed run are counted (the next run
             of R discards them).

``--source DIR`` runs the commands from another checkout (``PYTHONPATH=DIR``), e.g. a
``git worktree`` of an earlier commit, to measure the code before a change. Figures, not
assertions: the script prints counts and exits 0.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from prometheus_lib.backtest.runner import RUN_TABLES  # noqa: E402
from prometheus_lib.errors import WarehouseLockedError  # noqa: E402
from prometheus_lib.storage.catalog import catalogue_tables  # noqa: E402
from prometheus_lib.storage.factory import open_warehouse  # noqa: E402
from prometheus_lib.storage.lock import read_holder  # noqa: E402

MARKET = "US_EQ"
STRATEGY = "US_CORE_LONG_EQ"
S, E1, E2 = date(2024, 1, 2), date(2024, 1, 31), date(2024, 2, 29)        # ingest: pre S..E1, run S..E2
DATA_START, DATA_END = date(2023, 1, 3), date(2024, 3, 28)                # backtest: history and panels
BT_START, BT_END = date(2024, 2, 1), date(2024, 3, 15)
RUN_ID = "RELIABILITY"


# ---------------------------------------------------------------- processes
@dataclass
class Bench:
    base: Path
    config_dir: Path
    source: Path | None

    def env(self, home: Path, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DAGSTER_", "PROMETHEUS_"))}
        env.update(PROMETHEUS_HOME=str(home), DAGSTER_HOME=str(home / "dagster"), PROMETHEUS_CONFIG_DIR=str(self.config_dir),
                   **extra)
        if self.source is not None:
            env["PYTHONPATH"] = str(self.source)
        return env

    def start(self, home: Path, *args: str) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "prometheus_assets.cli", *args], cwd=self.source or REPO,
                                env=self.env(home), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)

    def run(self, home: Path, *args: str, check: bool = True) -> tuple[subprocess.CompletedProcess, float]:
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "prometheus_assets.cli", *args], cwd=self.source or REPO,
                              env=self.env(home), capture_output=True, text=True, timeout=1800)
        seconds = time.perf_counter() - t0
        if check and proc.returncode != 0:
            raise SystemExit(f"bench set-up: prometheus {' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
        return proc, seconds


    def timed(self, home: Path, *args: str) -> tuple[float, float | None]:
        """Run a command to completion: its wall time, and when it took the warehouse lock (None:
        never seen, e.g. code without the lock)."""
        t0 = time.perf_counter()
        proc = self.start(home, *args)
        locked = None
        while proc.poll() is None:
            holder = read_holder(database(home))
            if locked is None and holder is not None and holder.pid == proc.pid:
                locked = time.perf_counter() - t0
            time.sleep(0.02)
        out, err = proc.communicate()
        if proc.returncode != 0:
            raise SystemExit(f"bench set-up: prometheus {' '.join(args)} failed:\n{out[-3000:]}\n{err[-3000:]}")
        return time.perf_counter() - t0, locked


def lock_note(locked: float | None) -> str:
    return "no warehouse lock seen" if locked is None else f"warehouse lock taken at {locked:.1f} s"


def restore(template: Path, home: Path) -> None:
    if home.exists():
        shutil.rmtree(home)
    shutil.copytree(template, home, symlinks=True)


def database(home: Path) -> Path:
    return home / "warehouse" / "prometheus.duckdb"


# ---------------------------------------------------------------- warehouse states
def ingest_state(home: Path) -> dict[str, tuple[int, int]]:
    """Per catalogue table: (rows, distinct sessions) of US_EQ in S..E2 (rows of the market for
    unpartitioned tables). Opened with no wait: a dead command's lock must not block."""
    state: dict[str, tuple[int, int]] = {}
    with open_warehouse("duckdb", duckdb_path=str(database(home)), lock_wait=0) as wh:
        for t in catalogue_tables(include_system=False):
            if t.schema != "historical" and t.name not in ("issuers", "instruments", "markets"):
                continue
            where, params = [], []
            if t.partition_column:
                where.append(f"{t.partition_column} BETWEEN ? AND ?")
                params += [S, E2]
            if "market_id" in t.column_names and t.name != "markets":
                where.append("market_id = ?")
                params.append(MARKET)
            sessions = f"count(DISTINCT {t.partition_column})" if t.partition_column else "0"
            sql = f"SELECT count(*) AS n, {sessions} AS d FROM {t.qualified_name}" + (f" WHERE {' AND '.join(where)}" if where else "")
            row = wh.query(sql, params).row(0)
            state[t.name] = (int(row[0]), int(row[1]))
    return state


def backtest_state(home: Path) -> tuple[dict[str, int], int]:
    """Rows of run RUN_ID per run-scoped table, and rows of its staging ids (all tables)."""
    rows, staging = {}, 0
    with open_warehouse("duckdb", duckdb_path=str(database(home)), lock_wait=0) as wh:
        for name in RUN_TABLES:
            t = next(t for t in catalogue_tables() if t.name == name)
            rows[name] = int(wh.query(f"SELECT count(*) AS n FROM {t.qualified_name} WHERE run_id = ?", [RUN_ID])["n"][0])
            staging += int(wh.query(f"SELECT count(*) AS n FROM {t.qualified_name} WHERE run_id LIKE ?",
                                    [f"{RUN_ID}~%"])["n"][0])
    return rows, staging


def consistent(state: dict[str, tuple[int, int]], pre: dict, post: dict) -> list[str]:
    """Tables whose state is neither the pre-run nor the post-run one."""
    return [f"{name}: {state[name]} (pre {pre[name]}, post {post[name]})" for name in state
            if state[name] not in (pre[name], post[name])]


# ---------------------------------------------------------------- outcomes
def classify(proc: subprocess.Popen | subprocess.CompletedProcess, out: str, err: str) -> str:
    """completed / waited / refused / failed-traceback / failed-io-error / failed."""
    text = out + err
    if "Traceback (most recent call last)" in text:
        return "failed-traceback"
    if proc.returncode == 0 and "IO Error" not in text:
        return "waited" if "waiting up to" in err else "completed"
    lines = [ln for ln in err.splitlines() if ln.strip()]
    if proc.returncode == 2 and len(lines) == 1 and "is in use by" in lines[0]:
        return "refused"
    if "IO Error" in text or "Could not set lock" in text:
        return "failed-io-error"
    return "failed"


@dataclass
class Tally:
    trials: int = 0
    held: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)

    def count(self, outcome: str) -> None:
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1

    def line(self) -> str:
        outcomes = ", ".join(f"{k} {v}" for k, v in sorted(self.outcomes.items()))
        wall = f"; {statistics.median(self.seconds):.1f} s per trial (median)" if self.seconds else ""
        return f"held {self.held} / failed {self.trials - self.held} of {self.trials} trials ({outcomes}){wall}"


# ---------------------------------------------------------------- experiments
def concurrency(bench: Bench, template: Path, pre: dict, post: dict, seconds: float, n: int, rng: random.Random,
                modes: list[str]) -> dict[str, Tally]:
    tallies = {}
    for mode, extra in (("refuse", ()), ("wait", ("--wait", "600"))):
        if mode not in modes:
            continue
        tally = tallies[mode] = Tally()
        for i in range(n):
            home = bench.base / f"conc_{mode}_{i}"
            restore(template, home)
            delay = rng.uniform(0, seconds)
            t0 = time.perf_counter()
            first = bench.start(home, "ingest", "--start", S.isoformat(), "--end", E2.isoformat())
            time.sleep(delay)
            second = bench.start(home, "ingest", "--start", S.isoformat(), "--end", E2.isoformat(), *extra)
            outs = [p.communicate(timeout=1800) for p in (first, second)]
            tally.seconds.append(time.perf_counter() - t0)
            kinds = [classify(p, *o) for p, o in zip((first, second), outs)]
            for who, kind in zip(("first", "second"), kinds):
                tally.count(f"{who} {kind}")
            try:
                bad = consistent(ingest_state(home), pre, post)
            except WarehouseLockedError as e:
                bad = [f"blocked: {e}"]
            held = not bad and not any(k.startswith("failed") for k in kinds)
            tally.trials += 1
            tally.held += held
            if not held:
                detail = [f"{who}: {(o[1].strip().splitlines() or ['?'])[0][:160]}" for who, o, k in
                          zip(("first", "second"), outs, kinds) if k.startswith("failed")]
                tally.notes.append(f"{mode} #{i} (second after {delay:.1f} s): {kinds} {bad} {detail}")
            shutil.rmtree(home, ignore_errors=True)
            print(f"  concurrency {mode} #{i}: second after {delay:4.1f} s -> {kinds[0]}, {kinds[1]}"
                  f"{'' if held else '  NOT HELD'}", flush=True)
    return tallies


def kill_trials(bench: Bench, name: str, template: Path, args: tuple[str, ...], timing: tuple[float, float | None],
                n: int, rng: random.Random, check) -> Tally:
    seconds, locked = timing
    tally = Tally()
    home = bench.base / f"kill_{name}"
    for i in range(n):
        restore(template, home)
        # between taking the lock (imports done, nothing written yet) and the end of the command
        delay = rng.uniform(locked if locked is not None else 0.15 * seconds, seconds)
        t0 = time.perf_counter()
        proc = bench.start(home, *args)
        try:
            proc.wait(timeout=delay)
            when = "finished before the kill"
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=60)
            when = "killed"
        proc.communicate()
        tally.seconds.append(time.perf_counter() - t0)
        tally.count(when)
        try:
            bad, info = check(home)
        except WarehouseLockedError as e:
            bad, info = [f"blocked by a stale lock: {e}"], ""
        tally.trials += 1
        tally.held += not bad
        if info:
            tally.count(info)
        if bad:
            tally.notes.append(f"#{i} ({when} at {delay:.1f} s): {bad}")
        print(f"  kill {name} #{i}: {when} at {delay:4.1f} s -> {'held' if not bad else 'NOT HELD ' + str(bad)}"
              f"{(' (' + info + ')') if info else ''}", flush=True)
    # a dead holder's lock line never blocks: a full command runs on the last killed home
    proc, _ = bench.run(home, *args, check=False)
    tally.notes.append(f"after the last kill, a full `{' '.join(args[:1])}` exited {proc.returncode}"
                       f"{'' if proc.returncode == 0 else ': ' + proc.stderr.strip()[-300:]}")
    return tally


# ---------------------------------------------------------------- set-up
def make_config(base: Path, instruments: int) -> Path:
    target = base / "configs"
    shutil.copytree(REPO / "configs", target)
    markets = yaml.safe_load((target / "markets.yaml").read_text())
    us = next(m for m in markets["markets"] if m["market_id"] == MARKET)
    us["data_source"]["synthetic"]["n_instruments"] = instruments
    (target / "markets.yaml").write_text(yaml.safe_dump(markets, sort_keys=False))
    doc = yaml.safe_load((target / "strategies.yaml").read_text())
    strategy = next(s for s in doc["strategies"] if s["strategy_id"] == STRATEGY)
    strategy["universe_size"] = min(strategy.get("universe_size", 10), max(2, instruments // 2))
    strategy["max_position_weight"] = max(strategy.get("max_position_weight", 0.1), 1.0 / strategy["universe_size"])
    (target / "strategies.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    return target


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=10, help="trials per experiment (and per concurrency mode)")
    p.add_argument("--experiments", default="concurrency,kill-ingest,kill-backtest")
    p.add_argument("--modes", default="refuse,wait", help="concurrency modes: the second command without --wait, with it")
    p.add_argument("--instruments", type=int, default=12)
    p.add_argument("--keep", type=Path, help="work folder to keep (default: a temporary one, removed)")
    p.add_argument("--source", type=Path, help="run the commands from this checkout (PYTHONPATH)")
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args()
    experiments = [e.strip() for e in args.experiments.split(",") if e.strip()]
    base = args.keep or Path(tempfile.mkdtemp(prefix="prom_reliability_"))
    base.mkdir(parents=True, exist_ok=True)
    bench = Bench(base, make_config(base, args.instruments), args.source.resolve() if args.source else None)
    rng = random.Random(args.seed)
    results: list[tuple[str, Tally]] = []
    t_start = time.perf_counter()
    print(f"bench/reliability.py: N={args.n}, {args.instruments} instruments, commands from {bench.source or REPO}, "
          f"work folder {base}", flush=True)
    try:
        if {"concurrency", "kill-ingest"} & set(experiments):
            template = base / "ingest_template"
            bench.run(template, "ingest", "--start", S.isoformat(), "--end", E1.isoformat())
            pre = ingest_state(template)
            reference = base / "ingest_reference"
            restore(template, reference)
            timing = bench.timed(reference, "ingest", "--start", S.isoformat(), "--end", E2.isoformat())
            seconds = timing[0]
            post = ingest_state(reference)
            shutil.rmtree(reference)
            print(f"set-up: pre-run home holds {S}..{E1}; `prometheus ingest --start {S} --end {E2}` alone takes "
                  f"{seconds:.1f} s ({lock_note(timing[1])})", flush=True)
            if "concurrency" in experiments:
                for mode, tally in concurrency(bench, template, pre, post, seconds, args.n, rng, args.modes.split(",")).items():
                    results.append((f"concurrency, second command {'without --wait' if mode == 'refuse' else 'with --wait 600'}", tally))
            if "kill-ingest" in experiments:
                def check_ingest(home: Path) -> tuple[list[str], str]:
                    state = ingest_state(home)
                    bad = consistent(state, pre, post)
                    at = "post-run state" if state == post else "pre-run state" if state == pre else "mixed per table"
                    return bad, at
                results.append(("kill -9 of `prometheus ingest`", kill_trials(
                    bench, "ingest", template, ("ingest", "--start", S.isoformat(), "--end", E2.isoformat()),
                    timing, args.n, rng, check_ingest)))
        if "kill-backtest" in experiments:
            template = base / "backtest_template"
            _, t_main = bench.run(template, "main", "--markets", MARKET, "--start", DATA_START.isoformat(),
                                  "--end", DATA_END.isoformat(), "--no-backtest")
            bt_args = ("backtest", "--strategy", STRATEGY, "--start", BT_START.isoformat(), "--end", BT_END.isoformat(),
                       "--run-id", RUN_ID)
            bench.run(template, *bt_args)
            complete, _ = backtest_state(template)
            reference = base / "backtest_reference"
            restore(template, reference)
            timing = bench.timed(reference, *bt_args)
            again, _ = backtest_state(reference)
            shutil.rmtree(reference)
            print(f"set-up: main over {DATA_START}..{DATA_END} in {t_main:.0f} s; a re-run of backtest {RUN_ID} alone takes "
                  f"{timing[0]:.1f} s ({lock_note(timing[1])}); its rows are the same each time: "
                  f"{again == complete}", flush=True)

            def check_backtest(home: Path) -> tuple[list[str], str]:
                rows, staging = backtest_state(home)
                bad = [f"{t}: {rows[t]} rows (complete {complete[t]})" for t in rows if rows[t] != complete[t]]
                return bad, f"{'staging rows left' if staging else 'no staging rows left'}"
            results.append(("kill -9 of `prometheus backtest` re-running a run id", kill_trials(
                bench, "backtest", template, bt_args, timing, args.n, rng, check_backtest)))
    finally:
        if args.keep is None:
            shutil.rmtree(base, ignore_errors=True)
    print(f"\nResults (N={args.n} per row, {time.perf_counter() - t_start:.0f} s in all):")
    for label, tally in results:
        print(f"  {label}: {tally.line()}")
        for note in tally.notes:
            print(f"      {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
