"""The catalog's coarsening of quasi-identifiers, as DuckDB expressions over vault columns.

``year_month`` turns a date into text ``YYYY-MM`` (a ``yearmonth`` column ``YYYYMM`` into
``YYYY-MM`` too, so one coarsened form reads the same everywhere); ``year`` keeps the year
as a 16-bit integer. ``none`` (or no rule) leaves the column as stored.
"""

from __future__ import annotations

from pipelines.provision.errors import SelectionError

RULES = ("year_month", "year")


def quote(name: str) -> str:
    """A DuckDB-quoted identifier."""
    return '"' + name.replace('"', '""') + '"'


def coarsen_sql(expr: str, rule: str, column_type: str) -> str:
    """SQL turning ``expr`` (a vault column of catalog type ``column_type``) into its coarse form."""
    if column_type == "date":
        if rule == "year_month":
            return f"strftime({expr}, '%Y-%m')"
        if rule == "year":
            return f"CAST(year({expr}) AS SMALLINT)"
    elif column_type == "yearmonth":
        if rule == "year_month":
            return f"substr({expr}, 1, 4) || '-' || substr({expr}, 5, 2)"
        if rule == "year":
            return f"CAST(substr({expr}, 1, 4) AS SMALLINT)"
    raise SelectionError(f"coarsening rule {rule!r} does not apply to a {column_type} column")


def describe(rule: str) -> str:
    """How a coarsened column appears in the extract (for the data dictionary)."""
    return {
        "year_month": "coarsened to year-month, text YYYY-MM",
        "year": "coarsened to the year (integer)",
    }[rule]
