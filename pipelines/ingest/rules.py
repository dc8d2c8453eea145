"""Row-level validation rules compiled from the catalog into vectorised Polars expressions.

Each rule says when a row fails (``fail`` expression over the raw string columns), with a
name that matches the fault kinds of the synthetic generator's ground truth
(``missing_value``, ``invalid_date``, ``not_integer``, ``not_decimal``, ``out_of_range``,
``unknown_code``, ``pattern``, ``bad_checksum``, ``bad_institution_code``). A row that fails
several rules is quarantined once, under the first rule in column order; all its failing
rules are kept in the quarantine record.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import polars as pl

from catalog import Catalog
from catalog.checks import CHECKS
from catalog.model import Column, FileDef

# Which rule name a catalog check reports under.
CHECK_RULES = {
    "tw_national_id": "bad_checksum",
    "ban": "bad_checksum",
    "icd10cm": "unknown_code",
    "icd10pcs": "unknown_code",
    "institution_code": "bad_institution_code",
}
_INT_RE = r"^-?[0-9]+$"
_DEC_RE = r"^-?[0-9]+(?:\.[0-9]+)?$"
_DATE_RE = r"^[0-9]{8}$"
_YM_RE = r"^[0-9]{4}(?:0[1-9]|1[0-2])$"


@dataclass(frozen=True)
class Rule:
    name: str
    column: str
    fail: pl.Expr
    description: str


def _date_ok(col: pl.Expr) -> pl.Expr:
    parsed = col.str.strptime(pl.Date, "%Y%m%d", strict=False)
    return col.str.contains(_DATE_RE) & parsed.is_not_null()


def column_rules(column: Column, catalog: Catalog) -> list[Rule]:
    """The rules of one column, in the order they are judged."""
    c = pl.col(column.name)
    present = c.is_not_null()
    rules: list[Rule] = []
    if column.required:
        rules.append(Rule("missing_value", column.name, c.is_null(), "a value is required"))
    if column.type == "date":
        rules.append(
            Rule(
                "invalid_date",
                column.name,
                present & ~_date_ok(c),
                "not a real calendar date in YYYYMMDD",
            )
        )
    elif column.type == "yearmonth":
        rules.append(
            Rule(
                "invalid_date",
                column.name,
                present & ~c.str.contains(_YM_RE),
                "not a year-month in YYYYMM",
            )
        )
    elif column.type == "integer":
        rules.append(Rule("not_integer", column.name, present & ~c.str.contains(_INT_RE), "not a whole number"))
    elif column.type == "decimal":
        rules.append(
            Rule(
                "not_decimal",
                column.name,
                present & ~c.str.contains(_DEC_RE),
                "not a decimal number",
            )
        )
    if column.range is not None and column.type in ("integer", "decimal"):
        number = c.cast(pl.Float64, strict=False)
        bad = pl.lit(False)
        if column.range.min is not None:
            bad = bad | (number < column.range.min)
        if column.range.max is not None:
            bad = bad | (number > column.range.max)
        rules.append(
            Rule(
                "out_of_range",
                column.name,
                present & number.is_not_null() & bad,
                f"outside [{column.range.min}, {column.range.max}]",
            )
        )
    if column.codes:
        values = catalog.codeset(column.codes).values
        rules.append(
            Rule(
                "unknown_code",
                column.name,
                present & ~c.is_in(values),
                f"not in code set {column.codes}",
            )
        )
    if column.pattern and column.type not in ("date", "yearmonth"):
        rules.append(
            Rule(
                "pattern",
                column.name,
                present & ~c.str.contains(column.pattern),
                f"does not match {column.pattern}",
            )
        )
    if column.check:
        check = CHECKS[column.check]
        ok = check.expr(c).fill_null(False)
        rules.append(
            Rule(
                CHECK_RULES.get(column.check, f"check_{column.check}"),
                column.name,
                present & ~ok,
                check.description.en,
            )
        )
    return rules


def compile_rules(definition: FileDef, catalog: Catalog) -> list[Rule]:
    """All row-level rules of a file, in column order."""
    rules: list[Rule] = []
    for column in definition.columns:
        rules.extend(column_rules(column, catalog))
    return rules


def distinct_values(frame: pl.DataFrame, columns: Sequence[str]) -> dict[str, pl.Series]:
    """Each column's distinct values (null included), computed in one parallel pass."""
    uniques = frame.select(pl.col(c).unique().implode() for c in columns)
    return {c: uniques.get_column(c)[0] for c in columns}


