"""The synthetic population: one chunk of people with ID, sex, birth date, county, household."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from pipelines.synth._data import table
from pipelines.synth.ids import unique_national_ids

MALES_PER_100_FEMALES = 98.0
N_ID_BLOCKS = 64  # block 63 is reserved for physicians and pharmacists


@dataclass(frozen=True)
class People:
    """One chunk of people; arrays are aligned by position."""

    id: pl.Series
    sex: np.ndarray  # 1 male, 2 female
    birth: np.ndarray  # YYYYMMDD int
    age: np.ndarray  # completed years at the reference date
    county: np.ndarray  # index into the counties table
    head: np.ndarray  # position of the insured person (self for the insured)
    relation: np.ndarray  # '0'..'9' relation code text

    def __len__(self) -> int:
        return len(self.sex)


def _allocate(n: int, shares: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    # Largest-remainder allocation, then shuffled: exact shares even for small chunks, so the
    # realism tests hold with tight tolerances instead of drifting with sampling noise.
    raw = shares / shares.sum() * n
    counts = np.floor(raw).astype(np.int64)
    rest = n - counts.sum()
    counts[np.argsort(-(raw - counts), kind="stable")[:rest]] += 1
    return rng.permutation(np.repeat(np.arange(len(shares)), counts))


def make_people(n: int, *, block: int, ref_year: int, rng: np.random.Generator) -> People:
    """``n`` people of chunk ``block`` with 2023 Taiwanese age/sex/region structure."""
    bands = table("age_bands")
    shares = bands["share"].cast(pl.Float64).to_numpy()
    band = _allocate(n, shares, rng)
    age = bands["age_lo"].cast(pl.Int64).to_numpy()[band] + rng.integers(0, 5, n)
    p_male = MALES_PER_100_FEMALES / (100 + MALES_PER_100_FEMALES)
    sex = _allocate(n, np.array([p_male, 1 - p_male]), rng) + 1
    # Birth date: a uniform day of the year that makes the person `age` on 1 July ref_year.
    doy = rng.integers(0, 365, n)
    birth_year = ref_year - age - (doy >= 181)
    birth = (
        pl.Series((birth_year - 1970).astype("datetime64[Y]") + doy.astype("timedelta64[D]"))
        .cast(pl.Date)
        .dt.strftime("%Y%m%d")
        .cast(pl.Int64)
        .to_numpy()
    )
    counties = table("counties")
    county = _allocate(n, counties["population_k"].cast(pl.Float64).to_numpy(), rng)
    ids = unique_national_ids(rng, sex, block, N_ID_BLOCKS)
    head, relation = _households(age, county, rng)
    return People(ids, sex, birth, age, county, head, relation)


def _households(
    age: np.ndarray, county: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    # Dependants (children, most of the elderly, some spouses) point to a working-age insured
    # person of the same county; everyone else is self-insured (relation 0 stands for self).
    n = len(age)
    pos = np.arange(n)
    head = pos.copy()
    relation = np.full(n, "0", dtype=object)
    worker = (age >= 20) & (age < 65)
    dep = (age < 20) | ((age >= 65) & (rng.random(n) < 0.6)) | (worker & (rng.random(n) < 0.15))
    for c in np.unique(county):
        heads = pos[(county == c) & worker & ~dep]
        if len(heads) == 0:
            heads = pos[(county == c) & ~dep]
        members = pos[(county == c) & dep]
        if len(heads) == 0:
            dep[members] = False
            continue
        head[members] = heads[rng.integers(0, len(heads), len(members))]
    relation[dep & (age < 20)] = "3"
    relation[dep & (age >= 65)] = "2"
    relation[dep & (age >= 20) & (age < 65)] = "1"
    return head, relation
