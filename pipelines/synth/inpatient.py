"""Inpatient admissions (H_NHI_IPDTE) and their order lines (H_NHI_IPDTO) for one chunk-year.

About 0.13 admissions per person-year, rising steeply with age; stays of a few days (longer
in the elderly) that start and end within the data year, so IN_DATE < OUT_DATE and
E_BED_DAY + S_BED_DAY = OUT_DATE - IN_DATE. About 20 order lines per admission (ward fee,
drugs, procedures, special material); MED_DOT = Σ ORDER_DOT and APPL_DOT = MED_DOT - PART_DOT.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from pipelines.synth._data import table
from pipelines.synth._sampling import day_weights, pick_within, running_seq
from pipelines.synth.institutions import Institutions
from pipelines.synth.outpatient import (
    KEY,
    OutpatientState,
    diagnoses,
    drug_table,
    icd_probs,
    next_month,
    optional,
)
from pipelines.synth.population import People

MEAN_ADMISSIONS = 0.13  # per person-year
# Relative admission rate by age (lower bound of the band): the elderly far more often.
AGE_REL = np.array([[0, 0.7], [5, 0.3], [15, 0.4], [45, 0.8], [65, 1.8], [75, 3.2], [85, 4.5]])
MEAN_ORDERS = 20.0
LEVEL_P = np.array([0.35, 0.35, 0.30])  # medical centre, regional, district hospital
CASE = pl.Series(["1", "2", "5"])
CASE_P = np.array([0.60, 0.05, 0.35])
TRAN = pl.Series(["1", "3", "4", "5", "6"])
WARD = pl.Series(["03001A", "03001B", "03001B"])  # acute ward day fee per hospital level
WARD_FEE = np.array([1473.0, 1315.0, 1166.0])
# ICD-10-PCS principal procedures (appendectomy, knee replacement, caesarean, PTCA ...).
PCS = pl.Series(["0DTJ4ZZ", "0SRD0JZ", "10D00Z1", "02703ZZ", "0FT44ZZ", "5A1955Z", "0QS604Z"])
MATERIAL = pl.Series(["FBA0123456", "FBB0234567", "FBS0345678"])
MATERIAL_PRICE = np.array([3200.0, 8600.0, 15400.0])
LINE_KIND_P = np.array([0.60, 0.35, 0.05])  # drug, procedure, special material


def admission_rates(age: np.ndarray) -> np.ndarray:
    """Expected admissions per year by age, scaled to a population mean of 0.13."""
    bands = table("age_bands")
    mid = bands["age_lo"].cast(pl.Int64).to_numpy() + 2
    share = bands["share"].cast(pl.Float64).to_numpy()
    rel_at = AGE_REL[np.searchsorted(AGE_REL[:, 0], mid, side="right") - 1, 1]
    scale = MEAN_ADMISSIONS / (share @ rel_at / share.sum())
    return AGE_REL[np.searchsorted(AGE_REL[:, 0], age, side="right") - 1, 1] * scale


def make_admissions(
    people: People,
    inst: Institutions,
    year: int,
    state: OutpatientState,
    rng: np.random.Generator,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Admissions (IPDTE columns) and order lines (IPDTO columns) of ``people`` in ``year``."""
    ik = inst.keys
    pidx = np.repeat(np.arange(len(people)), rng.poisson(admission_rates(people.age)))
    n = len(pidx)
    age = people.age[pidx]
    (dx1, dx2, dx3, dx4, dx5) = diagnoses(people, pidx, rng, 5)
    level = rng.choice(3, n, p=LEVEL_P) + 1
    want = level * 1000 + ik["spec_00"]
    h = pick_within(ik["lsc"], want * 100 + people.county[pidx], rng)
    h = np.where(h < 0, pick_within(ik["ls"], want, rng), h)
    li = ik["level"][h] - 1
    # Length of stay: geometric, longer with age, within 1..60 days and inside the year.
    los = np.minimum(rng.geometric(1 / (4.0 + age / 25)), 60)
    days, _ = day_weights(year)
    in_day = np.floor(rng.random(n) * (len(days) - los)).astype(np.int64)
    out_day = in_day + los
    in_date, out_date = days[in_day], days[out_day]
    fee_ym = out_date // 100
    case = rng.choice(3, n, p=CASE_P)
    died = rng.random(n) < np.where(age >= 75, 0.05, 0.01)
    tran = np.where(died, 2, rng.choice([0, 0, 0, 0, 0, 0, 0, 0, 1, 3, 4], n))
    appl_type = np.where(rng.random(n) < 0.03, 2, 1)
    gid = ((h * 12 + (fee_ym % 100 - 1)) * 3 + case) * 2 + (appl_type - 1)
    seq = running_seq(gid, state.counters)
    prsn = ik["phys_start"][h] + np.floor(rng.random(n) * ik["phys_n"][h]).astype(np.int64)
    drg = np.where(case == 2, rng.integers(10100, 99999, n), -1)

    # Order lines: one ward-fee line (quantity = bed days) then drugs, procedures, material.
    n_lines = 1 + rng.poisson(MEAN_ORDERS - 1, n)
    owner = np.repeat(np.arange(n), n_lines)
    first = np.searchsorted(owner, owner, side="left")
    seq_in = np.arange(len(owner)) - first + 1
    ward = seq_in == 1
    kind = np.where(ward, 1, rng.choice(3, len(owner), p=LINE_KIND_P))
    dt = drug_table()
    procs = table("procedures")
    di = rng.integers(0, len(dt["price"]), len(owner))
    pi = rng.integers(0, procs.height, len(owner))
    mi = rng.integers(0, len(MATERIAL), len(owner))
    ppoints = procs["points"].cast(pl.Float64).to_numpy()
    qty = np.where(
        ward, los[owner], np.where(kind == 0, rng.integers(1, 30, len(owner)), 1)
    ).astype(np.float64)
    price = np.where(
        ward,
        WARD_FEE[li[owner]],
        np.select([kind == 0, kind == 1], [dt["price"][di], ppoints[pi]], MATERIAL_PRICE[mi]),
    )
    odot = np.round(qty * price).astype(np.int64)
    med_dot = np.bincount(owner, weights=odot, minlength=n).astype(np.int64)
    exempt = rng.random(n) < 0.12
    part = np.where(exempt, 0, np.minimum(np.round(med_dot * 0.1), 5000)).astype(np.int64)
    icd = icd_probs()[0]["code"]
    has = [rng.random(n) < p for p in (0.7, 0.45, 0.25, 0.12)]
    has_op = rng.random(n) < 0.4
    head = pl.DataFrame(
        {
            "FEE_YM": fee_ym,
            "APPL_TYPE": appl_type,
            "HOSP_ID": ik["hosp_id"].gather(h),
            "APPL_DATE": next_month(fee_ym, appl_type) * 100 + 5 + (h % 20),
            "CASE_TYPE": CASE.gather(case),
            "SEQ_NO": seq,
            "ID_BIRTHDAY": people.birth[pidx],
            "ID": people.id.gather(pidx),
            "ID_S": people.sex[pidx],
            "GAVE_KIND": np.where(icd.gather(dx1).str.slice(0, 1).is_in(["S", "T"]), 3, 4),
            "TRAC_EVEN": pl.Series(np.where(rng.random(n) < 0.02, "Y", "N")),
            "CARD_SEQ_NO": rng.integers(1, 7, n),
            "FUNC_TYPE": ik["spec_names"].gather(ik["icd_spec"][dx1]),
            "IN_DATE": in_date,
            "OUT_DATE": out_date,
            "APPL_BEG_DATE": in_date,
            "APPL_END_DATE": out_date,
            "E_BED_DAY": los,
            "S_BED_DAY": np.zeros(n, np.int64),
            "PRSN_ID": inst.physicians.gather(prsn),
            "DRG_CODE": optional(pl.Series(np.maximum(drg, 0)).cast(pl.Utf8), drg >= 0),
            "TRAN_CODE": TRAN.gather(tran),
            "ICD9CM_1": icd.gather(dx1),
            "ICD9CM_2": optional(icd.gather(dx2), has[0]),
            "ICD9CM_3": optional(icd.gather(dx3), has[1]),
            "ICD9CM_4": optional(icd.gather(dx4), has[2]),
            "ICD9CM_5": optional(icd.gather(dx5), has[3]),
            "ICD_OP_CODE1": optional(PCS.gather(rng.integers(0, len(PCS), n)), has_op),
            "ICD_OP_CODE2": optional(
                PCS.gather(rng.integers(0, len(PCS), n)), has_op & (rng.random(n) < 0.25)
            ),
            "MED_DOT": med_dot,
            "PART_DOT": part,
            "APPL_DOT": med_dot - part,
            "PART_MARK": optional(pl.Series(["001"] * n), exempt),
            "TW_DRGS": optional(pl.Series(np.maximum(drg, 0)).cast(pl.Utf8), drg >= 0),
            "_n_orders": n_lines,
        }
    ).with_columns(
        pl.col("SEQ_NO").cast(pl.Utf8).str.zfill(6),
        pl.col("CARD_SEQ_NO").cast(pl.Utf8).str.zfill(4),
        pl.col("APPL_TYPE", "ID_S", "GAVE_KIND").cast(pl.Utf8),
    )
    code = pl.select(
        pl.when(pl.lit(pl.Series(ward)))
        .then(pl.lit(WARD).gather(pl.lit(pl.Series(li[owner]))))
        .when(pl.lit(pl.Series(kind == 0)))
        .then(pl.lit(dt["no"]).gather(pl.lit(pl.Series(di))))
        .when(pl.lit(pl.Series(kind == 1)))
        .then(pl.lit(procs["code"]).gather(pl.lit(pl.Series(pi))))
        .otherwise(pl.lit(MATERIAL).gather(pl.lit(pl.Series(mi))))
    ).to_series()
    lines = head.select(KEY)[owner].with_columns(
        ORDER_SEQ_NO=pl.Series(seq_in),
        ORDER_TYPE=pl.Series(["1", "2", "3"]).gather(np.where(ward, 1, kind)),
        ORDER_CODE=code,
        ORDER_QTY=pl.Series(qty),
        ORDER_PRICE=pl.Series(price),
        ORDER_DOT=pl.Series(odot),
        PAY_RATE=pl.lit(1.0),
    )
    return head, lines
