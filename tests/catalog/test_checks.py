"""Identifier and code checks: known values, and scalar vs vectorised agreement."""

from __future__ import annotations

import random
import string

import polars as pl
import pytest

from catalog.checks import (
    CHECKS,
    LETTER_VALUES,
    ban_is_valid,
    icd10_chapter_expr,
    icd10cm_chapter,
    icd10cm_is_valid,
    icd10pcs_is_valid,
    institution_code_is_valid,
    tw_id_check_digit,
    tw_id_is_valid,
)
from catalog.model import CheckName


def test_tw_id_known_values() -> None:
    for ok in ("A123456789", "A800000014", "AC01234567", "AA00000009"):
        assert tw_id_is_valid(ok), ok
    for bad in ("A123456788", "A323456789", "AE01234567", "a123456789", "A12345678", None, ""):
        assert not tw_id_is_valid(bad), bad
    assert tw_id_check_digit("A12345678") == "9"
    assert tw_id_check_digit("A80000001") == "4"
    with pytest.raises(ValueError, match="prefix"):
        tw_id_check_digit("12345678")


def _random_ids(n: int, rng: random.Random) -> list[str]:
    out = []
    letters = list(LETTER_VALUES)
    for i in range(n):
        second = rng.choice("1289ABCD")
        prefix = rng.choice(letters) + second + "".join(rng.choices(string.digits, k=7))
        if i % 3 == 0:
            out.append(prefix + tw_id_check_digit(prefix))
        elif i % 3 == 1:
            out.append(prefix + rng.choice(string.digits))
        else:  # junk of similar shape
            out.append("".join(rng.choices(string.ascii_uppercase + string.digits, k=10)))
    return out


def _agree(name: str, values: list[str | None]) -> None:
    check = CHECKS[name]
    got = pl.DataFrame({"v": values}, schema={"v": pl.String}).select(check.expr(pl.col("v")))
    vec = got.to_series().to_list()
    scalar = [None if v is None else check.scalar(v) for v in values]
    assert vec == scalar
    if check.array is not None:
        # The bulk (NumPy) form answers False where the scalar does, None included.
        assert check.array(values).tolist() == [bool(x) for x in scalar]


def test_scalar_and_vectorised_agree() -> None:
    rng = random.Random(7)
    ids = _random_ids(3000, rng)
    assert 900 < sum(map(tw_id_is_valid, ids)) < 2000
    odd = ["A12345678", "A1234567890", "a123456789", "A1234567８9", "Ａ123456789", "A12345678 ", "", "A1234567-9",
           "I1E3456789", "Z9ZZZZZZZZ", 12345]  # fmt: skip
    _agree("tw_national_id", [*ids, *[v for v in odd if isinstance(v, str)], None])
    assert not CHECKS["tw_national_id"].array(odd).any()
    digits = ["".join(rng.choices(string.digits, k=8)) for _ in range(3000)]
    _agree("ban", [*digits, "1234567", "1234567a", None])
    inst = [rng.choice(["04", "35", "59", "99", "03"]) + "".join(rng.choices(string.digits, k=8))
            for _ in range(2000)]  # fmt: skip
    _agree("institution_code", [*inst, "041234567", None])
    alphabet = string.ascii_uppercase + string.digits
    icd = ["".join(rng.choices(alphabet, k=rng.randint(3, 7))) for _ in range(3000)]
    _agree("icd10cm", [*icd, "E119", "I10", "S52501A", None])
    _agree("icd10pcs", [*icd, "0DT70ZZ", None])


def test_icd10cm_structure_and_chapters() -> None:
    cases = {"E119": 4, "I10": 9, "J069": 10, "S52501A": 19, "A009": 1, "C50911": 2, "D500": 3,
             "F329": 5, "O9A1": 15, "T887XXA": 19, "Z0000": 21, "V0001XA": 20, "U071": 22}  # fmt: skip
    for code, chapter in cases.items():
        assert icd10cm_chapter(code) == chapter, code
        assert icd10cm_is_valid(code)
    for bad in ("U99", "E11.9", "e119", "E1", "E1199999", "H96", "4659", None):
        assert not icd10cm_is_valid(bad), bad
    df = pl.DataFrame({"c": [*cases, "H96", None]})
    assert df.select(icd10_chapter_expr(pl.col("c"))).to_series().to_list() == [
        *cases.values(),
        None,
        None,
    ]


def test_pcs_institution_ban() -> None:
    assert icd10pcs_is_valid("0DT70ZZ") and not icd10pcs_is_valid("0IT70ZZ")
    assert not icd10pcs_is_valid("0DT70Z")
    assert institution_code_is_valid("0401180014") and institution_code_is_valid("3501010019")
    assert not institution_code_is_valid("9901180014") and not institution_code_is_valid("04011")
    # 04595257 is a real published example; 10458575 passes only by the 7th-digit-7 rule.
    assert ban_is_valid("04595257") and ban_is_valid("10458575")
    assert not ban_is_valid("04595258") and not ban_is_valid("0459525")


def test_registry_covers_catalog_check_names() -> None:
    assert set(CHECKS) == set(CheckName.__args__)  # type: ignore[attr-defined]
    for check in CHECKS.values():
        assert check.description.en and check.description.zh
