"""Benchmark the disclosure checker against ACRO, and the differencing engine's speed.

Part 1 builds one set of tables from generated microdata (frequency tables with small
cells, exact 5/6 edges, zero cells, magnitude tables with dominant contributors, percent
tables). ACRO (threshold 6: it fails ``count < threshold``, so 5 fails and 6 passes; n,k
and p% set to our policy's k=85%, p=10%) tabulates the microdata itself; our checker reads
the same table exported as CSV (long format with ``n``, ``sum_cost``/``mean_cost``,
``top1``/``top2``, or ``denominator``/``pct``). It prints each verdict, the agreement rate
and the time ratio (ACRO end to end vs ours: aggregation + CSV + check).

Part 2 times rule 9: a project history of 10 released 1,000-cell tables (10,000 cells) over
1,000,000 people, checked against a new 1,000-cell table, plus one planted differencing
attack that must be found.

Run: ``.venv/bin/python benchmarks/disclosure.py [--seed 7] [--people 1000000]``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from disclosure_review.checker import check_paths
from disclosure_review.differencing import (
    CellMembership,
    DifferencingHistory,
    memberships_from_frame,
)
from disclosure_review.policy import load_policy

REGIONS = ["north", "central", "south", "east", "islands"]
AGES = ["<20", "20-44", "45-64", "65-84", "85+"]
DIAGS = ["I10", "E11", "J45", "C50", "N18"]


@dataclass
class BenchTable:
    """One benchmark table: microdata plus how to tabulate it."""

    name: str
    family: str
    data: pd.DataFrame
    dims: list[str]
    aggfunc: str | None = None  # None = counts; "sum"/"mean" of cost; "pct" = row percent


def _microdata(rng: np.random.Generator, n: int, p_age=None, p_region=None) -> pd.DataFrame:
    return pd.DataFrame({
        "region": rng.choice(REGIONS, n, p=p_region),
        "age": rng.choice(AGES, n, p=p_age),
        "sex": rng.choice(["F", "M"], n),
        "diag": rng.choice(DIAGS, n),
        "cost": rng.gamma(2.0, 500.0, n).round(0),
    })


def make_tables(seed: int) -> list[BenchTable]:
    """The generated table set (same for both checkers)."""
    rng = np.random.default_rng(seed)
    skew = [0.30, 0.35, 0.25, 0.08, 0.02]
    tables: list[BenchTable] = []
    for n in (60, 150, 400, 1500, 6000):
        tables.append(BenchTable(f"freq_age_sex_{n}", "frequency",
                                 _microdata(rng, n, p_age=skew), ["age", "sex"]))
        tables.append(BenchTable(f"freq_region_age_{n}", "frequency",
                                 _microdata(rng, n, p_age=skew), ["region", "age"]))
    # Exact edges: one cell of 5 (fails) vs all cells of 6+ (passes).
    for small in (5, 6):
        rows = [("north", "F")] * small + [("north", "M")] * 40 + [("south", "F")] * 30 \
            + [("south", "M")] * 25
        df = pd.DataFrame(rows, columns=["region", "sex"]).assign(cost=1000.0)
        tables.append(BenchTable(f"edge_cell_{small}", "frequency", df, ["region", "sex"]))
    # Zeros: a combination that never occurs, everything else large.
    df = _microdata(rng, 3000)
    df = df[~((df.region == "islands") & (df.diag == "C50"))]
    tables.append(BenchTable("zero_region_diag", "zeros", df, ["region", "diag"]))
    df = _microdata(rng, 3000)
    df = df[~((df.sex == "M") & (df.diag == "C50"))]
    tables.append(BenchTable("zero_sex_diag", "zeros", df, ["sex", "diag"]))
    # Magnitude: sums and means, with and without a dominant contributor.
    for agg in ("sum", "mean"):
        df = _microdata(rng, 2000)
        tables.append(BenchTable(f"mag_{agg}_plain", "magnitude", df, ["region", "sex"], agg))
        df = _microdata(rng, 2000)
        idx = df.index[(df.region == "east") & (df.sex == "F")][0]
        df.loc[idx, "cost"] = 5_000_000.0  # one person dominates the cell
        tables.append(BenchTable(f"mag_{agg}_dominated", "magnitude", df, ["region", "sex"],
                                 agg))
        df = _microdata(rng, 2000)
        cell = df.index[(df.region == "north") & (df.sex == "M")]
        df.loc[cell[0], "cost"] = 700_000.0  # two people hold ~88% (n,k only, not p%)
        df.loc[cell[1], "cost"] = 700_000.0
        tables.append(BenchTable(f"mag_{agg}_two_dominate", "magnitude", df,
                                 ["region", "sex"], agg))
        df = _microdata(rng, 150, p_age=skew)
        tables.append(BenchTable(f"mag_{agg}_small_cells", "magnitude", df, ["age", "sex"], agg))
    # Percentages: row percentages of sex within age.
    for n in (200, 1000, 5000):
        tables.append(BenchTable(f"pct_age_sex_{n}", "percent", _microdata(rng, n, p_age=skew),
                                 ["age", "sex"], "pct"))
    df = pd.DataFrame({"age": ["65-84"] * 200 + ["85+"] * 100,
                       "sex": ["F"] * 197 + ["M"] * 3 + ["F"] * 50 + ["M"] * 50, "cost": 1.0})
    tables.append(BenchTable("pct_complement_small", "percent", df, ["age", "sex"], "pct"))
    return tables


# ---------------------------------------------------------------------------------------
# ACRO
def acro_session():
    """An ACRO object with threshold 6 (fails count < 6) and our dominance parameters."""
    from acro import ACRO

    with contextlib.redirect_stdout(io.StringIO()):
        acro = ACRO(suppress=False)
    # ACRO configures INFO logging on import; keep the benchmark output readable.
    logging.getLogger().setLevel(logging.WARNING)
    for name in ("acro", "presidio-analyzer"):
        logging.getLogger(name).setLevel(logging.WARNING)
    policy = load_policy()
    acro.sdc_checks.risk_appetite["safe_threshold"] = policy.threshold + 1
    acro.sdc_checks.risk_appetite["safe_nk_n"] = policy.nk_n
    acro.sdc_checks.risk_appetite["safe_nk_k"] = policy.nk_k / 100.0
    acro.sdc_checks.risk_appetite["safe_pratio_p"] = policy.p_percent / 100.0
    return acro


def run_acro(acro, table: BenchTable) -> tuple[str, float, str]:
    """ACRO's status for the table, seconds, and its summary."""
    df = table.data
    index = df[table.dims[0]]
    columns = df[table.dims[1]]
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        if table.aggfunc in ("sum", "mean"):
            acro.crosstab(index, columns, values=df["cost"], aggfunc=table.aggfunc)
        elif table.aggfunc == "pct":
            acro.crosstab(index, columns, normalize="index")
        else:
            acro.crosstab(index, columns)
    seconds = time.perf_counter() - start
    keys = acro.results.get_keys()
    record = acro.results.get(keys[-1])
    failing = {k: v for k, v in (record.sdc or {}).get("summary", {}).items() if v}
    return record.status.lower(), seconds, ", ".join(f"{k}: {v} cells" for k, v in failing.items())


