"""The key-hash pre-filter of the duplicate-key rule: every row whose key repeats is a
candidate, in one pass or in several (bounded memory), across staged files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from pipelines.ingest.crossrow import connect_duckdb, repeated_key_hashes

KEY = ["FEE_YM", "SEQ_NO"]


def _staged(tmp_path: Path) -> tuple[list[Path], set[tuple[str, int]]]:
    rng = np.random.default_rng(7)
    n = 60_000
    fee_ym = rng.choice(["202301", "202302", "202303"], n)
    seq = np.array([f"{v:06d}" for v in rng.permutation(900_000)[:n]], dtype=object)
    seq[100:105] = seq[3]  # five repeats of one key within the first file...
    fee_ym[100:105] = fee_ym[3]
    seq[59_999], fee_ym[59_999] = seq[10], fee_ym[10]  # ...and one across files
    seq[200], fee_ym[200] = seq[201], "202312"  # same SEQ_NO, other month: not a repeat
    frame = pl.DataFrame(
        {
            "FEE_YM": fee_ym.tolist(),
            "SEQ_NO": seq.tolist(),
            "_line": (np.arange(n) % 30_000 + 2).tolist(),
            "_source": ["a.csv"] * 30_000 + ["b.csv"] * 30_000,
            "_order": [0] * 30_000 + [1] * 30_000,
        }
    )
    paths = [tmp_path / "p0.parquet", tmp_path / "p1.parquet"]
    frame[:30_000].write_parquet(paths[0])
    frame[30_000:].write_parquet(paths[1])
    expected = set(frame.filter(pl.struct(KEY).is_duplicated()).select("_source", "_line").iter_rows())
    return paths, expected


@pytest.mark.parametrize("per_pass", [1 << 20, 25_000, 4_000])
def test_every_row_with_a_repeated_key_is_a_candidate(tmp_path: Path, per_pass: int) -> None:
    paths, expected = _staged(tmp_path)
    assert len(expected) == 6 + 2
    con = connect_duckdb(tmp_path)
    got = repeated_key_hashes(con, paths, KEY, per_pass=per_pass)
    # 64-bit hashes of 60,000 distinct keys do not collide (odds about 1e-10), so the
    # candidates are exactly the rows whose key repeats.
    assert set(got.iter_rows()) == expected
    assert got.height == len(expected)


def test_no_repeats_no_candidates(tmp_path: Path) -> None:
    path = tmp_path / "p.parquet"
    pl.DataFrame(
        {"FEE_YM": ["202301"] * 3, "SEQ_NO": ["1", "2", "3"], "_source": ["a.csv"] * 3, "_line": [2, 3, 4]}
    ).write_parquet(path)
    got = repeated_key_hashes(connect_duckdb(tmp_path), [path], KEY)
    assert got.height == 0
    assert got.schema == pl.Schema({"_source": pl.String, "_line": pl.Int64})
