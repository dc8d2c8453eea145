"""Differencing across outputs (rule 9): exact set comparison of released cells.

When the toolkit's table helpers produce an output, each cell records which units (people,
or institutions) contribute to it, as a Roaring bitmap over the project's integer index.
A new cell N fails against any earlier cell R (released before, or in the same request) of
the same unit kind when one of

    |N \\ R|,  |R \\ N|,  |N ∩ R|  (the last only when non-zero)

is between 1 and the threshold: subtracting one published count from the other, or the
overlap, would describe 1..threshold units.

Speed: only cells that share at least one unit can give a non-empty intersection, and for
disjoint cells the differences are the cells themselves (the count threshold rule's job).
So the engine keeps an inverted index unit → released cells (CSR arrays) and, for each new
cell, counts intersections with every released cell at once with ``numpy.bincount`` over the
index entries of its units; cell sizes then give both differences. Cost is proportional to
the index entries touched, never to (new cells × released cells) Python pairs.

Storage: one file per released output under ``store_dir`` (``<hex id>.cells``: a JSON
header naming cells, kinds and byte offsets, then the serialized bitmaps), written
atomically (temporary file, fsync, ``os.replace``) and loaded lazily on the first check.
"""

from __future__ import annotations

import json
import os
import struct
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import polars as pl
from pyroaring import BitMap

from disclosure_review.model import Finding, Verdict

UnitKind = Literal["person", "institution"]
_MAGIC = b"ENCLAVE-DIFF-1\n"
_SUFFIX = ".cells"


@dataclass(frozen=True)
class CellMembership:
    """The units behind one cell of one output.

    Parameters
    ----------
    output_id : str
        The output (file or request item) the cell belongs to.
    cell : str
        Human label of the cell, e.g. ``sex=F, age=65+``.
    unit_kind : {"person", "institution"}
        What the indexes count.
    members : BitMap
        Per-project integer indexes of the contributing units.
    """

    output_id: str
    cell: str
    unit_kind: UnitKind
    members: BitMap


def _array(members: BitMap) -> np.ndarray:
    # to_array() gives an array.array('I'); view it without a Python loop.
    return np.frombuffer(members.to_array(), dtype=np.uint32).astype(np.int64)


class DifferencingStoreError(OSError):
    """A file of the differencing store is unreadable or not in the expected format."""


class _Index:
    """Released cells of one unit kind: sizes, labels and the unit → cells CSR index."""

    def __init__(self, cells: list[CellMembership]) -> None:
        self.cells = cells
        self.sizes = np.fromiter((len(c.members) for c in cells), dtype=np.int64,
                                 count=len(cells))
        if cells:
            units = np.concatenate(
                [_array(c.members) for c in cells]
            )
            owners = np.repeat(np.arange(len(cells), dtype=np.int64), self.sizes)
        else:
            units = np.empty(0, dtype=np.int64)
            owners = np.empty(0, dtype=np.int64)
        order = np.argsort(units, kind="stable")
        self.unit_sorted = units[order]
        self.owner_sorted = owners[order]

    def intersections(self, members: BitMap) -> tuple[np.ndarray, np.ndarray]:
        """(cell ids with a non-empty intersection, intersection sizes)."""
        if not len(self.cells) or not len(members):
            return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
        query = _array(members)
        lo = np.searchsorted(self.unit_sorted, query, side="left")
        hi = np.searchsorted(self.unit_sorted, query, side="right")
        lengths = hi - lo
        if not lengths.any():
            return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
        # Gather all owner slices [lo, hi) without a Python loop.
        starts = np.repeat(lo, lengths)
        offsets = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        owners = self.owner_sorted[starts + offsets]
        counts = np.bincount(owners, minlength=len(self.cells))
        hit = np.flatnonzero(counts)
        return hit, counts[hit]


