"""Rule 6: row-level data (one row per person, pseudonym-like columns, all counts 1)."""

from __future__ import annotations

import re

import numpy as np
import polars as pl

from disclosure_review.model import Finding, Verdict
from disclosure_review.rules._base import RuleInput

_ID_NAME = re.compile(
    r"^(id|pid|person_?id|patient_?id|subject_?id|chart_?no|mrn|ins_?id|pseudonym|token|"
    r"身分證.*|病歷號.*|個案編號|病人編號|受檢者編號)$",
    re.IGNORECASE,
)


def pseudonym_like(series: pl.Series, *, min_length: int, min_share: float,
                   min_unique_ratio: float) -> bool:
    """True for a column of fixed-length base64url/hex tokens with many distinct values.

    Stage-2 pseudonyms are 22-character url-safe base64 strings (16 bytes of HMAC); hashes
    in hex are 32 or 64 characters. Words are excluded by requiring digits or mixed case.
    """
    values = series.cast(pl.String).drop_nulls()
    values = values.filter(values.str.len_chars() > 0)
    if values.len() == 0:
        return False
    tokens = values.filter(values.str.contains(rf"^[A-Za-z0-9_-]{{{min_length},}}$"))
    if tokens.len() / values.len() < min_share:
        return False
    lengths = tokens.str.len_chars()
    if lengths.value_counts(sort=True)["count"][0] / values.len() < min_share:
        return False  # not a fixed length
    mixed = tokens.str.contains(r"\d") | (
        tokens.str.contains(r"[a-z]") & tokens.str.contains(r"[A-Z]")
    )
    if mixed.mean() < 0.5:
        return False
    return values.n_unique() / values.len() >= min_unique_ratio


def row_level(item: RuleInput) -> list[Finding]:
    """Fail pseudonym-like columns, person-identifier columns with unique values, and tables
    whose counts are all 1."""
    ev = item.evidence
    frame = ev.table
    policy = item.policy
    out: list[Finding] = []
    for column in frame.columns:
        series = frame[column]
        if series.dtype == pl.String and pseudonym_like(
            series, min_length=policy.pseudonym_min_length,
            min_share=policy.pseudonym_min_share,
            min_unique_ratio=policy.pseudonym_min_unique_ratio,
        ):
            out.append(item.finding(
                "row_level", Verdict.FAIL, f"column '{column}'",
                "column holds pseudonym-like tokens (fixed-length base64/hex, mostly distinct): "
                "row-level data may not leave; aggregate before export",
            ))
        elif _ID_NAME.match(column.strip()) and frame.height > 1 and (
            series.n_unique() / frame.height >= policy.pseudonym_min_unique_ratio
        ):
            out.append(item.finding(
                "row_level", Verdict.FAIL, f"column '{column}'",
                "a person-identifier column with (nearly) one row per value: this is row-level "
                "data; aggregate before export",
            ))
    counts = ev.spec.counts if ev.spec else ()
    if counts and frame.height > 1:
        all_one = True
        for column in counts:
            col = item.numbers(column)
            known = col.values[~col.masked]
            if not known.size or not np.all(known == 1):
                all_one = False
                break
        if all_one:
            out.append(item.finding(
                "row_level", Verdict.FAIL, f"columns {', '.join(counts)}",
                "every count is 1: the table lists individual records; aggregate before export",
            ))
    return out
