"""Outpatient visits (H_NHI_OPDTE) and their orders (H_NHI_OPDTO) for one chunk-year.

Everything is integer arrays until the end: categorical text (codes, IDs) comes from
``Series.gather`` on small lookup tables, so no per-row Python or NumPy string work runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

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
# Per level "1".."4" (position = level - 1).
DIAG_DOT = np.array([410, 380, 350, 352])
TREAT_CODE = pl.Series(["00156A", "00157B", "00158B", "00109C"])
DSVC_NO = pl.Series(["05223A", "05223B", "05223B", "05202C"])
DSVC_DOT = np.array([59, 54, 54, 48])
COPAY = np.array([420, 240, 80, 50])
PART_NO = pl.Series(["A20", "B20", "C20", "D10", "001"])  # last: exempt
# Share of drug-bearing visits whose prescription goes to a community pharmacy (MED_TYPE 1):
# clinics release most chronic and many acute prescriptions, hospitals few. Gives about six
# pharmacy dispensings per person-year.
RELEASE_P = {"clinic": 0.6, "hospital": 0.15}
CASE_TYPES = ["01", "02", "04"]
FRE_PER_DAY = {"QD": 1, "BID": 2, "TID": 3, "QID": 4, "HS": 1, "PRN": 1, "STAT": 1}
KEY = ["FEE_YM", "APPL_TYPE", "HOSP_ID", "APPL_DATE", "CASE_TYPE", "SEQ_NO"]


@dataclass
class OutpatientState:
    """Per-year running SEQ_NO counters, carried across people chunks."""

    counters: np.ndarray


def new_state(n_inst: int) -> OutpatientState:
    """Fresh counters for one data year."""
    return OutpatientState(np.zeros(n_inst * 12 * len(CASE_TYPES) * 2, dtype=np.int64))


def _age_band(age: np.ndarray) -> np.ndarray:
    return np.where(age < 15, 0, np.where(age < 65, 1, 2))


@cache
def icd_probs() -> tuple[pl.DataFrame, dict[int, np.ndarray]]:
    """ICD table and its sampling probabilities per (sex * 10 + age band 0/1/2)."""
    icd = table("icd10cm_outpatient")
    w = icd["weight"].cast(pl.Float64).to_numpy()
    sex = icd["sex"].fill_null("").to_list()
    ages = icd["ages"].to_list()
    probs = {}
    for s, s_code in ((1, "M"), (2, "F")):
        for b, b_code in enumerate("cae"):
            ok = np.array(
                [(x in ("", s_code)) and (b_code in a) for x, a in zip(sex, ages, strict=True)]
            )
            p = np.where(ok, w, 0.0)
            probs[s * 10 + b] = p / p.sum()
    return icd, probs


@cache
def letter_probs(name: str) -> dict[int, np.ndarray]:
    """Per ICD chapter letter (0..25), probabilities over the items of table ``name``."""
    items = table(name)
    weight = (
        items["weight"].cast(pl.Float64).to_numpy()
        if "weight" in items.columns
        else np.ones(items.height)
    )
    letters = items["icd_letters"].to_list()
    probs = {}
    for k in range(26):
        ch = chr(65 + k)
        ok = np.array([("*" in x) or (ch in x) for x in letters])
        specific = np.array([ch in x for x in letters])
        p = np.where(ok, weight * np.where(specific, 4.0, 1.0), 0.0)
        probs[k] = p / p.sum()
    return probs


@cache
def drug_table() -> dict[str, object]:
    """Drug items as aligned arrays/Series (price, frequency, dose, solid form, code)."""
    d = table("drugs")
    fre = d["fre"].to_list()
    return {
        "price": d["unit_price"].cast(pl.Float64).to_numpy(),
        "fre": d["fre"],
        "stat": np.array([x == "STAT" for x in fre]),
        "use": d["use"].cast(pl.Float64).to_numpy(),
        "solid": np.array([n.endswith((" tab", " cap")) for n in d["name"].to_list()]),
        "per_day": np.array([FRE_PER_DAY.get(x, 1) for x in fre]),
        "no": drugs_no(d),
    }


@cache
def _icd_arrays() -> dict[str, object]:
    icd, _ = icd_probs()
    codes = icd["code"].to_list()
    return {
        "code": icd["code"],
        "letter": np.array([ord(c[0]) - 65 for c in codes]),
        "z": np.array([c[0] == "Z" for c in codes]),
        "injury": np.array([c[0] in "ST" for c in codes]),
        "chronic": (icd["chronic"] == "1").to_numpy(),
        "func_type": icd["func_type"],
    }


def visit_rates(age: np.ndarray) -> np.ndarray:
    """Expected visits per year by age, scaled so the 2023 population mean is 15."""
    bands = table("age_bands")
    lo = bands["age_lo"].cast(pl.Int64).to_numpy()
    rate = bands["visit_rate"].cast(pl.Float64).to_numpy()
    share = bands["share"].cast(pl.Float64).to_numpy()
    scale = MEAN_VISITS / (share @ rate / share.sum())
    return rate[np.searchsorted(lo, age, side="right") - 1] * scale


def next_month(ym: np.ndarray, k: int = 1) -> np.ndarray:
    """YYYYMM ints ``k`` months after ``ym``."""
    m = (ym // 100) * 12 + (ym % 100 - 1) + k
    return (m // 12) * 100 + m % 12 + 1


def diagnoses(
    people: People, pidx: np.ndarray, rng: np.random.Generator, k: int
) -> list[np.ndarray]:
    """``k`` independent ICD row indices per event, suited to the person's sex and age."""
    _, probs = icd_probs()
    g = people.sex[pidx] * 10 + _age_band(people.age[pidx])
    return [grouped_choice(g, probs, rng) for _ in range(k)]