# ---------------------------------------------------------------------------------------
# Ours
def export_csv(table: BenchTable, folder: Path) -> Path:
    """Aggregate the microdata as a researcher would export it, to CSV (Polars)."""
    frame = pl.from_pandas(table.data)
    dims = table.dims
    full = frame.select(dims[0]).unique().join(frame.select(dims[1]).unique(), how="cross")
    grouped = frame.group_by(dims).agg(
        pl.len().alias("n"),
        pl.col("cost").sum().alias("sum_cost"),
        pl.col("cost").mean().alias("mean_cost"),
        pl.col("cost").sort(descending=True).first().alias("top1"),
        pl.col("cost").sort(descending=True).slice(1, 1).first().fill_null(0).alias("top2"),
    )
    out = full.join(grouped, on=dims, how="left").with_columns(pl.col("n").fill_null(0))
    out = out.sort(dims)
    if table.aggfunc == "sum":
        out = out.select(*dims, "n", "sum_cost", "top1", "top2")
    elif table.aggfunc == "mean":
        out = out.select(*dims, "n", "mean_cost", "top1", "top2")
    elif table.aggfunc == "pct":
        out = out.with_columns(pl.col("n").sum().over(dims[0]).alias("denominator"))
        out = out.with_columns((pl.col("n") / pl.col("denominator") * 100).round(3).alias("pct"))
        out = out.select(*dims, "denominator", "pct")
    else:
        out = out.select(*dims, "n")
    path = folder / f"{table.name}.csv"
    out.write_csv(path)
    return path


