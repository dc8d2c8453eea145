"""The catalog's coarsening of quasi-identifiers, as DuckDB expressions over vault columns.

``year_month`` rounds a date down to the first day of its month and keeps it a date, as
OpenSAFELY gives a date of birth: ages and intervals still compute, and the extract's
Parquet keeps a 4-byte date instead of text (formatting ten million dates as ``YYYY-MM``
text cost 0.4 CPU-s per ten million rows, the largest single cost of the copy beyond a plain
one). A ``yearmonth`` column (text ``YYYYMM``) becomes the same date, so one coarsened form
reads the same everywhere. ``year`` keeps the year as a 16-bit integer. ``none`` (or no
rule) leaves the column as stored.
"""

from __future__ import annotations

from pipelines.provision.errors import SelectionError

RULES = ("year_month", "year")


def coarsen_sql(expr: str, rule: str, column_type: str) -> str:
    """SQL turning ``expr`` (a vault column of catalog type ``column_type``) into its coarse form."""
    if column_type == "date":
        if rule == "year_month":
            return f"CAST(date_trunc('month', {expr}) AS DATE)"
        if rule == "year":
            return f"CAST(year({expr}) AS SMALLINT)"
    elif column_type == "yearmonth":
        if rule == "year_month":
            return f"make_date(CAST(substr({expr}, 1, 4) AS INTEGER), CAST(substr({expr}, 5, 2) AS INTEGER), 1)"
        if rule == "year":
            return f"CAST(substr({expr}, 1, 4) AS SMALLINT)"
    raise SelectionError(f"coarsening rule {rule!r} does not apply to a {column_type} column")


def describe(rule: str) -> str:
    """How a coarsened column appears in the extract (for the data dictionary)."""
    return {
        "year_month": "coarsened to the month: a date rounded down to the first day of its month "
        "(the day is always 01)",
        "year": "coarsened to the year (integer)",
    }[rule]
