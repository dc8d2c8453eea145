"""Known-fault injection into one chunk of a source file, with the ground truth of each fault.

Safety rules (so a fault never disturbs another file's integrity and faults never collide):
- one fault per row; the original of a duplicated key stays clean and is never faulty;
- field faults (bad_checksum, invalid_date, unknown_code) touch non-key columns only;
- row faults (truncated_row, bad_encoding) and duplicate copies only hit rows flagged safe:
  visits and admissions without orders, outpatient orders that are not ORDER_TYPE 1 (the
  Σ DRUG_DOT invariant), inpatient orders of ORDER_TYPE 2 (drug and material lines count
  in MED_DOT), and enrollment segments of people who hold a second segment in the year;
  pharmacy dispensings always have drug lines and every drug line counts in Σ TOTAL_DOT =
  DRUG_DOT, so H_NHI_DRUGE and H_NHI_DRUGO get field faults only;
- bad_checksum only in claims files; MEDFA and H_NHI_DRUG stay clean (everything refers to them).
"""

from __future__ import annotations

import numpy as np
import polars as pl

BAD_BYTES = b"\x80\xff"  # undecodable in UTF-8 and in cp950 (0x80, 0xFF are no lead bytes)
BAD_MARK = "\x01BAD\x01"
CUT_MARK = "\x02CUT\x02"
ROW_KINDS = ("truncated_row", "bad_encoding", "duplicate_key")

# file -> field faults: kind -> (columns, bad values)
FIELD_FAULTS: dict[str, dict[str, tuple[list[str], list[str]]]] = {
    "H_NHI_ENROL": {
        "invalid_date": (["ID_BIRTHDAY"], ["20230231", "20231301", "2023-05-01"]),
        "unknown_code": (["ID_STATUS"], ["X", "8"]),
    },
    "H_NHI_OPDTE": {
        "bad_checksum": (["ID", "PRSN_ID"], []),
        "invalid_date": (["FUNC_DATE"], ["20230231", "20231301", "2023-05-01"]),
        "unknown_code": (["FUNC_TYPE"], ["ZZ", "99"]),
    },
    "H_NHI_OPDTO": {"unknown_code": (["DRUG_FRE"], ["XYZ", "QQQ"])},
    "H_NHI_IPDTE": {
        "bad_checksum": (["ID", "PRSN_ID"], []),
        "invalid_date": (["ID_BIRTHDAY"], ["20230231", "20231301", "2023-05-01"]),
        "unknown_code": (["TRAN_CODE"], ["X", "Z"]),
    },
    "H_NHI_IPDTO": {"unknown_code": (["ORDER_TYPE"], ["J", "W"])},
    "H_NHI_DRUGE": {
        "bad_checksum": (["ID", "PHAR_ID"], []),
        "invalid_date": (["FUNC_DATE"], ["20230231", "20231301", "2023-05-01"]),
        "unknown_code": (["R_CASE_TYPE"], ["ZZ", "99"]),
    },
    # A drug code absent from H_NHI_DRUG (the line's points stay, so Σ TOTAL_DOT holds).
    "H_NHI_DRUGO": {"unknown_code": (["DRUG_NO"], ["ZZ99999999", "XX00000000"])},
}
INJECTED_FILES = tuple(FIELD_FAULTS)


def inject(
    name: str,
    df: pl.DataFrame,
    safe: np.ndarray,
    pk: list[str],
    rate: float,
    rng: np.random.Generator,
) -> tuple[pl.DataFrame, list[dict]]:
    """Faults in about ``rate`` of the rows of text frame ``df``; returns it and the faults.

    Fault rows carry a ``_row`` position (in the returned frame) for line numbering.
    """
    if rate <= 0 or name not in INJECTED_FILES or df.height == 0:
        return df, []
    n = df.height
    k = min(n // 3, int(rng.binomial(n, rate)))
    rows = rng.choice(n, k, replace=False)
    field_kinds = list(FIELD_FAULTS[name])
    kinds = rng.choice([*field_kinds, *ROW_KINDS], k)
    kinds = np.where(~safe[rows] & np.isin(kinds, ROW_KINDS), rng.choice(field_kinds, k), kinds)
    faulty = np.zeros(n, bool)
    faulty[rows] = True
    cols = {c: df[c].to_list() for c in df.columns}
    faults: list[dict] = []
    dup_src: list[int] = []
    text_cols = [c for c in df.columns if c not in pk]
    for r, kind in zip(rows.tolist(), kinds.tolist(), strict=True):
        key = "|".join("" if cols[c][r] is None else str(cols[c][r]) for c in pk)
        if kind == "duplicate_key":
            cand = np.flatnonzero(safe & ~faulty)
            if len(cand) == 0:
                continue
            src = int(cand[rng.integers(len(cand))])
            faulty[src] = True  # the original must stay clean: no later fault may pick it
            dup_src.append(src)
            skey = "|".join("" if cols[c][src] is None else str(cols[c][src]) for c in pk)
            faults.append(
                {
                    "kind": kind,
                    "column": "",
                    "value": skey,
                    "key": skey,
                    "_row": n + len(dup_src) - 1,
                }
            )
            continue
        if kind in FIELD_FAULTS[name]:
            options, values = FIELD_FAULTS[name][kind]
            col = options[int(rng.integers(len(options)))]
            if kind == "bad_checksum":
                good = cols[col][r]
                value = good[:-1] + str((int(good[-1]) + int(rng.integers(1, 10))) % 10)
            else:
                value = values[int(rng.integers(len(values)))]
            cols[col][r] = value
        elif kind == "truncated_row":
            col = text_cols[len(text_cols) // 2]
            cols[col][r] = CUT_MARK
            value = f"{df.columns.index(col)} of {len(df.columns)} fields"
        else:  # bad_encoding: undecodable bytes in the last (non-key) column
            col = text_cols[-1]
            cols[col][r] = BAD_MARK
            value = BAD_BYTES.hex()
        faults.append({"kind": kind, "column": "" if kind == "truncated_row" else col,
                       "value": value, "key": key, "_row": r})  # fmt: skip
    out = pl.DataFrame(cols, schema={c: pl.Utf8 for c in df.columns})
    if dup_src:
        out = pl.concat([out, out[dup_src]])
    return out, faults


def finish_bytes(data: bytes) -> bytes:
    """Turn the placeholders into real damage: cut lines short, plant undecodable bytes."""
    if b"\x01" not in data and b"\x02" not in data:
        return data
    import re

    data = re.sub(rb",\x02CUT\x02[^\n]*", b"", data)
    return data.replace(BAD_MARK.encode(), BAD_BYTES)
