"""Small vectorised sampling helpers shared by the claim generators."""

from __future__ import annotations

import numpy as np
import polars as pl


def day_weights(year: int) -> tuple[np.ndarray, np.ndarray]:
    """Dates (YYYYMMDD ints) of ``year`` and visit weights: weekdays ≫ Saturday ≫ Sunday."""
    days = np.arange(np.datetime64(f"{year}-01-01"), np.datetime64(f"{year + 1}-01-01"))
    weekday = (days.astype(np.int64) + 3) % 7  # 1970-01-01 was a Thursday (3 when Mon=0)
    w = np.where(weekday < 5, 1.0, np.where(weekday == 5, 0.55, 0.08))
    ymd = pl.Series(days).cast(pl.Date).dt.strftime("%Y%m%d").cast(pl.Int64).to_numpy()
    return ymd, w / w.sum()


def pick_within(groups: np.ndarray, keys: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """For each wanted key, a uniformly chosen position among ``groups == key``; -1 if none."""
    order = np.argsort(groups, kind="stable")
    sg = groups[order]
    lo = np.searchsorted(sg, keys, side="left")
    hi = np.searchsorted(sg, keys, side="right")
    cnt = hi - lo
    pick = lo + np.floor(rng.random(len(keys)) * np.maximum(cnt, 1)).astype(np.int64)
    out = order[np.minimum(pick, len(order) - 1)] if len(order) else np.full(len(keys), -1)
    return np.where(cnt > 0, out, -1)


def grouped_choice(
    group: np.ndarray, probs: dict[int, np.ndarray], rng: np.random.Generator
) -> np.ndarray:
    """Index drawn from ``probs[g]`` for each element of ``group`` (one uniform per element).

    All groups' CDFs sit end to end in one array, group ``j`` shifted by ``j``; a single
    ``searchsorted`` of ``j + u`` then samples every element at once, with no per-group
    masks over the (large) input.
    """
    keys = sorted(probs)
    k = len(probs[keys[0]])
    cdf = np.concatenate([j + np.cumsum(probs[g]) for j, g in enumerate(keys)])
    slot = np.full(max(keys) + 1, -1, dtype=np.int64)
    slot[keys] = np.arange(len(keys))
    j = slot[group]
    pos = np.searchsorted(cdf, j + rng.random(len(group)), side="right") - j * k
    return np.minimum(pos, k - 1)


def running_seq(gid: np.ndarray, counters: np.ndarray) -> np.ndarray:
    """1-based sequence numbers per group id continuing from ``counters`` (updated in place)."""
    order = np.argsort(gid, kind="stable")
    sg = gid[order]
    first = np.searchsorted(sg, sg, side="left")
    rank = np.empty(len(gid), dtype=np.int64)
    rank[order] = np.arange(len(gid)) - first
    seq = counters[gid] + rank + 1
    np.add.at(counters, gid, 1) if len(gid) < 1000 else counters.__iadd__(
        np.bincount(gid, minlength=len(counters))
    )
    return seq
