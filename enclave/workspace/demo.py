"""A small synthetic project extract in the shared project-area layout, for the quick start,
the template notebooks' tests and the hub's end-to-end tests.

It is written directly in the layout provisioning produces (``extract/<FILE>/year=<YYYY>/
part-0.parquet``, ``person_index.parquet``, ``institution_index.parquet``,
``data_dictionary.md``, ``manifest.json`` and the custodian-side ``pseudonyms.parquet``), with
22-character base64url pseudonyms. Everything is generated column-wise with NumPy.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import date
from pathlib import Path

import numpy as np
import polars as pl

OPD = "H_NHI_OPDTE"
OPD_ORDERS = "H_NHI_OPDTO"
DIAGNOSES = ("E11.9", "I10", "J06.9", "K21.9", "M54.5")
DIABETES_DRUGS = ("BC24556100", "AC45781100")
OTHER_DRUGS = ("AB12345100", "AC39001100", "BB11223100")
_KEY = b"demo-project-key-not-secret"


def pseudonym(kind: str, value: int, *, key: bytes = _KEY) -> str:
    """A stage-2-style pseudonym: base64url (no padding) of HMAC-SHA-256[:16] (22 chars)."""
    digest = hmac.new(key, kind.encode() + b"\x00" + str(value).encode(), hashlib.sha256)
    return base64.urlsafe_b64encode(digest.digest()[:16]).decode("ascii").rstrip("=")


def _dictionary(frames: dict[str, pl.DataFrame]) -> str:
    lines = ["# Data dictionary (demo extract)", ""]
    for name, frame in frames.items():
        lines += [f"## {name}", "", "| column | type |", "|---|---|"]
        lines += [f"| {c} | {t} |" for c, t in frame.schema.items() if c != "year"]
        lines.append("")
    return "\n".join(lines)


def write_demo_extract(project: Path, *, persons: int = 400, seed: int = 7,
                       years: tuple[int, ...] = (2020, 2021)) -> Path:
    """Write a demo extract under ``project/extract`` and return that folder.

    Parameters
    ----------
    project : Path
        ``<home>/projects/<CODE>`` (created if missing).
    persons : int
        Number of people; each has 1-6 outpatient visits a year and 1-3 orders a visit.
    seed : int
        Random seed (the same seed gives the same files).
    years : tuple of int
        Data years written as ``year=<YYYY>`` partitions.
    """
    rng = np.random.default_rng(seed)
    extract = project / "extract"
    extract.mkdir(parents=True, exist_ok=True)
    people = [pseudonym("person", i) for i in range(persons)]
    hospitals = [pseudonym("institution", i) for i in range(12)]
    sex = rng.choice(np.array(["F", "M"]), size=persons)
    birth_year = rng.integers(1935, 2002, size=persons)
    birth_month = rng.integers(1, 13, size=persons)
    diabetic = rng.random(persons) < 0.45
    visits_all, orders_all = [], []
    seq = 0
    for year in years:
        n_visits = rng.integers(1, 7, size=persons)
        who = np.repeat(np.arange(persons), n_visits)
        n = who.size
        day = rng.integers(0, 365, size=n)
        func_date = np.datetime64(f"{year}-01-01") + day.astype("timedelta64[D]")
        diag = np.where(diabetic[who] & (rng.random(n) < 0.7), "E11.9",
                        rng.choice(np.array(DIAGNOSES[1:]), size=n))
        seq_no = np.arange(seq, seq + n)
        seq += n
        fee_ym = pl.Series(func_date).dt.strftime("%Y%m")
        visits = pl.DataFrame({
            "FEE_YM": fee_ym,
            "APPL_TYPE": ["1"] * n,
            "HOSP_ID": np.array(hospitals)[rng.integers(0, len(hospitals), size=n)],
            "APPL_DATE": pl.Series(func_date).dt.offset_by("1mo"),
            "CASE_TYPE": ["01"] * n,
            "SEQ_NO": [f"{s % 1_000_000:06d}" for s in seq_no],
            "FUNC_DATE": pl.Series(func_date).cast(pl.Date),
            "ID_BIRTHDAY": [date(int(y), int(m), 1) for y, m in
                            zip(birth_year[who], birth_month[who], strict=True)],
            "ID": np.array(people)[who],
            "ID_S": sex[who],
            "ICD9CM_1": diag,
            "T_DOT": rng.integers(200, 3000, size=n),
        }).with_columns(pl.col("APPL_DATE").cast(pl.Date))
        n_orders = rng.integers(1, 4, size=n)
        parent = np.repeat(np.arange(n), n_orders)
        is_dm = visits["ICD9CM_1"].to_numpy()[parent] == "E11.9"
        drug = np.where(is_dm & (rng.random(parent.size) < 0.8),
                        rng.choice(np.array(DIABETES_DRUGS), size=parent.size),
                        rng.choice(np.array(OTHER_DRUGS), size=parent.size))
        first = np.r_[0, np.cumsum(n_orders)[:-1]]
        orders = visits.select("FEE_YM", "APPL_TYPE", "HOSP_ID", "APPL_DATE", "CASE_TYPE",
                               "SEQ_NO")[parent].with_columns(
            ORDER_SEQ_NO=pl.Series(np.arange(parent.size) - np.repeat(first, n_orders) + 1),
            ORDER_TYPE=pl.lit("1"),
            DRUG_NO=pl.Series(drug),
            TOTAL_Q=pl.Series(rng.integers(7, 91, size=parent.size).astype(float)),
            TOTAL_DOT=pl.Series(rng.integers(50, 900, size=parent.size)),
        )
        visits_all.append(visits.with_columns(year=pl.lit(year)))
        orders_all.append(orders.with_columns(year=pl.lit(year)))
    frames = {OPD: pl.concat(visits_all), OPD_ORDERS: pl.concat(orders_all)}
    manifest_files = []
    for name, frame in frames.items():
        for (year,), part in frame.partition_by("year", as_dict=True).items():
            folder = extract / name / f"year={year}"
            folder.mkdir(parents=True, exist_ok=True)
            target = folder / "part-0.parquet"
            part.drop("year").write_parquet(target)
            manifest_files.append({
                "file": name, "year": int(year), "path": str(target.relative_to(extract)),
                "rows": part.height,
                "sha256": hashlib.sha256(target.read_bytes()).hexdigest(),
                "columns": [c for c in part.columns if c != "year"],
                "optouts_excluded_rows": 0,
                "optouts_excluded_people": 0,
            })
    pl.DataFrame({"pseudonym": people, "idx": np.arange(persons, dtype=np.uint32)}).write_parquet(
        extract / "person_index.parquet")
    pl.DataFrame({"pseudonym": hospitals,
                  "idx": np.arange(len(hospitals), dtype=np.uint32)}).write_parquet(
        extract / "institution_index.parquet")
    (extract / "data_dictionary.md").write_text(_dictionary(frames), encoding="utf-8")
    (extract / "manifest.json").write_text(json.dumps(
        {"files": manifest_files, "provisioned_at": "demo"},
        indent=2), encoding="utf-8")
    pl.DataFrame({"pseudonym": people + hospitals}).write_parquet(project / "pseudonyms.parquet")
    return extract
