"""Identifier and code checks named by a column's ``check`` field, scalar and vectorised.

Each check has a scalar function (for single values, tests, and the synthetic generator)
and a Polars expression builder that computes the same rule on a whole column with string
slicing and integer arithmetic, never a Python UDF, so ingest stays columnar; a check may also
have a NumPy form for validating many values outside Polars (great-expectations). The
:data:`CHECKS` registry maps the catalog's check names to both forms plus a bilingual
description, so validation rules can be generated from the catalog.

Null handling: scalar functions return ``False`` for ``None``; expressions return null for a
null input (whether an empty field is allowed is the column's ``required`` rule, not the
check's).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

from catalog.loader import load_catalog
from catalog.model import Label

# --- Taiwan national ID / resident certificate numbers (nhird_layout.md §14) -------------

# Value of the first letter (registration area); note the irregular I, O, W, Z.
LETTER_VALUES: dict[str, int] = {
    "A": 10, "B": 11, "C": 12, "D": 13, "E": 14, "F": 15, "G": 16, "H": 17, "I": 34,
    "J": 18, "K": 19, "L": 20, "M": 21, "N": 22, "O": 35, "P": 23, "Q": 24, "R": 25,
    "S": 26, "T": 27, "U": 28, "V": 29, "W": 32, "X": 30, "Y": 31, "Z": 33,
}  # fmt: skip
# Second character's checksum digit: national ID (1/2), new UI number (8/9) use the digit;
# an old ARC (A-D) uses the units digit of the letter's value.
_SECOND_VALUES: dict[str, int] = {"1": 1, "2": 2, "8": 8, "9": 9} | {c: LETTER_VALUES[c] % 10 for c in "ABCD"}
TW_ID_PATTERN = r"^[A-Z](?:[1289]|[A-D])[0-9]{8}$"
_TW_ID_RE = re.compile(TW_ID_PATTERN)
_TAIL_WEIGHTS = (7, 6, 5, 4, 3, 2, 1)  # characters 3..9; the check digit (10th) weighs 1
_DIGITS = {str(i): i for i in range(10)}


def _tw_partial_sum(prefix9: str) -> int:
    """Weighted sum of the first nine characters (the caller has checked the structure).

    Unrolled: great-expectations applies the scalar check to every distinct ID of a batch
    (hundreds of thousands), where this is four times faster than a generator over weights.
    """
    first = LETTER_VALUES[prefix9[0]]
    d = _DIGITS
    return (
        first // 10
        + (first % 10) * 9
        + _SECOND_VALUES[prefix9[1]] * 8
        + 7 * d[prefix9[2]]
        + 6 * d[prefix9[3]]
        + 5 * d[prefix9[4]]
        + 4 * d[prefix9[5]]
        + 3 * d[prefix9[6]]
        + 2 * d[prefix9[7]]
        + d[prefix9[8]]
    )


def tw_id_check_digit(prefix9: str) -> str:
    """Return the check digit that completes a 9-character ID prefix.

    Parameters
    ----------
    prefix9
        First nine characters, e.g. ``"A12345678"`` (national ID), ``"A80000001"`` (new
        UI number) or ``"AC0123456"`` (old ARC).

    Raises
    ------
    ValueError
        If the prefix does not have the structure of one of the three formats.
    """
    if not isinstance(prefix9, str) or not _TW_ID_RE.match(prefix9 + "0"):
        raise ValueError(f"not a national ID / UI / ARC prefix: {prefix9!r}")
    return str((10 - _tw_partial_sum(prefix9) % 10) % 10)


def tw_id_is_valid(s: str | None) -> bool:
    """True if ``s`` is a national ID, new-format UI number or old ARC with a valid checksum."""
    if not isinstance(s, str) or not _TW_ID_RE.match(s):
        return False
    return (_tw_partial_sum(s[:9]) + int(s[9])) % 10 == 0


_LETTER_TABLE = np.full(256, -1, dtype=np.int64)
for _letter, _value in LETTER_VALUES.items():
    _LETTER_TABLE[ord(_letter)] = _value
_SECOND_TABLE = np.full(256, -1, dtype=np.int64)
for _char, _value in _SECOND_VALUES.items():
    _SECOND_TABLE[ord(_char)] = _value


def tw_id_valid_array(values: Sequence[object]) -> np.ndarray:
    """:func:`tw_id_is_valid` for many values at once with NumPy byte arithmetic.

    A third, independent implementation (not the Polars expression), for great-expectations,
    which applies the check to every distinct ID of a batch: there the scalar form costs about
    a second per million values and this a few tens of milliseconds.
    """
    out = np.zeros(len(values), dtype=bool)
    rows = [i for i, v in enumerate(values) if isinstance(v, str) and len(v) == 10 and v.isascii()]
    if not rows:
        return out
    chars = np.frombuffer("".join(values[i] for i in rows).encode("ascii"), dtype=np.uint8).reshape(-1, 10)
    first = _LETTER_TABLE[chars[:, 0]]
    second = _SECOND_TABLE[chars[:, 1]]
    digits = chars[:, 2:].astype(np.int64) - ord("0")
    structure = (first >= 0) & (second >= 0) & ((digits >= 0) & (digits <= 9)).all(axis=1)
    total = first // 10 + (first % 10) * 9 + second * 8 + digits[:, :7] @ np.array(_TAIL_WEIGHTS) + digits[:, 7]
    out[np.array(rows)] = structure & (total % 10 == 0)
    return out


def _digit(s: pl.Expr, i: int) -> pl.Expr:
    return s.str.slice(i, 1).cast(pl.Int32, strict=False)


def tw_id_valid_expr(expr: pl.Expr) -> pl.Expr:
    """Vectorised :func:`tw_id_is_valid` for a string column (null stays null)."""
    first = expr.str.slice(0, 1).replace_strict(LETTER_VALUES, default=None, return_dtype=pl.Int32)
    second = expr.str.slice(1, 1).replace_strict(_SECOND_VALUES, default=None, return_dtype=pl.Int32)
    total = (first // 10) + (first % 10) * 9 + second * 8 + _digit(expr, 9)
    for pos, weight in enumerate(_TAIL_WEIGHTS, start=2):
        total = total + _digit(expr, pos) * weight
    structure = expr.str.contains(TW_ID_PATTERN)
    return pl.when(expr.is_null()).then(None).otherwise(structure & ((total % 10) == 0).fill_null(False))


# --- ICD-10-CM / ICD-10-PCS -----------------------------------------------------------------

ICD10CM_PATTERN = r"^[A-Z][0-9][0-9A-Z][0-9A-Z]{0,4}$"
ICD10PCS_PATTERN = r"^[0-9A-HJ-NP-Z]{7}$"
_ICD10CM_RE = re.compile(ICD10CM_PATTERN)
_ICD10PCS_RE = re.compile(ICD10PCS_PATTERN)


@functools.lru_cache(maxsize=1)
def icd10cm_chapters() -> tuple[tuple[int, str, str], ...]:
    """The ICD-10-CM chapters as ``(chapter, first category, last category)`` from the catalog."""
    cs = load_catalog().codeset("icd10cm_chapters")
    return tuple((c.chapter, c.range[0], c.range[1]) for c in cs.chapters or ())


def icd10cm_chapter(code: str | None) -> int | None:
    """Chapter number of an ICD-10-CM code (no dot), or None if it is not a valid code."""
    if not isinstance(code, str) or not _ICD10CM_RE.match(code):
        return None
    cat = code[:3]
    for chapter, lo, hi in icd10cm_chapters():
        if lo <= cat <= hi:
            return chapter
    return None


def icd10cm_is_valid(code: str | None) -> bool:
    """True if ``code`` has ICD-10-CM structure and its category falls in a chapter."""
    return icd10cm_chapter(code) is not None


def icd10_chapter_expr(expr: pl.Expr) -> pl.Expr:
    """Vectorised :func:`icd10cm_chapter`: chapter number (Int32) or null."""
    cat = expr.str.slice(0, 3)
    out: pl.Expr | pl.When | pl.Then | None = None
    for chapter, lo, hi in icd10cm_chapters():
        cond = (cat >= pl.lit(lo)) & (cat <= pl.lit(hi))
        out = pl.when(cond) if out is None else out.when(cond)  # type: ignore[union-attr]
        out = out.then(pl.lit(chapter, dtype=pl.Int32))
    chapter_expr = out.otherwise(None)  # type: ignore[union-attr]
    return pl.when(expr.str.contains(ICD10CM_PATTERN)).then(chapter_expr).otherwise(None)


def icd10cm_valid_expr(expr: pl.Expr) -> pl.Expr:
    """Vectorised :func:`icd10cm_is_valid` (null stays null)."""
    return pl.when(expr.is_null()).then(None).otherwise(icd10_chapter_expr(expr).is_not_null())


def icd10pcs_is_valid(code: str | None) -> bool:
    """True if ``code`` is 7 characters from the ICD-10-PCS alphabet (digits, letters but I, O)."""
    return isinstance(code, str) and bool(_ICD10PCS_RE.match(code))


def icd10pcs_valid_expr(expr: pl.Expr) -> pl.Expr:
    """Vectorised :func:`icd10pcs_is_valid` (null stays null)."""
    return expr.str.contains(ICD10PCS_PATTERN)


# --- Medical institution code (nhird_layout.md §15) ------------------------------------------

INSTITUTION_PATTERN = r"^[0-9]{10}$"
_INSTITUTION_RE = re.compile(INSTITUTION_PATTERN)


@functools.lru_cache(maxsize=1)
def hos_ownership_codes() -> frozenset[str]:
    """Known 2-digit ownership codes (numeric ones; letter codes cannot start a 10-digit code)."""
    return frozenset(c for c in load_catalog().codeset("hos_ownership").codes if c.isdigit())


def institution_code_is_valid(code: str | None) -> bool:
    """True if ``code`` is 10 digits whose first two are a known ownership (HOS) code."""
    return isinstance(code, str) and bool(_INSTITUTION_RE.match(code)) and code[:2] in hos_ownership_codes()


def institution_code_valid_expr(expr: pl.Expr) -> pl.Expr:
    """Vectorised :func:`institution_code_is_valid` (null stays null)."""
    known = sorted(hos_ownership_codes())
    return expr.str.contains(INSTITUTION_PATTERN) & expr.str.slice(0, 2).is_in(known)


# --- Business administration number (統一編號) ------------------------------------------------

BAN_PATTERN = r"^[0-9]{8}$"
_BAN_RE = re.compile(BAN_PATTERN)
_BAN_WEIGHTS = (1, 2, 1, 2, 1, 2, 4, 1)
# The Ministry of Finance relaxed the rule from "divisible by 10" to "divisible by 5" in 2023
# (numbers were running out); every old number still passes, so we accept the new rule.
BAN_DIVISOR = 5


def _ban_sum(digits: list[int]) -> int:
    # Each product contributes the sum of its two digits.
    return sum((d * w) // 10 + (d * w) % 10 for d, w in zip(digits, _BAN_WEIGHTS, strict=True))


def ban_is_valid(s: str | None) -> bool:
    """True if ``s`` is an 8-digit Taiwan business number with a valid checksum.

    Weights 1,2,1,2,1,2,4,1; each product contributes the sum of its digits; the total must
    be divisible by 5 (10 before 2023). When the 7th digit is 7 its product 28 contributes
    10, which may count as 1 or 0, so ``total + 1`` divisible also passes.
    """
    if not isinstance(s, str) or not _BAN_RE.match(s):
        return False
    total = _ban_sum([int(c) for c in s])
    return total % BAN_DIVISOR == 0 or (s[6] == "7" and (total + 1) % BAN_DIVISOR == 0)


def ban_valid_expr(expr: pl.Expr) -> pl.Expr:
    """Vectorised :func:`ban_is_valid` (null stays null)."""
    total = pl.lit(0, dtype=pl.Int32)
    for i, w in enumerate(_BAN_WEIGHTS):
        p = _digit(expr, i) * w
        total = total + p // 10 + p % 10
    seventh_is_7 = expr.str.slice(6, 1) == "7"
    ok = ((total % BAN_DIVISOR) == 0) | (seventh_is_7 & (((total + 1) % BAN_DIVISOR) == 0))
    valid = expr.str.contains(BAN_PATTERN) & ok.fill_null(False)
    return pl.when(expr.is_null()).then(None).otherwise(valid)


# --- Registry ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Check:
    """A named check: scalar and vectorised forms of one rule, with a bilingual description."""

    name: str
    scalar: Callable[[str | None], bool]
    expr: Callable[[pl.Expr], pl.Expr]
    description: Label
    array: Callable[[Sequence[object]], np.ndarray] | None = None
    """Optional many-values form (NumPy), independent of ``expr``, for bulk validation."""


CHECKS: dict[str, Check] = {
    c.name: c
    for c in (
        Check(
            "tw_national_id",
            tw_id_is_valid,
            tw_id_valid_expr,
            Label(
                en="Taiwan national ID, resident UI number or old ARC with a valid checksum",
                zh="身分證統一編號、新式統一證號或舊式居留證號，檢查碼正確",
            ),
            tw_id_valid_array,
        ),
        Check(
            "institution_code",
            institution_code_is_valid,
            institution_code_valid_expr,
            Label(
                en="10-digit medical institution code starting with a known ownership code",
                zh="十碼醫事機構代號，前兩碼為已知權屬別",
            ),
        ),
        Check(
            "icd10cm",
            icd10cm_is_valid,
            icd10cm_valid_expr,
            Label(
                en="ICD-10-CM code without the dot, inside an ICD-10-CM chapter",
                zh="ICD-10-CM診斷碼（不含小數點），屬於某一章節",
            ),
        ),
        Check(
            "icd10pcs",
            icd10pcs_is_valid,
            icd10pcs_valid_expr,
            Label(
                en="ICD-10-PCS procedure code: 7 characters, digits and letters except I and O",
                zh="ICD-10-PCS處置碼：七碼，數字及英文字母（不含I、O）",
            ),
        ),
        Check(
            "ban",
            ban_is_valid,
            ban_valid_expr,
            Label(
                en="8-digit business administration number with a valid checksum",
                zh="八碼營利事業統一編號，檢查碼正確",
            ),
        ),
    )
}
