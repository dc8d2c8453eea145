"""Coarsening expressions: what each catalog rule turns a vault value into."""

from __future__ import annotations

from datetime import date

import duckdb
import pytest

from pipelines.provision.coarsen import coarsen_sql, describe
from pipelines.provision.errors import SelectionError


def _apply(expr_sql: str, value: str, sql_type: str):
    return duckdb.sql(f"SELECT {expr_sql} FROM (SELECT CAST('{value}' AS {sql_type}) AS v)").fetchall()[0][0]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1958-05-09", date(1958, 5, 1)),
        ("2000-02-29", date(2000, 2, 1)),
        ("2023-12-31", date(2023, 12, 1)),
        ("1990-01-01", date(1990, 1, 1)),
    ],
)
def test_a_date_rounds_down_to_its_month_and_stays_a_date(value, expected):
    assert _apply(coarsen_sql("v", "year_month", "date"), value, "DATE") == expected


def test_a_yearmonth_text_becomes_the_same_month_date():
    assert _apply(coarsen_sql("v", "year_month", "yearmonth"), "202311", "VARCHAR") == date(2023, 11, 1)


@pytest.mark.parametrize(
    ("value", "sql_type", "column_type"), [("1958-05-09", "DATE", "date"), ("195805", "VARCHAR", "yearmonth")]
)
def test_year_keeps_only_the_year_as_a_small_integer(value, sql_type, column_type):
    expr = coarsen_sql("v", "year", column_type)
    assert _apply(expr, value, sql_type) == 1958
    assert (
        duckdb.sql(f"SELECT typeof({expr}) FROM (SELECT CAST('{value}' AS {sql_type}) AS v)").fetchall()[0][0]
        == "SMALLINT"
    )


def test_a_rule_that_does_not_fit_the_type_is_refused():
    with pytest.raises(SelectionError, match="does not apply to a string column"):
        coarsen_sql("v", "year_month", "string")


def test_the_dictionary_says_how_the_month_is_written():
    assert "first day of its month" in describe("year_month")
