"""Taiwan national ID and resident certificate checksums (reference §14).

``catalog.checks.tw_id_is_valid`` is being written by another engineer; until it exists the
identifier scanner uses this module, which follows the same published algorithm.
"""

from __future__ import annotations

import re

# Letter values (I, O, W are out of alphabetical order).
LETTER_VALUES = {
    "A": 10, "B": 11, "C": 12, "D": 13, "E": 14, "F": 15, "G": 16, "H": 17, "I": 34, "J": 18,
    "K": 19, "L": 20, "M": 21, "N": 22, "O": 35, "P": 23, "Q": 24, "R": 25, "S": 26, "T": 27,
    "U": 28, "V": 29, "W": 32, "X": 30, "Y": 31, "Z": 33,
}
NATIONAL_ID = re.compile(r"^[A-Z][12]\d{8}$")
NEW_RESIDENT_ID = re.compile(r"^[A-Z][89]\d{8}$")
OLD_RESIDENT_ID = re.compile(r"^[A-Z][A-D]\d{8}$")


def _digit_sum(first: int, second: int, digits: str) -> int:
    # First letter: tens ×1, units ×9; then a second position ×8; then 7..1; check ×1.
    total = (first // 10) + (first % 10) * 9 + second * 8
    total += sum(int(d) * w for d, w in zip(digits[:7], range(7, 0, -1), strict=True))
    return total + int(digits[7])


def tw_id_is_valid(value: str) -> bool:
    """True when ``value`` is a national ID, new-format UI number or old ARC with a valid check.

    Examples: ``A123456789`` (national ID), ``A800000014`` (new resident number),
    ``AC01234567`` (old resident certificate) are valid; ``A123456788`` is not.
    """
    value = value.strip().upper()
    if NATIONAL_ID.match(value) or NEW_RESIDENT_ID.match(value):
        return _digit_sum(LETTER_VALUES[value[0]], int(value[1]), value[2:]) % 10 == 0
    if OLD_RESIDENT_ID.match(value):
        second = LETTER_VALUES[value[1]] % 10
        return _digit_sum(LETTER_VALUES[value[0]], second, value[2:]) % 10 == 0
    return False


def id_validator():
    """The checksum function to use: ``catalog.checks.tw_id_is_valid`` if present, else ours."""
    try:
        from catalog.checks import tw_id_is_valid as shared  # type: ignore[import-not-found]
    except ImportError:
        return tw_id_is_valid
    return shared
