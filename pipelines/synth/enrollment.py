"""Enrollment rows (H_NHI_ENROL): coverage segments, insured person, unit, Chinese contact text."""

from __future__ import annotations

import numpy as np
import polars as pl

from pipelines.synth._data import table
from pipelines.synth.ids import bans
from pipelines.synth.population import People

_SURNAMES = list(
    "陳林黃張李王吳劉蔡楊許鄭謝郭洪曾邱廖賴周徐蘇葉莊呂江何蕭羅高潘簡朱鍾彭游詹胡施沈余"
)
_GIVEN = list("家宜志明俊傑淑芬美玲怡君雅婷冠宇承恩欣怡子涵宗翰佳蓉建宏文雄秀英嘉豪柏翰思妤育誠")
_SALARY = np.array([27470, 28800, 30300, 31800, 33300, 36300, 40100, 45800, 50600, 57800, 72800])


def make_enrollment(people: People, year: int, rng: np.random.Generator) -> pl.DataFrame:
    """One coverage segment per person for ``year``; ~5% change insured unit mid-year (two)."""
    n = len(people)
    head = people.head
    is_head = head == np.arange(n)
    unit_pool = bans(rng, max(1, n // 20 + 1))
    unit_of_head = rng.integers(0, len(unit_pool), n)
    unit_type = np.where(
        people.age[head] >= 65, "61", rng.choice(["12", "12", "12", "11", "14", "21", "31"], n)
    )
    counties = table("counties")
    county_code = counties["code"].to_numpy()[people.county]
    birth = people.birth
    in_date = np.maximum(birth, rng.integers(2005, year, n) * 10000 + 101)
    name = (
        pl.Series(np.array(_SURNAMES)[rng.integers(0, len(_SURNAMES), n)])
        + pl.Series(np.array(_GIVEN)[rng.integers(0, len(_GIVEN), n)])
        + pl.Series(np.array(_GIVEN)[rng.integers(0, len(_GIVEN), n)])
    )
    roads = counties["roads"].to_numpy()[people.county]
    road = np.array([r.split("|")[k] for r, k in zip(roads, rng.integers(0, 5, n), strict=True)])
    address = (
        pl.Series(counties["zh"].to_numpy()[people.county])
        + pl.Series(road)
        + pl.Series(rng.integers(1, 400, n)).cast(pl.Utf8)
        + "號"
    )
    mobile = rng.random(n) < 0.7
    tel = np.where(
        mobile,
        np.char.add("09", np.char.zfill(rng.integers(0, 10**8, n).astype(str), 8)),
        np.char.add(
            np.char.add(counties["area_code"].to_numpy()[people.county].astype(str), "-"),
            np.char.zfill(rng.integers(2_000_000, 9_000_000, n).astype(str), 7),
        ),
    )
    base = pl.DataFrame(
        {
            "ID": people.id,
            "ID_S": people.sex.astype(str),
            "ID_BIRTHDAY": birth,
            "ID1": people.id.gather(head),
            "ID_RELATION": people.relation.astype(str),
            "ID1_UNIT": unit_type[head],
            "ID1_CITY": county_code[head],
            "ID1_AMT": np.where(is_head, _SALARY[rng.integers(0, len(_SALARY), n)], 0),
            "UNIT_ID": unit_pool.gather(unit_of_head[head]),
            "ID_IN_DATE": in_date,
            "ID_OUT_DATE": pl.Series([None] * n, dtype=pl.Int64),
            "ID_STATUS": "1",
            "NAME": name,
            "ADDRESS": address,
            "TEL": tel,
            "_pidx": np.arange(n),
        }
    ).with_columns(ID_BIRTHDAY=pl.col("ID_BIRTHDAY"))
    base = base.with_columns(
        PREM_YM=pl.max_horizontal(pl.col("ID_IN_DATE") // 100, pl.lit(year * 100 + 1))
    )
    # Job changes: the first segment ends (轉出) on a mid-year day, the second starts next day.
    mover = (rng.random(n) < 0.05) & is_head & (people.age >= 20) & (people.age < 65)
    m = np.flatnonzero(mover)
    cut_month = rng.integers(2, 12, len(m))
    out_date = year * 10000 + cut_month * 100 + 14
    first = base[m].with_columns(ID_OUT_DATE=pl.Series(out_date), ID_STATUS=pl.lit("3"))
    second = base[m].with_columns(
        ID_IN_DATE=pl.Series(out_date + 1),
        PREM_YM=pl.Series(year * 100 + cut_month),
        UNIT_ID=unit_pool.gather(rng.integers(0, len(unit_pool), len(m))),
    )
    keep = base.filter(~pl.Series(mover))
    return pl.concat([keep, first, second]).sort("_pidx", "ID_IN_DATE")
