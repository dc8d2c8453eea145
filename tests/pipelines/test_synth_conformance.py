"""Clean synthetic output obeys every rule the catalog states about every file."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from catalog import FileDef, load_catalog
from catalog.checks import CHECKS
from pipelines.synth.generate import SUPPORTED, generate_source

YEAR = 2023
NUMERIC = {"integer": pl.Int64, "decimal": pl.Float64, "date": pl.Int64, "yearmonth": pl.Int64}


@pytest.fixture(scope="module")
def out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("conform")
    generate_source(d, people=3000, years=[YEAR], seed=21)
    return d


def _read(out: Path, name: str) -> pl.DataFrame:
    return pl.read_csv(out / f"{name}_{YEAR}.csv", infer_schema_length=0)


def _typed(df: pl.DataFrame, fd: FileDef) -> pl.DataFrame:
    return df.with_columns(
        pl.col(c.name).cast(NUMERIC[c.type], strict=True) for c in fd.columns if c.type in NUMERIC
    )


def _where(where: dict[str, list[str]] | None) -> pl.Expr:
    expr = pl.lit(True)
    for col, values in (where or {}).items():
        expr = expr & pl.col(col).is_in(values)
    return expr


def _column_problems(df: pl.DataFrame, fd: FileDef) -> list[str]:
    cat = load_catalog()
    bad: list[str] = []
    for c in fd.columns:
        s = pl.col(c.name)
        rules: dict[str, pl.Expr] = {}
        if c.required:
            rules["required"] = s.is_not_null()
        if c.pattern:
            rules["pattern"] = s.str.contains(c.pattern)
        if c.codes:
            rules[f"codes {c.codes}"] = s.is_in(cat.codeset(c.codes).values)
        if c.check:
            rules[f"check {c.check}"] = CHECKS[c.check].expr(s)
        if c.type == "date":
            rules["date"] = s.str.to_date("%Y%m%d", strict=False).is_not_null() | s.is_null()
        if c.type in ("integer", "decimal"):
            num = s.cast(pl.Float64, strict=False)
            rules["number"] = num.is_not_null() | s.is_null()
            if c.range and c.range.min is not None:
                rules["range min"] = num >= c.range.min
            if c.range and c.range.max is not None:
                rules["range max"] = num <= c.range.max
        for rule, expr in rules.items():
            n = df.select((~expr.fill_null(True)).sum()).item()
            if n:
                example = df.filter(~expr.fill_null(True))[c.name][0]
                bad.append(f"{fd.name}.{c.name}: {n} rows break {rule} (e.g. {example!r})")
    return bad


def test_every_supported_file_is_written(out: Path) -> None:
    for name in SUPPORTED:
        df = _read(out, name)
        assert df.height > 0, name
        assert df.columns == load_catalog().file(name).column_names, name


def test_columns_follow_the_catalog(out: Path) -> None:
    bad = []
    for fd in load_catalog().files:
        bad += _column_problems(_read(out, fd.name), fd)
    assert bad == []


def test_keys_parents_and_references(out: Path) -> None:
    frames = {fd.name: _read(out, fd.name) for fd in load_catalog().files}
    bad = []
    for fd in load_catalog().files:
        df = frames[fd.name]
        dup = df.select(fd.primary_key).is_duplicated().sum()
        if dup:
            bad.append(f"{fd.name}: {dup} rows share a primary key")
        if fd.parent:
            parent = frames[fd.parent.file].select(fd.parent.columns).unique()
            orphans = df.join(parent, on=fd.parent.columns, how="anti").height
            if orphans:
                bad.append(f"{fd.name}: {orphans} orphans of {fd.parent.file}")
        for ref in fd.references:
            target = frames[ref.file].select(ref.file_columns).unique()
            rows = df.filter(_where(ref.where)).drop_nulls(ref.columns)
            missing = rows.join(
                target, left_on=ref.columns, right_on=ref.file_columns, how="anti"
            ).height
            if missing:
                bad.append(f"{fd.name}.{ref.columns} -> {ref.file}: {missing} missing")
    assert bad == []


def test_invariants(out: Path) -> None:
    cat = load_catalog()
    bad = []
    checked = 0
    for fd in cat.files:
        df = _typed(_read(out, fd.name), fd)
        for inv in fd.invariants:
            checked += 1
            if inv.expr is not None:
                n = df.select((~pl.sql_expr(inv.expr).fill_null(True)).sum()).item()
            else:
                cs = inv.child_sum
                parent_fd = cat.file(fd.parent.file)
                parent = _typed(_read(out, parent_fd.name), parent_fd)
                sums = (
                    df.filter(_where(cs.where))
                    .group_by(fd.parent.columns)
                    .agg(pl.col(cs.column).sum().alias("_sum"))
                )
                key = [c for c in fd.parent.columns]
                j = parent.join(sums, on=key, how="left").with_columns(pl.col("_sum").fill_null(0))
                n = j.filter(pl.col("_sum") != pl.col(cs.parent_column)).height
            if n:
                bad.append(f"{fd.name}: invariant {inv.name} broken in {n} rows")
    assert checked >= 5
    assert bad == []


def test_claim_consistency_beyond_the_catalog(out: Path) -> None:
    """Rules of the task not (yet) written as catalog invariants."""
    ipd = _typed(_read(out, "H_NHI_IPDTE"), load_catalog().file("H_NHI_IPDTE"))
    ipo = _typed(_read(out, "H_NHI_IPDTO"), load_catalog().file("H_NHI_IPDTO"))
    days = (
        pl.col("OUT_DATE").cast(pl.Utf8).str.to_date("%Y%m%d")
        - pl.col("IN_DATE").cast(pl.Utf8).str.to_date("%Y%m%d")
    ).dt.total_days()
    assert ipd.select((pl.col("E_BED_DAY") + pl.col("S_BED_DAY") == days).all()).item()
    assert ipd.select((pl.col("APPL_DOT") == pl.col("MED_DOT") - pl.col("PART_DOT")).all()).item()
    key = load_catalog().file("H_NHI_IPDTE").primary_key
    sums = ipo.group_by(key).agg(pl.col("ORDER_DOT").sum(), pl.len().alias("n"))
    j = ipd.join(sums, on=key)
    assert j.height == ipd.height and (j["ORDER_DOT"] == j["MED_DOT"]).all()
    assert 15 < j["n"].mean() < 25
    people = _read(out, "H_NHI_ENROL")["ID"].n_unique()
    assert 0.10 < ipd.height / people < 0.16
    de = _read(out, "H_NHI_DRUGE")
    assert 5 < de.height / people < 7.5
    medfa = _read(out, "H_NHI_MEDFA")
    pharmacies = medfa.filter(pl.col("HOS") == "59")["HOSP_ID"]
    assert de["HOSP_ID"].is_in(pharmacies.implode()).all()
    assert not de["R_HOSP_ID"].is_in(pharmacies.implode()).any()
    # Elderly are admitted far more often than working-age adults.
    age = YEAR - ipd["ID_BIRTHDAY"].cast(pl.Utf8).str.slice(0, 4).cast(pl.Int64)
    enrol = _read(out, "H_NHI_ENROL").unique("ID")
    eage = YEAR - enrol["ID_BIRTHDAY"].str.slice(0, 4).cast(pl.Int64)
    old = (age >= 65).sum() / (eage >= 65).sum()
    young = ((age >= 20) & (age < 65)).sum() / ((eage >= 20) & (eage < 65)).sum()
    assert old > 2 * young


def test_the_rule_runner_catches_broken_values(out: Path) -> None:
    """The checks above are not vacuous: planted violations are reported."""
    fd = load_catalog().file("H_NHI_OPDTE")
    df = _read(out, "H_NHI_OPDTE")
    broken = df.with_columns(
        pl.when(pl.int_range(pl.len()) == 0).then(pl.lit("X")).otherwise(pl.col(c)).alias(c)
        for c in ("ID", "FUNC_TYPE", "FUNC_DATE", "SEQ_NO", "T_DOT")
    )
    bad = " ".join(_column_problems(broken, fd))
    for rule in ("check tw_national_id", "codes func_type", "date", "pattern", "number"):
        assert rule in bad
