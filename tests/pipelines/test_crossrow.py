"""The key-hash pre-filter of the duplicate-key rule: every row whose hash repeats is a
candidate, in one pass or in several (bounded memory), across key files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from pipelines.ingest.crossrow import repeated_key_hashes


def _key_files(tmp_path: Path) -> tuple[list[Path], set[tuple[str, int]]]:
    rng = np.random.default_rng(7)
    hashes = rng.integers(0, 2**63, 60_000, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
    hashes[100:105] = hashes[3]  # five repeats of one key within the first file
    hashes[59_999] = hashes[10]  # a repeat across files
    hashes[40_000] = hashes[40_001] = np.uint64(2**64 - 1)  # the top of the hash range
    hashes[40_002] = hashes[50_000] = np.uint64(0)  # and its bottom
    frame = pl.DataFrame(
        {
            "_source": ["a.csv"] * 30_000 + ["b.csv"] * 30_000,
            "_order": [0] * 30_000 + [1] * 30_000,
            "_line": np.arange(60_000) % 30_000 + 2,
            "_pkh": pl.Series(hashes, dtype=pl.UInt64),
        }
    )
    paths = [tmp_path / "k0.parquet", tmp_path / "k1.parquet"]
    frame[:30_000].write_parquet(paths[0])
    frame[30_000:].write_parquet(paths[1])
    expected = set(frame.filter(pl.col("_pkh").is_duplicated()).select("_source", "_line").iter_rows())
    return paths, expected


@pytest.mark.parametrize("per_pass", [1 << 20, 25_000, 4_000])
def test_every_row_with_a_repeated_hash_is_a_candidate(tmp_path: Path, per_pass: int) -> None:
    paths, expected = _key_files(tmp_path)
    assert len(expected) == 6 + 2 + 2 + 2
    got = repeated_key_hashes(paths, per_pass=per_pass)
    assert set(got.iter_rows()) == expected
    assert got.height == len(expected)


def test_no_repeats_no_candidates(tmp_path: Path) -> None:
    path = tmp_path / "k.parquet"
    pl.DataFrame(
        {"_source": ["a.csv"] * 3, "_order": [0] * 3, "_line": [2, 3, 4], "_pkh": pl.Series([5, 6, 7], dtype=pl.UInt64)}
    ).write_parquet(path)
    got = repeated_key_hashes([path])
    assert got.height == 0
    assert got.schema == pl.Schema({"_source": pl.String, "_line": pl.Int64})
