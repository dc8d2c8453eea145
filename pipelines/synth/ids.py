"""Vectorised generators of identifier strings: national IDs, business numbers (BAN)."""

from __future__ import annotations

import numpy as np
import polars as pl

# Letter values of the national-ID checksum (nhird_layout.md §14): A10 ... Z33.
_LETTER_VALUES = {
    "A": 10, "B": 11, "C": 12, "D": 13, "E": 14, "F": 15, "G": 16, "H": 17, "I": 34,
    "J": 18, "K": 19, "L": 20, "M": 21, "N": 22, "O": 35, "P": 23, "Q": 24, "R": 25,
    "S": 26, "T": 27, "U": 28, "V": 29, "W": 32, "X": 30, "Y": 31, "Z": 33,
}  # fmt: skip
LETTERS = np.array(list(_LETTER_VALUES))
_VALUES = np.array(list(_LETTER_VALUES.values()))
_DIGIT_WEIGHTS = np.array([7, 6, 5, 4, 3, 2, 1])  # serial digits 3..9 of the ID


def national_id_check_digit(
    letter_idx: np.ndarray, sex: np.ndarray, serial: np.ndarray
) -> np.ndarray:
    """Check digits for IDs made of ``LETTERS[letter_idx]``, sex digit and 7-digit serial."""
    v = _VALUES[letter_idx]
    total = (v // 10) * 1 + (v % 10) * 9 + sex * 8
    digits = (serial[:, None] // 10 ** np.arange(6, -1, -1)) % 10
    total = total + digits @ _DIGIT_WEIGHTS
    return (10 - total % 10) % 10


def national_ids(
    rng: np.random.Generator, sex: np.ndarray, letter_p: np.ndarray | None = None
) -> pl.Series:
    """Valid, distinct national IDs ``^[A-Z][12]\\d{8}$`` for people of the given sex (1/2).

    Distinctness: serials are drawn without replacement per (letter, sex) cell, so the
    caller must not mix IDs from two calls; use :func:`unique_national_ids` for pools
    that grow (chunks), which draws from a disjoint serial block per call.
    """
    n = len(sex)
    letter_idx = rng.choice(len(LETTERS), size=n, p=letter_p)
    serial = rng.choice(10_000_000, size=n, replace=False)
    return _format(letter_idx, sex.astype(np.int64), serial)


def unique_national_ids(
    rng: np.random.Generator, sex: np.ndarray, block: int, n_blocks: int
) -> pl.Series:
    """National IDs whose serials come from block ``block`` of ``n_blocks`` disjoint blocks.

    IDs from different blocks can never coincide, so chunks of people (and the physician
    pool) get distinct IDs without a global registry.
    """
    n = len(sex)
    size = 10_000_000 // n_blocks
    if n > size * len(LETTERS):
        raise ValueError(f"too many IDs ({n}) for one block of {size} serials")
    # One serial per person inside the block; the letter spreads collisions away.
    flat = rng.choice(size * len(LETTERS), size=n, replace=False)
    letter_idx = flat // size
    serial = block * size + flat % size
    return _format(letter_idx, sex.astype(np.int64), serial)


def _format(letter_idx: np.ndarray, sex: np.ndarray, serial: np.ndarray) -> pl.Series:
    check = national_id_check_digit(letter_idx, sex, serial)
    number = sex * 100_000_000 + serial * 10 + check
    return (
        pl.select(pl.lit(pl.Series(LETTERS[letter_idx])) + pl.lit(pl.Series(number)).cast(pl.Utf8))
        .to_series()
        .alias("id")
    )


def corrupt_check_digit(ids: list[str], rng: np.random.Generator) -> list[str]:
    """Same IDs with the last (check) digit replaced by a wrong one (for defect injection)."""
    out = []
    for value in ids:
        good = int(value[-1])
        bad = (good + int(rng.integers(1, 10))) % 10
        out.append(value[:-1] + str(bad))
    return out


_BAN_WEIGHTS = np.array([1, 2, 1, 2, 1, 2, 4])


def bans(rng: np.random.Generator, n: int) -> pl.Series:
    """Distinct valid 8-digit business numbers (統一編號; Σ digit-products ≡ 0 mod 10)."""
    head = rng.choice(10_000_000, size=n, replace=False)
    digits = (head[:, None] // 10 ** np.arange(6, -1, -1)) % 10
    prods = digits * _BAN_WEIGHTS
    partial = (prods // 10 + prods % 10).sum(axis=1)
    last = (10 - partial % 10) % 10  # weight 1 on the 8th digit
    return pl.Series("ban", head * 10 + last).cast(pl.Utf8).str.zfill(8)
