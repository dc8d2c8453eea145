"""Outpatient visits (H_NHI_OPDTE) and their orders (H_NHI_OPDTO) for one chunk-year."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from pipelines.synth._data import table
from pipelines.synth._sampling import day_weights, grouped_choice, pick_within, running_seq
from pipelines.synth.institutions import Institutions
from pipelines.synth.population import People

MEAN_VISITS = 15.0
NB_SHAPE = 1.5  # gamma shape of the visit-rate heterogeneity (over-dispersion)
# Share of visits by HOSP_CONT_TYPE level: clinics about two thirds.
LEVEL_SHARE = {"4": 0.67, "1": 0.12, "2": 0.11, "3": 0.10}
DIAG_DOT = {"1": 410, "2": 380, "3": 350, "4": 352}
TREAT_CODE = {"1": "00156A", "2": "00157B", "3": "00158B", "4": "00109C"}
DSVC = {"1": ("05223A", 59), "2": ("05223B", 54), "3": ("05223B", 54), "4": ("05202C", 48)}
COPAY = {"1": 420, "2": 240, "3": 80, "4": 50}
CASE_TYPES = ["01", "02", "04"]
FRE_PER_DAY = {"QD": 1, "BID": 2, "TID": 3, "QID": 4, "HS": 1, "PRN": 1, "STAT": 1}


@dataclass
class OutpatientState:
    """Per-year running SEQ_NO counters, carried across people chunks."""

    counters: np.ndarray


def new_state(n_inst: int) -> OutpatientState:
    """Fresh counters for one data year."""
    return OutpatientState(np.zeros(n_inst * 12 * len(CASE_TYPES) * 2, dtype=np.int64))


def _age_band(age: np.ndarray) -> np.ndarray:
    return np.where(age < 15, 0, np.where(age < 65, 1, 2))


def _icd_probs() -> tuple[pl.DataFrame, dict[int, np.ndarray]]:
    icd = table("icd10cm_outpatient")
    w = icd["weight"].cast(pl.Float64).to_numpy()
    sex = icd["sex"].fill_null("").to_numpy()
    ages = icd["ages"].to_numpy()
    probs = {}
    for s, s_code in ((1, "M"), (2, "F")):
        for b, b_code in enumerate("cae"):
            ok = np.array(
                [(x in ("", s_code)) and (b_code in a) for x, a in zip(sex, ages, strict=True)]
            )
            p = np.where(ok, w, 0.0)
            probs[s * 10 + b] = p / p.sum()
    return icd, probs


def _letter_probs(items: pl.DataFrame, weight: np.ndarray) -> dict[int, np.ndarray]:
    letters = items["icd_letters"].to_numpy()
    probs = {}
    for k in range(26):
        ch = chr(65 + k)
        ok = np.array([("*" in x) or (ch in x) for x in letters])
        specific = np.array([ch in x for x in letters])
        p = np.where(ok, weight * np.where(specific, 4.0, 1.0), 0.0)
        probs[k] = p / p.sum()
    return probs


def visit_rates(age: np.ndarray) -> np.ndarray:
    """Expected visits per year by age, scaled so the 2023 population mean is 15."""
    bands = table("age_bands")
    lo = bands["age_lo"].cast(pl.Int64).to_numpy()
    rate = bands["visit_rate"].cast(pl.Float64).to_numpy()
    share = bands["share"].cast(pl.Float64).to_numpy()
    scale = MEAN_VISITS / (share @ rate / share.sum())
    return rate[np.searchsorted(lo, age, side="right") - 1] * scale


def make_visits(
    people: People,
    inst: Institutions,
    year: int,
    state: OutpatientState,
    rng: np.random.Generator,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Visits (OPDTE columns) and orders (OPDTO columns) of ``people`` in ``year``."""
    lam = visit_rates(people.age) * rng.gamma(NB_SHAPE, 1 / NB_SHAPE, len(people))
    n_visits = rng.poisson(lam)
    pidx = np.repeat(np.arange(len(people)), n_visits)
    nv = len(pidx)
    days, dw = day_weights(year)
    date = days[rng.choice(len(days), nv, p=dw)]
    month = (date // 100) % 100
    sex = people.sex[pidx]
    icd, probs = _icd_probs()
    dx = grouped_choice(sex * 10 + _age_band(people.age[pidx]), probs, rng)
    dx2 = grouped_choice(sex * 10 + _age_band(people.age[pidx]), probs, rng)
    dx3 = grouped_choice(sex * 10 + _age_band(people.age[pidx]), probs, rng)
    codes = icd["code"].to_numpy()
    dept = icd["func_type"].to_numpy()[dx]
    chronic = icd["chronic"].to_numpy()[dx] == "1"

    f = inst.frame
    levels = np.array(list(LEVEL_SHARE))
    level = levels[rng.choice(len(levels), nv, p=np.array(list(LEVEL_SHARE.values())))]
    # Institution: same level (and, for clinics, same specialty), same county when possible.
    inst_key = (f["level"] + "|" + f["specialty"]).to_numpy()
    inst_ckey = (f["level"] + "|" + f["specialty"] + "|" + f["county"].cast(pl.Utf8)).to_numpy()
    spec = np.where(level == "4", dept, "00")
    want = np.char.add(np.char.add(level.astype(str), "|"), spec.astype(str))
    cwant = np.char.add(np.char.add(want, "|"), people.county[pidx].astype(str))
    h = pick_within(inst_ckey, cwant, rng)
    h = np.where((h < 0) | (rng.random(nv) < 0.15), pick_within(inst_key, want, rng), h)
    h = np.where(h < 0, pick_within(inst_key, np.full(nv, "4|01"), rng), h)
    hlevel = f["level"].to_numpy()[h]
    emergency = (hlevel != "4") & (rng.random(nv) < 0.08)
    func_type = np.where(hlevel == "4", f["specialty"].to_numpy()[h], dept)
    func_type = np.where(emergency, "22", func_type)
    case = np.where(emergency, "02", np.where(chronic & (rng.random(nv) < 0.5), "04", "01"))
    appl_type = np.where(rng.random(nv) < 0.02, 2, 1)

    # Orders: drugs (~3.8 per visit) and procedures (~1.2), chosen to suit the diagnosis.
    letter = np.array([ord(c[0]) - 65 for c in codes])[dx]
    n_drug = np.where(codes[dx].astype("U1") == "Z", 0, rng.poisson(3.8, nv))
    n_proc = rng.poisson(np.where(hlevel == "4", 0.9, 2.0))
    med_type = np.where(
        n_drug == 0, "2", np.where((hlevel == "4") & (rng.random(nv) < 0.35), "1", "0")
    )
    drug_day = np.where(n_drug == 0, 0, np.where(case == "04", 28, rng.choice([3, 3, 3, 5, 7], nv)))

    drugs = table("drugs")
    dprob = _letter_probs(drugs, np.ones(drugs.height))
    procs = table("procedures")
    pprob = _letter_probs(procs, procs["weight"].cast(pl.Float64).to_numpy())
    dv = np.repeat(np.arange(nv), n_drug)
    di = grouped_choice(letter[dv], dprob, rng)
    pv = np.repeat(np.arange(nv), n_proc)
    pi = grouped_choice(letter[pv], pprob, rng)
    price = drugs["unit_price"].cast(pl.Float64).to_numpy()[di]
    fre = drugs["fre"].to_numpy()[di]
    use = drugs["use"].cast(pl.Float64).to_numpy()[di]
    names = drugs["name"].to_list()
    solid = np.array([n.endswith((" tab", " cap")) for n in names])[di]
    per_day = np.array([FRE_PER_DAY.get(x, 1) for x in drugs["fre"].to_numpy()])[di]
    qty = np.where(solid & (fre != "STAT"), use * per_day * drug_day[dv], 1.0)
    dot = np.round(price * qty).astype(np.int64)
    drug_dot = np.bincount(dv, weights=np.where(med_type[dv] == "0", dot, 0), minlength=nv)
    ppoints = procs["points"].cast(pl.Int64).to_numpy()[pi]
    treat_dot = np.bincount(pv, weights=ppoints, minlength=nv)

    diag_dot = np.array([DIAG_DOT[x] for x in "1234"])[hlevel.astype(np.int64) - 1]
    self_disp = med_type == "0"
    dsvc_dot = np.where(
        self_disp, np.array([DSVC[x][1] for x in "1234"])[hlevel.astype(np.int64) - 1], 0
    )
    t_dot = (drug_dot + treat_dot + diag_dot + dsvc_dot).astype(np.int64)
    exempt = rng.random(nv) < 0.06
    copay = np.array([COPAY[x] for x in "1234"])[hlevel.astype(np.int64) - 1]
    copay = np.where(emergency, copay + 130, copay)
    part_dot = np.where(exempt, 0, np.minimum(copay, t_dot))
    part_no = np.where(
        exempt, "001", np.array(["A20", "B20", "C20", "D10"])[hlevel.astype(np.int64) - 1]
    )

    gid = ((h * 12 + (month - 1)) * len(CASE_TYPES) + np.searchsorted(CASE_TYPES, case)) * 2 + (
        appl_type - 1
    )
    seq = running_seq(gid, state.counters)
    fee_ym = date // 100
    nxt = np.where(fee_ym % 100 == 12, (fee_ym // 100 + 1) * 100 + 1, fee_ym + 1)
    nxt = np.where(
        appl_type == 2, np.where(nxt % 100 == 12, (nxt // 100 + 1) * 100 + 1, nxt + 1), nxt
    )
    appl_date = nxt * 100 + 5 + (h % 20)

    phys_start = f["phys_start"].to_numpy()[h]
    phys_n = f["phys_n"].to_numpy()[h]
    prsn = phys_start + np.floor(rng.random(nv) * phys_n).astype(np.int64)
    phar = phys_start + np.floor(rng.random(nv) * phys_n).astype(np.int64)
    physicians = inst.physicians
    hosp_ids = f["HOSP_ID"]
    null_str = pl.lit(None, pl.Utf8)
    visits = pl.DataFrame(
        {
            "FEE_YM": fee_ym,
            "APPL_TYPE": appl_type.astype(str),
            "HOSP_ID": hosp_ids.gather(h),
            "APPL_DATE": appl_date,
            "CASE_TYPE": case,
            "SEQ_NO": pl.Series(seq).cast(pl.Utf8).str.zfill(6),
            "FUNC_TYPE": func_type,
            "FUNC_DATE": date,
            "ID_BIRTHDAY": people.birth[pidx],
            "ID": people.id.gather(pidx),
            "ID_S": sex.astype(str),
            "CARD_SEQ_NO": pl.Series(rng.integers(1, 7, nv)).cast(pl.Utf8).str.zfill(4),
            "GAVE_KIND": np.where(np.isin(codes[dx].astype("U1"), ["S", "T"]), "3", "4"),
            "PART_NO": part_no,
            "ICD9CM_1": codes[dx],
            "ICD9CM_2": pl.Series(codes[dx2]).zip_with(pl.Series(rng.random(nv) < 0.4), pl.Series([None] * nv, dtype=pl.Utf8)),
            "ICD9CM_3": pl.Series(codes[dx3]).zip_with(pl.Series(rng.random(nv) < 0.15), pl.Series([None] * nv, dtype=pl.Utf8)),
            "DRUG_DAY": drug_day,
            "MED_TYPE": med_type,
            "PRSN_ID": physicians.gather(prsn),
            "PHAR_ID": physicians.gather(phar).zip_with(pl.Series(self_disp), pl.Series([None] * nv, dtype=pl.Utf8)),
            "DRUG_DOT": drug_dot.astype(np.int64),
            "TREAT_DOT": treat_dot.astype(np.int64),
            "DIAG_DOT": diag_dot,
            "DSVC_DOT": dsvc_dot,
            "T_DOT": t_dot,
            "PART_DOT": part_dot,
            "T_APPL_DOT": t_dot - part_dot,
            "TREAT_CODE": np.array([TREAT_CODE[x] for x in "1234"])[hlevel.astype(np.int64) - 1],
            "DSVC_NO": pl.Series(np.array([DSVC[x][0] for x in "1234"])[hlevel.astype(np.int64) - 1]).zip_with(
                pl.Series(self_disp), pl.Series([None] * nv, dtype=pl.Utf8)
            ),
        }
    ).with_columns(
        CURE_ITEM_NO1=null_str, CURE_ITEM_NO2=null_str, TREAT_END_DATE=null_str,
        ICD_OP_CODE1=null_str, CASE_PAY_CODE=null_str,
    )  # fmt: skip

    key = visits.select("FEE_YM", "APPL_TYPE", "HOSP_ID", "APPL_DATE", "CASE_TYPE", "SEQ_NO")
    drug_rows = key[dv].with_columns(
        ORDER_TYPE=pl.Series(np.where(med_type[dv] == "1", "4", "1")),
        DRUG_NO=drugs_no(drugs).gather(di),
        DRUG_USE=use,
        DRUG_FRE=fre,
        UNIT_P=price,
        TOTAL_Q=qty,
        TOTAL_DOT=dot,
        _v=dv,
    )
    proc_rows = key[pv].with_columns(
        ORDER_TYPE=pl.lit("2"),
        DRUG_NO=procs["code"].gather(pi),
        DRUG_USE=pl.lit(None, pl.Float64),
        DRUG_FRE=pl.lit(None, pl.Utf8),
        UNIT_P=ppoints.astype(np.float64),
        TOTAL_Q=pl.lit(1.0),
        TOTAL_DOT=ppoints,
        _v=pv,
    )
    orders = (
        pl.concat([drug_rows, proc_rows])
        .sort("_v", maintain_order=True)
        .with_columns(
            ORDER_SEQ_NO=pl.int_range(1, pl.len() + 1).over("_v"),
            PAY_RATE=pl.lit(1.0),
        )
        .drop("_v")
    )
    visits = visits.with_columns(_n_orders=pl.Series(n_drug + n_proc), _pidx=pl.Series(pidx))
    return visits, orders


def drugs_no(drugs: pl.DataFrame) -> pl.Series:
    """Stable synthetic 10-character NHI drug codes (``A0`` + 8 digits) for the drug table."""
    n = drugs.height
    digits = (np.arange(n) * 7919 + 34159) % 100_000_000
    return pl.Series("DRUG_NO", [f"A0{d:08d}" for d in digits])
