"""Community-pharmacy dispensings (H_NHI_DRUGE) and their drug lines (H_NHI_DRUGO).

A dispensing is derived from an outpatient visit whose prescription was released to a
pharmacy (OPDTE ``MED_TYPE`` 1, drug lines ORDER_TYPE 4 in OPDTO): the pharmacy (HOS 59)
is in the patient's county, ``R_HOSP_ID`` is the prescribing institution, the drug lines
are the visit's own drugs, and Σ DRUGO ``TOTAL_DOT`` = DRUGE ``DRUG_DOT``.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from pipelines.synth._sampling import day_weights, pick_within, running_seq
from pipelines.synth.institutions import Institutions
from pipelines.synth.outpatient import (
    CASE_TYPES,
    KEY,
    OutpatientState,
    drug_table,
    icd_probs,
    next_month,
    optional,
)
from pipelines.synth.population import People

DSVC_ACUTE, DSVC_CHRONIC = 48, 69  # pharmacy service fee points: ≤7-day and refill scripts
COPAY_RATE, COPAY_CAP, COPAY_FREE = 0.2, 200, 100  # drug co-payment: 20% above 100 points


def make_dispensings(
    people: People,
    inst: Institutions,
    year: int,
    visits: dict[str, np.ndarray],
    state: OutpatientState,
    rng: np.random.Generator,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """DRUGE rows and DRUGO rows for the released prescriptions among ``visits``.

    ``visits`` is the array bundle returned by :func:`pipelines.synth.outpatient.make_visits`.
    """
    ik = inst.keys
    released = visits["med_type"] == 1
    r = np.flatnonzero(released)
    n = len(r)
    # Drug lines of released visits; dv is sorted by visit (np.repeat), so lines stay grouped.
    line_mask = released[visits["dv"]]
    lv = visits["dv"][line_mask]
    disp_of_visit = np.cumsum(released) - 1
    owner = disp_of_visit[lv]
    di, qty, dot = visits["di"][line_mask], visits["qty"][line_mask], visits["dot"][line_mask]
    drug_dot = np.bincount(owner, weights=dot, minlength=n).astype(np.int64)

    pidx = visits["pidx"][r]
    county = people.county[pidx]
    ph = pick_within(ik["lsc"], (5000 + ik["spec_ph"]) * 100 + county, rng)
    ph = np.where(ph < 0, pick_within(ik["ls"], np.full(n, 5000 + ik["spec_ph"]), rng), ph)
    days, _ = day_weights(year)
    # Most scripts are filled the same day, some the next (never past the data year).
    day = np.minimum(visits["day"][r] + (rng.random(n) < 0.3), len(days) - 1)
    drug_date = days[day]
    fee_ym = drug_date // 100
    vcase = visits["case"][r]
    chronic = vcase == 2
    case = np.where(chronic, 1, 0)  # index into ["1", "2"]
    gid = ((ph * 12 + (fee_ym % 100 - 1)) * len(CASE_TYPES) + case) * 2
    seq = running_seq(gid, state.counters)
    drug_day = visits["drug_day"][r]
    dsvc = np.where(drug_day > 7, DSVC_CHRONIC, DSVC_ACUTE)
    part = np.where(
        chronic | (drug_dot <= COPAY_FREE),
        0,
        np.minimum(np.round(drug_dot * COPAY_RATE), COPAY_CAP),
    ).astype(np.int64)
    t_dot = drug_dot + dsvc
    phar = ik["phys_start"][ph] + np.floor(rng.random(n) * ik["phys_n"][ph]).astype(np.int64)
    icd = icd_probs()[0]["code"]
    dx2 = visits["dx2"][r]
    head = pl.DataFrame(
        {
            "FEE_YM": fee_ym,
            "APPL_TYPE": pl.Series(["1"] * n, dtype=pl.Utf8),
            "HOSP_ID": ik["hosp_id"].gather(ph),
            "APPL_DATE": next_month(fee_ym) * 100 + 5 + (ph % 20),
            "CASE_TYPE": pl.Series(["1", "2"]).gather(case),
            "SEQ_NO": seq,
            "R_HOSP_ID": ik["hosp_id"].gather(visits["h"][r]),
            "R_CASE_TYPE": pl.Series(CASE_TYPES).gather(vcase),
            "FUNC_TYPE": ik["spec_names"].gather(visits["ft"][r]),
            "FUNC_DATE": days[visits["day"][r]],
            "DRUG_DATE": drug_date,
            "ID_BIRTHDAY": people.birth[pidx],
            "ID": people.id.gather(pidx),
            "ID_S": people.sex[pidx],
            "CARD_SEQ_NO": visits["card"][r],
            "GAVE_KIND": visits["gave"][r],
            "DRUG_DAY": drug_day,
            "PRSN_ID": inst.physicians.gather(visits["prsn"][r]),
            "PHAR_ID": inst.physicians.gather(phar),
            "DRUG_DOT": drug_dot,
            "DSVC_DOT": dsvc,
            "PART_NO": pl.Series(["I21", "I20"]).gather((part > 0).astype(np.int64)),
            "PART_DOT": part,
            "T_DOT": t_dot,
            "T_APPL_DOT": t_dot - part,
            "ICD9CM_1": icd.gather(visits["dx"][r]),
            "ICD9CM_2": optional(icd.gather(np.maximum(dx2, 0)), dx2 >= 0),
        }
    ).with_columns(
        pl.col("SEQ_NO").cast(pl.Utf8).str.zfill(6),
        pl.col("CARD_SEQ_NO").cast(pl.Utf8).str.zfill(4),
        pl.col("ID_S", "GAVE_KIND").cast(pl.Utf8),
    )
    dt = drug_table()
    first = np.searchsorted(owner, owner, side="left")
    lines = head.select(KEY)[owner].with_columns(
        ORDER_SEQ_NO=pl.Series(np.arange(len(owner)) - first + 1),
        DRUG_NO=dt["no"].gather(di),
        DRUG_USE=pl.Series(dt["use"][di]),
        TOTAL_Q=pl.Series(qty),
        UNIT_P=pl.Series(dt["price"][di]),
        TOTAL_DOT=pl.Series(dot),
        PAY_RATE=pl.lit(1.0),
    )
    return head, lines
