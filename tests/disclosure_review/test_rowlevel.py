"""Rule 6: row-level data."""

import base64
import hashlib

import polars as pl
from dr_helpers import rules_of

from disclosure_review.rules.rowlevel import pseudonym_like


def _pseudonyms(k: int) -> list[str]:
    # Stage-2 shape: 16 bytes of HMAC, url-safe base64 without padding -> 22 chars.
    return [
        base64.urlsafe_b64encode(hashlib.sha256(str(i).encode()).digest()[:16])
        .decode().rstrip("=")
        for i in range(k)
    ]


def test_pseudonym_column_detected_without_context(check):
    tokens = _pseudonyms(30)
    assert all(len(t) == 22 for t in tokens)
    text = "pid,age\n" + "".join(f"{t},{40 + i}\n" for i, t in enumerate(tokens))
    r = check("rows.csv", text.replace("pid", "who"))
    assert ("row_level", "column 'who'") in rules_of(r, "fail")


def test_pseudonym_detector_edges():
    words = pl.Series(["hospitalization_total"] * 5 + ["outpatient_visits_all"] * 5)
    assert not pseudonym_like(words, min_length=16, min_share=0.9, min_unique_ratio=0.8)
    hexes = pl.Series([hashlib.md5(str(i).encode()).hexdigest() for i in range(20)])
    assert pseudonym_like(hexes, min_length=16, min_share=0.9, min_unique_ratio=0.8)
    repeated = pl.Series(_pseudonyms(2) * 10)
    assert not pseudonym_like(repeated, min_length=16, min_share=0.9, min_unique_ratio=0.8)


def test_all_counts_one_is_row_level(check):
    r = check("ones.csv", "diag,n\nA,1\nB,1\nC,1\n")
    assert ("row_level", "columns n") in rules_of(r, "fail")


def test_person_id_column_is_row_level(check):
    r = check("ids.csv", "patient_id,cost\nP1,100\nP2,200\nP3,300\n")
    assert ("row_level", "column 'patient_id'") in rules_of(r, "fail")