def optional(values: pl.Series, keep: np.ndarray) -> pl.Series:
    """``values`` where ``keep`` else null."""
    return pl.select(pl.when(pl.lit(pl.Series(keep))).then(pl.lit(values))).to_series()


def make_visits(
    people: People,
    inst: Institutions,
    year: int,
    state: OutpatientState,
    rng: np.random.Generator,
    *,
    with_orders: bool = True,
) -> tuple[pl.DataFrame, pl.DataFrame | None, dict[str, np.ndarray]]:
    """Visits (OPDTE columns), orders (OPDTO columns or None) and the visit arrays.

    The returned arrays (person index, day index, drug lines per visit, MED_TYPE...) let
    the pharmacy generator derive dispensings from visits released to a pharmacy.
    """
    lam = visit_rates(people.age) * rng.gamma(NB_SHAPE, 1 / NB_SHAPE, len(people))
    n_visits = rng.poisson(lam)
    pidx = np.repeat(np.arange(len(people)), n_visits)
    nv = len(pidx)
    days, dw = day_weights(year)
    day = rng.choice(len(days), nv, p=dw)
    date = days[day]
    month = (date // 100) % 100
    dx, dx2, dx3 = diagnoses(people, pidx, rng, 3)
    ia = _icd_arrays()
    chronic = ia["chronic"][dx]

    ik = inst.keys
    lv_names = np.array(list(LEVEL_SHARE))
    level = lv_names.astype(np.int64)[rng.choice(4, nv, p=np.array(list(LEVEL_SHARE.values())))]
    # Institution: same level (and, for clinics, same specialty), same county when possible.
    spec = np.where(level == 4, ik["icd_spec"][dx], ik["spec_00"])
    want = level * 1000 + spec
    cwant = want * 100 + people.county[pidx]
    h = pick_within(ik["lsc"], cwant, rng)
    h = np.where((h < 0) | (rng.random(nv) < 0.15), pick_within(ik["ls"], want, rng), h)
    h = np.where(h < 0, pick_within(ik["ls"], np.full(nv, 4000 + ik["spec_01"]), rng), h)
    hl = ik["level"][h]  # 1..4
    li = hl - 1
    clinic = hl == 4
    emergency = ~clinic & (rng.random(nv) < 0.08)
    # FUNC_TYPE as an index into the specialty vocabulary: clinic's own, else department.
    ft = np.where(clinic, ik["spec"][h], ik["icd_spec"][dx])
    ft = np.where(emergency, ik["spec_22"], ft)
    case = np.where(emergency, 1, np.where(chronic & (rng.random(nv) < 0.5), 2, 0))
    appl_type = np.where(rng.random(nv) < 0.02, 2, 1)

    # Orders: drugs (~3.8 per visit) and procedures (~1.2), chosen to suit the diagnosis.
    letter = ia["letter"][dx]
    n_drug = np.where(ia["z"][dx], 0, rng.poisson(3.8, nv))
    n_proc = rng.poisson(np.where(clinic, 0.9, 2.0))
    release = rng.random(nv) < np.where(clinic, RELEASE_P["clinic"], RELEASE_P["hospital"])
    med_type = np.where(n_drug == 0, 2, np.where(release, 1, 0))
    drug_day = np.where(
        n_drug == 0, 0, np.where(case == 2, 28, np.array([3, 3, 3, 5, 7])[rng.integers(0, 5, nv)])
    )
    dt = drug_table()
    dv = np.repeat(np.arange(nv), n_drug)
    di = grouped_choice(letter[dv], letter_probs("drugs"), rng)
    pv = np.repeat(np.arange(nv), n_proc)
    pi = grouped_choice(letter[pv], letter_probs("procedures"), rng)
    price = dt["price"][di]
    qty = np.where(
        dt["solid"][di] & ~dt["stat"][di], dt["use"][di] * dt["per_day"][di] * drug_day[dv], 1.0
    )
    dot = np.round(price * qty).astype(np.int64)
    drug_dot = np.bincount(dv, weights=np.where(med_type[dv] == 0, dot, 0), minlength=nv).astype(
        np.int64
    )
    procs = table("procedures")
    ppoints = procs["points"].cast(pl.Int64).to_numpy()[pi]
    treat_dot = np.bincount(pv, weights=ppoints, minlength=nv).astype(np.int64)

    self_disp = med_type == 0
    diag_dot = DIAG_DOT[li]
    dsvc_dot = np.where(self_disp, DSVC_DOT[li], 0)
    t_dot = drug_dot + treat_dot + diag_dot + dsvc_dot
    exempt = rng.random(nv) < 0.06
    copay = COPAY[li] + np.where(emergency, 130, 0)
    part_dot = np.where(exempt, 0, np.minimum(copay, t_dot))

    gid = ((h * 12 + (month - 1)) * len(CASE_TYPES) + case) * 2 + (appl_type - 1)
    seq = running_seq(gid, state.counters)
    fee_ym = date // 100
    appl_date = next_month(fee_ym, appl_type) * 100 + 5 + (h % 20)
    phys_start, phys_n = ik["phys_start"][h], ik["phys_n"][h]
    prsn = phys_start + np.floor(rng.random(nv) * phys_n).astype(np.int64)
    phar = phys_start + np.floor(rng.random(nv) * phys_n).astype(np.int64)
    card = rng.integers(1, 7, nv)
    icd_code = ia["code"]
    has2 = rng.random(nv) < 0.4
    has3 = rng.random(nv) < 0.15
    null_str = pl.lit(None, pl.Utf8)
    visits = pl.DataFrame(
        {
            "FEE_YM": fee_ym,
            "APPL_TYPE": appl_type,
            "HOSP_ID": ik["hosp_id"].gather(h),
            "APPL_DATE": appl_date,
            "CASE_TYPE": pl.Series(CASE_TYPES).gather(case),
            "SEQ_NO": seq,
            "FUNC_TYPE": ik["spec_names"].gather(ft),
            "FUNC_DATE": date,
            "ID_BIRTHDAY": people.birth[pidx],
            "ID": people.id.gather(pidx),
            "ID_S": people.sex[pidx],
            "CARD_SEQ_NO": card,
            "GAVE_KIND": np.where(ia["injury"][dx], 3, 4),
            "PART_NO": PART_NO.gather(np.where(exempt, 4, li)),
            "ICD9CM_1": icd_code.gather(dx),
            "ICD9CM_2": optional(icd_code.gather(dx2), has2),
            "ICD9CM_3": optional(icd_code.gather(dx3), has3),
            "DRUG_DAY": drug_day,
            "MED_TYPE": med_type,
            "PRSN_ID": inst.physicians.gather(prsn),
            "PHAR_ID": optional(inst.physicians.gather(phar), self_disp),
            "DRUG_DOT": drug_dot,
            "TREAT_DOT": treat_dot,
            "DIAG_DOT": diag_dot,
            "DSVC_DOT": dsvc_dot,
            "T_DOT": t_dot,
            "PART_DOT": part_dot,
            "T_APPL_DOT": t_dot - part_dot,
            "TREAT_CODE": TREAT_CODE.gather(li),
            "DSVC_NO": optional(DSVC_NO.gather(li), self_disp),
        }
    ).with_columns(
        pl.col("SEQ_NO").cast(pl.Utf8).str.zfill(6),
        pl.col("CARD_SEQ_NO").cast(pl.Utf8).str.zfill(4),
        pl.col("APPL_TYPE", "ID_S", "GAVE_KIND", "MED_TYPE").cast(pl.Utf8),
        CURE_ITEM_NO1=null_str, CURE_ITEM_NO2=null_str, TREAT_END_DATE=null_str,
        ICD_OP_CODE1=null_str, CASE_PAY_CODE=null_str,
        _n_orders=pl.Series(n_drug + n_proc), _pidx=pl.Series(pidx),
    )  # fmt: skip
    arrays = {
        "pidx": pidx, "day": day, "h": h, "case": case, "med_type": med_type,
        "drug_day": drug_day, "dv": dv, "di": di, "qty": qty, "dot": dot,
        "dx": dx, "dx2": np.where(has2, dx2, -1), "prsn": prsn, "card": card, "ft": ft,
        "gave": np.where(ia["injury"][dx], 3, 4),
    }  # fmt: skip
    if not with_orders:
        return visits, None, arrays

    # Order lines in visit order without a sort of the wide frame: an integer argsort of
    # (visit, drug-before-procedure, draw order) gives each line its place.
    n_lines = len(dv) + len(pv)
    owner = np.concatenate([dv, pv])
    order = np.argsort(owner, kind="stable")
    owner = owner[order]
    first = np.searchsorted(owner, owner, side="left")
    is_drug = order < len(dv)
    d_pos = np.where(is_drug, order, 0)
    p_pos = np.where(is_drug, 0, order - len(dv))
    code = (
        pl.select(
            pl.when(pl.lit(pl.Series(is_drug)))
            .then(
                pl.lit(dt["no"]).gather(
                    pl.lit(pl.Series(di[d_pos] if len(dv) else np.zeros(n_lines, np.int64)))
                )
            )
            .otherwise(
                pl.lit(procs["code"]).gather(
                    pl.lit(pl.Series(pi[p_pos] if len(pv) else np.zeros(n_lines, np.int64)))
                )
            )
        ).to_series()
        if n_lines
        else pl.Series([], dtype=pl.Utf8)
    )
    sel = visits.select(KEY)
    orders = sel[owner].with_columns(
        ORDER_SEQ_NO=pl.Series(np.arange(n_lines) - first + 1),
        ORDER_TYPE=pl.Series(np.where(is_drug, np.where(med_type[owner] == 1, "4", "1"), "2")),
        DRUG_NO=code,
        DRUG_USE=pl.Series(
            np.where(is_drug, dt["use"][di[d_pos]] if len(dv) else 0.0, np.nan)
        ).fill_nan(None),
        DRUG_FRE=optional(
            dt["fre"].gather(di[d_pos]) if len(dv) else pl.Series([None] * n_lines, dtype=pl.Utf8),
            is_drug,
        ),
        UNIT_P=pl.Series(
            np.where(
                is_drug, price[d_pos] if len(dv) else 0.0, ppoints[p_pos] if len(pv) else 0.0
            ).astype(np.float64)
        ),
        TOTAL_Q=pl.Series(np.where(is_drug, qty[d_pos] if len(dv) else 0.0, 1.0)),
        TOTAL_DOT=pl.Series(
            np.where(is_drug, dot[d_pos] if len(dv) else 0, ppoints[p_pos] if len(pv) else 0)
        ),
        PAY_RATE=pl.lit(1.0),
    )
    return visits, orders, arrays


def drugs_no(drugs: pl.DataFrame) -> pl.Series:
    """Stable synthetic 10-character NHI drug codes (``A0`` + 8 digits) for the drug table."""
    n = drugs.height
    digits = (np.arange(n) * 7919 + 34159) % 100_000_000
    return pl.Series("DRUG_NO", [f"A0{d:08d}" for d in digits])