def _violations(n_size: int, r_sizes: np.ndarray, inter: np.ndarray,
                threshold: int) -> np.ndarray:
    """Boolean mask of pairs where a difference or the overlap isolates 1..threshold units."""
    n_minus_r = n_size - inter
    r_minus_n = r_sizes - inter

    def small(x: np.ndarray) -> np.ndarray:
        return (x >= 1) & (x <= threshold)

    return small(n_minus_r) | small(r_minus_n) | small(inter)


def _explain(n: CellMembership, r: CellMembership, inter: int, threshold: int,
             same_request: bool) -> str:
    n_minus_r = len(n.members) - inter
    r_minus_n = len(r.members) - inter
    parts = []
    if 1 <= n_minus_r <= threshold:
        parts.append(f"{n_minus_r} {n.unit_kind}(s) are in the new cell but not in the other")
    if 1 <= r_minus_n <= threshold:
        parts.append(f"{r_minus_n} {n.unit_kind}(s) are in the other cell but not in the new")
    if 1 <= inter <= threshold:
        parts.append(f"the cells share only {inter} {n.unit_kind}(s)")
    where = "in the same request" if same_request else "already released"
    return (
        f"differencing against output '{r.output_id}' cell [{r.cell}] ({where}): "
        f"{'; '.join(parts)} (isolating 1..{threshold} units fails); change the groupings "
        "so that the outputs do not nest this closely"
    )


def _safe_name(output_id: str) -> str:
    return output_id.encode("utf-8").hex() + _SUFFIX


def _encode(output_id: str, cells: Sequence[CellMembership]) -> bytes:
    blobs = [c.members.serialize() for c in cells]
    header = {
        "output_id": output_id,
        "cells": [
            {"cell": c.cell, "unit_kind": c.unit_kind, "length": len(b)}
            for c, b in zip(cells, blobs, strict=True)
        ],
    }
    raw = json.dumps(header, ensure_ascii=False).encode("utf-8")
    return _MAGIC + struct.pack(">Q", len(raw)) + raw + b"".join(blobs)


def _decode(data: bytes, path: Path) -> list[CellMembership]:
    try:
        if not data.startswith(_MAGIC):
            raise ValueError("bad magic")
        pos = len(_MAGIC)
        (hlen,) = struct.unpack(">Q", data[pos:pos + 8])
        pos += 8
        header: dict[str, Any] = json.loads(data[pos:pos + hlen].decode("utf-8"))
        pos += hlen
        cells = []
        for entry in header["cells"]:
            blob = data[pos:pos + entry["length"]]
            pos += entry["length"]
            cells.append(CellMembership(header["output_id"], entry["cell"], entry["unit_kind"],
                                        BitMap.deserialize(blob)))
        return cells
    except (ValueError, KeyError, struct.error) as exc:
        raise DifferencingStoreError(f"{path}: not a differencing store file ({exc})") from exc


