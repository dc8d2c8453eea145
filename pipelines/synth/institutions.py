"""Contracted institutions: medical centres, hospitals, clinics by specialty, pharmacies."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import polars as pl

from pipelines.synth._data import table
from pipelines.synth.ids import unique_national_ids
from pipelines.synth.population import N_ID_BLOCKS

# HOSP_CONT_TYPE level -> (institutions per 23.4 M people, minimum, ownership codes, beds,
# physicians). Taiwan 2023: ~23 medical centres, ~85 regional, ~360 district hospitals,
# ~11,000 Western-medicine clinics, ~6,500 contracted pharmacies.
LEVELS = {
    "1": (23, 2, ["01", "04", "06", "11", "13"], (800, 2500), (120, 300)),
    "2": (85, 3, ["01", "02", "05", "09", "11", "12", "15"], (300, 800), (40, 120)),
    "3": (360, 6, ["02", "09", "11", "14", "15"], (20, 300), (8, 40)),
    "4": (11000, 80, ["35"], (0, 1), (1, 4)),
    "5": (6500, 30, ["59"], (0, 1), (1, 2)),
}
NATION = 23_400_000
LEVEL_NAME = {"1": "醫學中心", "2": "醫院", "3": "醫院", "4": "診所", "5": "藥局"}


@dataclass(frozen=True)
class Institutions:
    """All institutions; arrays aligned by position; physicians are a flat pool."""

    frame: pl.DataFrame  # HOSP_ID, level, hos, county, specialty, beds, name, phys_start, phys_n
    physicians: pl.Series  # national IDs of physicians/pharmacists
    keys: dict = field(default_factory=dict)  # integer-coded lookups, see :func:`_keys`


def make_institutions(people: int, rng: np.random.Generator) -> Institutions:
    """Institutions sized for a population of ``people`` (at least a working minimum)."""
    counties = table("counties")
    weights = counties["population_k"].cast(pl.Float64).to_numpy()
    weights = weights / weights.sum()
    icd = table("icd10cm_outpatient")
    spec = icd.group_by("func_type").agg(pl.col("weight").cast(pl.Float64).sum()).sort("func_type")
    rows = []
    for level, (per_nation, minimum, owners, beds, phys) in LEVELS.items():
        n = max(minimum, round(people * per_nation / NATION))
        county = rng.choice(len(weights), n, p=weights)
        if level == "4":  # clinics: specialty mix follows the diagnosis mix, every one present
            sw = spec["weight"].to_numpy() / spec["weight"].sum()
            specialty = spec["func_type"].to_numpy()[
                np.concatenate([np.arange(len(sw)), rng.choice(len(sw), max(0, n - len(sw)), p=sw)])
            ][:n]
        else:
            specialty = np.full(n, "00" if level != "5" else "")
        rows.append(
            pl.DataFrame(
                {
                    "level": [level] * n,
                    "hos": rng.choice(owners, n),
                    "county": county,
                    "specialty": specialty,
                    "beds": rng.integers(beds[0], beds[1], n) if level < "4" else np.zeros(n, int),
                    "phys_n": rng.integers(phys[0], phys[1] + 1, n),
                }
            )
        )
    df = pl.concat(rows)
    n = df.height
    serial = rng.choice(1_000_000, n, replace=False)
    codes = counties["code"].to_numpy()
    df = df.with_columns(
        HOSP_ID=pl.col("hos")
        + pl.Series(codes[df["county"].to_numpy()]).str.slice(0, 2)
        + pl.Series(serial).cast(pl.Utf8).str.zfill(6),
        phys_start=pl.col("phys_n").cum_sum() - pl.col("phys_n"),
        name=pl.Series(counties["zh"].to_numpy()[df["county"].to_numpy()])
        + pl.Series(_name_stems(rng, n))
        + pl.col("level").replace_strict(LEVEL_NAME),
    )
    total = int(df["phys_n"].sum())
    sex = rng.integers(1, 3, total)
    physicians = unique_national_ids(rng, sex, N_ID_BLOCKS - 1, N_ID_BLOCKS)
    return Institutions(df, physicians, _keys(df))


def _keys(df: pl.DataFrame) -> dict:
    # Integer codes of level/specialty/county so claim generators match institutions with
    # integer searches instead of string arrays (the hot path of every chunk).
    icd_ft = table("icd10cm_outpatient")["func_type"]
    vocab = sorted({*df["specialty"].to_list(), *icd_ft.to_list(), "", "00", "01", "22"})
    pos = {s: i for i, s in enumerate(vocab)}
    level = df["level"].cast(pl.Int64).to_numpy()
    spec = np.array([pos[s] for s in df["specialty"].to_list()], dtype=np.int64)
    county = df["county"].to_numpy().astype(np.int64)
    ls = level * 1000 + spec
    return {
        "level": level,
        "spec": spec,
        "county": county,
        "spec_names": pl.Series(vocab),
        "icd_spec": np.array([pos[s] for s in icd_ft.to_list()], dtype=np.int64),
        "spec_00": pos["00"],
        "spec_01": pos["01"],
        "spec_22": pos["22"],
        "spec_ph": pos[""],
        "ls": ls,
        "lsc": ls * 100 + county,
        "hosp_id": df["HOSP_ID"],
        "phys_start": df["phys_start"].to_numpy(),
        "phys_n": df["phys_n"].to_numpy(),
    }


_STEMS = list("仁安康健福德和平信心慈恩明光長庚國泰新光宏恩聖馬大同榮民博愛聯合耕莘")


def _name_stems(rng: np.random.Generator, n: int) -> list[str]:
    a = rng.integers(0, len(_STEMS), n)
    b = rng.integers(0, len(_STEMS), n)
    return [_STEMS[i] + _STEMS[j] for i, j in zip(a, b, strict=True)]