def run_ours(table: BenchTable, folder: Path, policy) -> tuple[str, float, str]:
    start = time.perf_counter()
    path = export_csv(table, folder)
    report = check_paths([path], policy=policy)
    seconds = time.perf_counter() - start
    rules = sorted({f"{f.rule}:{f.severity.value}" for f in report.findings})
    return report.verdict.value, seconds, ", ".join(rules)


def compare(seed: int) -> None:
    """Part 1: per-table verdicts, agreement and time ratio."""
    tables = make_tables(seed)
    policy = load_policy()
    acro = acro_session()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        # Warm both sides once so one-off start-up (presidio, ACRO json) is not timed.
        run_ours(tables[0], Path(tmp), policy)
        run_acro(acro, tables[0])
        for table in tables:
            a_status, a_time, a_summary = run_acro(acro, table)
            o_status, o_time, o_rules = run_ours(table, Path(tmp), policy)
            rows.append((table, a_status, a_time, a_summary, o_status, o_time, o_rules))
    print(f"{'table':28} {'family':10} {'ACRO':7} {'ours':7} agree")
    for table, a_status, _, _, o_status, _, _ in rows:
        mark = "yes" if a_status == o_status else "NO"
        print(f"{table.name:28} {table.family:10} {a_status:7} {o_status:7} {mark}")
    agree = sum(r[1] == r[4] for r in rows)
    acro_total = sum(r[2] for r in rows)
    ours_total = sum(r[5] for r in rows)
    print(f"\nagreement: {agree}/{len(rows)} = {agree / len(rows):.0%}")
    print(f"time: ACRO {acro_total:.3f} s, ours {ours_total:.3f} s "
          f"(ours/ACRO = {ours_total / acro_total:.2f})")
    print("\ndisagreements:")
    for table, a_status, _, a_summary, o_status, _, o_rules in rows:
        if a_status != o_status:
            print(f"- {table.name}: ACRO {a_status} [{a_summary}]")
            print(f"    ours {o_status} [{o_rules}]")


def differencing_speed(people: int, seed: int) -> None:
    """Part 2: 10,000 released cells vs a new 1,000-cell table."""
    rng = np.random.default_rng(seed)
    region = rng.integers(0, 100, people)
    attrs = {f"a{k}": rng.integers(0, 10, people) for k in range(11)}
    frame = pl.DataFrame({"pid": np.arange(people, dtype=np.uint32), "region": region, **attrs})
    with tempfile.TemporaryDirectory() as tmp:
        history = DifferencingHistory(Path(tmp))
        start = time.perf_counter()
        build = 0.0
        for k in range(10):
            t0 = time.perf_counter()
            cells = memberships_from_frame(frame, output_id=f"T{k}", unit_column="pid",
                                           group_columns=["region", f"a{k}"])
            build += time.perf_counter() - t0
            history.record_release(f"T{k}", cells)
        record_time = time.perf_counter() - start
        new = memberships_from_frame(frame, output_id="NEW", unit_column="pid",
                                     group_columns=["region", "a10"])
        # Plant one attack: a released cell minus 3 of its people.
        released = memberships_from_frame(frame, output_id="T0", unit_column="pid",
                                          group_columns=["region", "a0"])[0]
        members = released.members.copy()
        for unit in list(members)[:3]:
            members.remove(unit)
        new.append(CellMembership("NEW", "planted: T0 cell minus 3", "person", members))
        fresh = DifferencingHistory(Path(tmp))  # cold: lazy load from disk
        start = time.perf_counter()
        findings = fresh.check(new)
        check_time = time.perf_counter() - start
    n_released = 10 * len(new[:-1])
    planted = [f for f in findings if "planted" in f.location]
    print(f"\ndifferencing: {people:,} people, {n_released:,} released cells, "
          f"new table of {len(new):,} cells")
    print(f"  build memberships {build:.2f} s; record 10 releases {record_time:.2f} s")
    print(f"  check (cold load + index + compare) {check_time:.2f} s; findings {len(findings)}; "
          f"planted attack found: {bool(planted)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--people", type=int, default=1_000_000)
    parser.add_argument("--skip-acro", action="store_true")
    args = parser.parse_args()
    if not args.skip_acro:
        compare(args.seed)
    differencing_speed(args.people, args.seed)


if __name__ == "__main__":
    main()
