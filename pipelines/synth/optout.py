"""Opt-out lists per channel (counter, web, app, agency) with overlaps, withdrawals and a spike."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

CHANNELS = ["counter", "web", "app", "agency"]


def write_optout(
    out: Path, ids: pl.Series, years: list[int], share: float, rng: np.random.Generator
) -> dict:
    """Write ``out/optout/optout_<channel>.csv``; returns counts and the spike month (YYYYMM)."""
    n = round(len(ids) * share)
    who = rng.choice(len(ids), n, replace=False)
    months = np.array([y * 100 + m for y in years for m in range(1, 13)])
    w = np.ones(len(months))
    spike = int(months[rng.integers(0, len(months))])
    w[months == spike] = 6.0  # an abnormal month: six times the usual volume
    month = months[rng.choice(len(months), n, p=w / w.sum())]
    date = month * 100 + rng.integers(1, 29, n)
    channel = rng.choice(len(CHANNELS), n, p=[0.3, 0.35, 0.25, 0.1])
    rows = pl.DataFrame(
        {
            "ID": ids.gather(who),
            "EFFECTIVE_DATE": date,
            "c": channel.astype(np.int64),
            "ACTION": "optout",
        }
    )
    # ~10% also appear on another agency's list (lists must merge), ~5% withdraw later.
    dup = rows.sample(fraction=0.1, seed=int(rng.integers(2**31))).with_columns(
        c=pl.lit(CHANNELS.index("agency"), pl.Int64), EFFECTIVE_DATE=pl.col("EFFECTIVE_DATE") + 1
    )
    wd = rows.sample(fraction=0.05, seed=int(rng.integers(2**31))).with_columns(
        ACTION=pl.lit("withdraw"),
        EFFECTIVE_DATE=pl.min_horizontal(
            pl.col("EFFECTIVE_DATE") + 100, pl.lit(max(years) * 10000 + 1228)
        ),
    )
    allrows = pl.concat([rows, dup, wd]).with_columns(
        CHANNEL=pl.col("c").replace_strict(dict(enumerate(CHANNELS)), return_dtype=pl.Utf8)
    )
    d = out / "optout"
    d.mkdir(parents=True, exist_ok=True)
    counts = {}
    for ch in CHANNELS:
        part = allrows.filter(pl.col("CHANNEL") == ch).sort("EFFECTIVE_DATE", "ID")
        part.select("ID", "EFFECTIVE_DATE", "CHANNEL", "ACTION").write_csv(d / f"optout_{ch}.csv")
        counts[ch] = part.height
    return {"spike_month": spike, "people": n, "rows": counts}