def _row_flags(rules: Sequence[Rule], distinct: dict[str, pl.Series]) -> list[pl.Expr | None]:
    """Turn each rule into a cheap per-row test.

    Every column rule depends on one value only, so it is judged once per distinct value
    (a code column has a few hundred, not hundreds of thousands) and the verdict reaches the
    rows through a hash lookup; a rule no value fails costs nothing further.
    """
    flags: list[pl.Expr | None] = []
    tables = {c: pl.DataFrame({c: distinct[c]}).lazy() for c in {r.column for r in rules}}
    # One engine call for all rules (each on its column's distinct values), not one per rule.
    verdicts = pl.collect_all([tables[r.column].filter(r.fail.fill_null(False)) for r in rules])
    for i, (rule, failing) in enumerate(zip(rules, verdicts, strict=True)):
        bad = failing.get_column(rule.column)
        if bad.len() == 0:
            flags.append(None)
            continue
        col = pl.col(rule.column)
        expr = col.is_in(bad.drop_nulls().implode()) if bad.drop_nulls().len() else pl.lit(False)
        if bad.null_count():
            expr = expr | col.is_null()
        flags.append(expr.fill_null(False).alias(f"_f{i}"))
    return flags


def evaluate(
    frame: pl.DataFrame, rules: Sequence[Rule], distinct: dict[str, pl.Series] | None = None
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Split a chunk into (accepted rows, rejected rows with ``_rule``, ``_column``, ``_value``,
    ``_rules``). ``distinct`` may pass in precomputed distinct values per column."""
    no_reject = ("_rule", "_column", "_value", "_rules")
    distinct = distinct or distinct_values(frame, sorted({r.column for r in rules}))
    flags = _row_flags(rules, distinct)
    active = [(i, r, f) for i, (r, f) in enumerate(zip(rules, flags, strict=True)) if f is not None]
    if not active:
        return frame, frame.clear().with_columns(pl.lit(None, pl.String).alias(n) for n in no_reject)
    scored = frame.with_columns(f for _, _, f in active)
    names = [f"_f{i}" for i, _, _ in active]
    any_fail = pl.any_horizontal([pl.col(n) for n in names])
    failing = scored.filter(any_fail)
    accepted = scored.filter(~any_fail).drop(names)
    first_rule = pl.coalesce([pl.when(pl.col(f"_f{i}")).then(pl.lit(r.name)) for i, r, _ in active])
    first_col = pl.coalesce([pl.when(pl.col(f"_f{i}")).then(pl.lit(r.column)) for i, r, _ in active])
    first_val = pl.coalesce(
        [pl.when(pl.col(f"_f{i}")).then(pl.col(r.column).fill_null("<null>")) for i, r, _ in active]
    )
    all_rules = pl.concat_str(
        [pl.when(pl.col(f"_f{i}")).then(pl.lit(f"{r.name}:{r.column}")) for i, r, _ in active],
        separator=";",
        ignore_nulls=True,
    )
    rejected = failing.with_columns(
        first_rule.alias("_rule"),
        first_col.alias("_column"),
        first_val.alias("_value"),
        all_rules.alias("_rules"),
    ).drop(names)
    return accepted, rejected


_POLARS_TYPES = {"integer": pl.Int64, "decimal": pl.Float64}


def typed(frame: pl.DataFrame, definition: FileDef) -> pl.DataFrame:
    """Cast validated string columns to their catalog types (dates become ``Date``)."""
    casts = []
    for column in definition.columns:
        if column.name not in frame.columns:
            continue
        c = pl.col(column.name)
        if column.type == "date":
            casts.append(c.str.strptime(pl.Date, "%Y%m%d", strict=True))
        elif column.type in _POLARS_TYPES:
            casts.append(c.cast(_POLARS_TYPES[column.type], strict=True))
    return frame.with_columns(casts) if casts else frame


def data_year(definition: FileDef) -> pl.Expr:
    """The row's data year, from the catalog's ``year_column`` (YYYYMM, YYYYMMDD or YYYY)."""
    return pl.col(definition.year_column).cast(pl.String).str.slice(0, 4).cast(pl.Int32)


def raw_line(columns: Sequence[str]) -> pl.Expr:
    """Rebuild the source line from string columns (exact: the format has no quoting)."""
    return pl.concat_str([pl.col(c).fill_null("") for c in columns], separator=",")
