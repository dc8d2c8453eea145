"""Reference files: institutions (H_NHI_MEDFA) and drug items (H_NHI_DRUG) for one year."""

from __future__ import annotations

import polars as pl

from pipelines.synth._data import table
from pipelines.synth.institutions import Institutions
from pipelines.synth.outpatient import drugs_no

_TYPE_ID = {"1": "01", "2": "01", "3": "01", "4": "02", "5": "05"}


def medfa_rows(inst: Institutions, year: int) -> pl.DataFrame:
    """Every institution (a superset of all HOSP_ID / R_HOSP_ID used) as of ``year``."""
    codes = table("counties")["code"]
    f = inst.frame
    return f.select(
        DATA_YEAR=pl.lit(year),
        HOSP_ID="HOSP_ID",
        HOSP_NAME="name",
        HOSP_CONT_TYPE="level",
        HOS="hos",
        AREA_NO_H=codes.gather(f["county"]),
        HOSP_TYPE_ID=pl.col("level").replace_strict(_TYPE_ID),
        CNT_S_DATE=pl.lit(19950301) + (pl.int_range(pl.len()) % 20) * 10000,
        CNT_E_DATE=pl.lit(None, pl.Int64),
        BED_CNT="beds",
    )


def drug_rows(year: int) -> pl.DataFrame:
    """Every drug item that orders may use (a superset of the DRUG_NO values written)."""
    d = table("drugs")
    return pl.DataFrame(
        {
            "DATA_YEAR": [year] * d.height,
            "DRUG_NO": drugs_no(d),
            "DRUG_NAME": d["name"],
            "ATC_CODE": d[
                "atc"
            ],  # as listed: 5-character ATC groups are valid codes, not to be padded
            "UNIT_PRICE": d["unit_price"].cast(pl.Float64),
            "VALID_S_DATE": [20100101] * d.height,
            "VALID_E_DATE": pl.Series([None] * d.height, dtype=pl.Int64),
        }
    )