class DifferencingHistory:
    """The released cells of one project and the differencing check against them.

    Parameters
    ----------
    store_dir : Path
        Folder holding one ``.cells`` file per released output (created on first write).
    threshold : int
        Differences or overlaps of ``1..threshold`` units fail (policy
        ``differencing_threshold``, default 5).
    """

    def __init__(self, store_dir: Path, *, threshold: int = 5) -> None:
        self.store_dir = Path(store_dir)
        self.threshold = threshold
        self._cells: list[CellMembership] | None = None
        self._indexes: dict[str, _Index] | None = None

    # -- storage -------------------------------------------------------------------------
    def _load(self) -> list[CellMembership]:
        if self._cells is None:
            cells: list[CellMembership] = []
            if self.store_dir.is_dir():
                for path in sorted(self.store_dir.glob(f"*{_SUFFIX}")):
                    cells.extend(_decode(path.read_bytes(), path))
            self._cells = cells
        return self._cells

    def _index(self, kind: str) -> _Index:
        if self._indexes is None:
            cells = self._load()
            kinds = {c.unit_kind for c in cells}
            self._indexes = {k: _Index([c for c in cells if c.unit_kind == k]) for k in kinds}
        return self._indexes.get(kind) or _Index([])

    def released_outputs(self) -> list[str]:
        """Ids of the outputs recorded so far."""
        return sorted({c.output_id for c in self._load()})

    def record_release(self, output_id: str, cells: Sequence[CellMembership]) -> None:
        """Persist the cells of a released output (atomic; replaces an earlier record).

        Raises
        ------
        ValueError
            A cell belongs to another output id.
        """
        wrong = [c.cell for c in cells if c.output_id != output_id]
        if wrong:
            raise ValueError(f"cells {wrong[:3]} do not belong to output {output_id!r}")
        self.store_dir.mkdir(parents=True, exist_ok=True)
        target = self.store_dir / _safe_name(output_id)
        fd, tmp = tempfile.mkstemp(dir=self.store_dir, prefix=".tmp-", suffix=_SUFFIX)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(_encode(output_id, cells))
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        if self._cells is not None:
            self._cells = [c for c in self._cells if c.output_id != output_id] + list(cells)
            self._indexes = None

    # -- check ---------------------------------------------------------------------------
    def check(self, new_cells: Sequence[CellMembership]) -> list[Finding]:
        """Differencing findings of ``new_cells`` against the history and each other.

        Returns
        -------
        list[Finding]
            One ``differencing`` fail per offending pair, on the new cell, naming the
            other output and cell.
        """
        findings: list[Finding] = []
        by_kind: dict[str, list[CellMembership]] = {}
        for cell in new_cells:
            by_kind.setdefault(cell.unit_kind, []).append(cell)
        for kind, cells in by_kind.items():
            released = self._index(kind)
            own = _Index(cells)
            for i, cell in enumerate(cells):
                size = len(cell.members)
                for index, same in ((released, False), (own, True)):
                    ids, inter = index.intersections(cell.members)
                    if same:  # each unordered pair once, never a cell with itself
                        keep = ids > i
                        ids, inter = ids[keep], inter[keep]
                    if not ids.size:
                        continue
                    bad = _violations(size, index.sizes[ids], inter, self.threshold)
                    for j, k in zip(ids[bad], inter[bad], strict=True):
                        other = index.cells[int(j)]
                        findings.append(Finding(
                            "differencing", Verdict.FAIL, cell.output_id, f"cell [{cell.cell}]",
                            _explain(cell, other, int(k), self.threshold, same),
                        ))
        return findings


def memberships_from_frame(
    frame: pl.DataFrame | pl.LazyFrame | Any,
    *,
    output_id: str,
    unit_column: str,
    group_columns: Sequence[str],
    unit_kind: UnitKind = "person",
) -> list[CellMembership]:
    """Cells of a group-by as bitmaps of the units in each group.

    Parameters
    ----------
    frame : polars DataFrame/LazyFrame or DuckDB relation
        Row data with a per-project integer unit index column.
    output_id : str
        Id of the output the cells belong to.
    unit_column : str
        Column with the unit's integer index (0 <= index < 2**32).
    group_columns : sequence of str
        The table's dimensions; one cell per distinct combination.
    unit_kind : {"person", "institution"}
        What the index counts.

    Returns
    -------
    list[CellMembership]
        Labelled ``col=value, ...``, in group order.
    """
    if not isinstance(frame, pl.DataFrame | pl.LazyFrame):
        frame = frame.pl()  # DuckDB relation → Polars, columnar
    lazy = frame.lazy()
    groups = list(group_columns)
    grouped = (
        lazy.group_by(groups)
        .agg(pl.col(unit_column).cast(pl.UInt32).unique().alias("__units"))
        .sort(groups)
        .collect()
    )
    labels = grouped.select(
        pl.concat_str(
            [pl.concat_str([pl.lit(f"{g}="), pl.col(g).cast(pl.String).fill_null("null")])
             for g in groups],
            separator=", ",
        ).alias("__label")
    )["__label"].to_list()
    cells = []
    for label, units in zip(labels, grouped["__units"].to_list(), strict=True):
        cells.append(CellMembership(output_id, label, unit_kind,
                                    BitMap(np.asarray(units, dtype=np.uint32))))
    return cells
