"""Cell-membership sidecars: which units stand behind each cell of an output file.

The toolkit's table helpers write, next to an output ``<file>``, a sidecar
``<file>.cells.parquet`` (or ``<file>.cells.json``) that the export request reads for the
differencing rule. Format (one row / object per cell):

========== ======== ===============================================================
field      type     meaning
========== ======== ===============================================================
output_id  string   the toolkit's id of the output (one value per sidecar)
cell       string   human label of the cell, e.g. ``sex=F, age=65+``
unit_kind  string   ``person`` or ``institution``
members    binary   ``pyroaring.BitMap.serialize()`` of the per-project unit indexes
========== ======== ===============================================================

In JSON the file is ``{"cells": [{"output_id", "cell", "unit_kind", "members"}]}`` with
``members`` the serialized bitmap in standard base64.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from pathlib import Path

import polars as pl
from pyroaring import BitMap

from disclosure_review.differencing import CellMembership
from disclosure_review.errors import OutputInputError

SIDECAR_SUFFIXES = (".cells.parquet", ".cells.json")
_KINDS = {"person", "institution"}


class CellsSidecarError(OutputInputError):
    """A cell-membership sidecar is malformed (names the file and the row)."""


def sidecar_for(path: Path) -> Path | None:
    """The sidecar next to output ``path``, or ``None`` when the output has none."""
    for suffix in SIDECAR_SUFFIXES:
        candidate = path.with_name(path.name + suffix)
        if candidate.is_file():
            return candidate
    return None


def is_sidecar(path: Path) -> bool:
    """True when ``path`` is itself a sidecar (so it is not checked as an output)."""
    return path.name.endswith(SIDECAR_SUFFIXES)


def _rows(path: Path) -> list[dict[str, object]]:
    if path.name.endswith(".cells.parquet"):
        try:
            frame = pl.read_parquet(path)
        except Exception as exc:  # polars raises several types for corrupt files
            raise CellsSidecarError(f"{path}: not a readable Parquet sidecar ({exc})") from exc
        missing = {"output_id", "cell", "unit_kind", "members"} - set(frame.columns)
        if missing:
            raise CellsSidecarError(f"{path}: sidecar lacks column(s) {sorted(missing)}")
        return frame.select("output_id", "cell", "unit_kind", "members").to_dicts()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        rows = data["cells"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CellsSidecarError(f"{path}: expected {{\"cells\": [...]}} JSON ({exc})") from exc
    out = []
    for i, row in enumerate(rows):
        try:
            out.append({**row, "members": base64.b64decode(row["members"], validate=True)})
        except (KeyError, TypeError, binascii.Error) as exc:
            raise CellsSidecarError(f"{path}: cell {i}: 'members' must be base64 ({exc})") from exc
    return out


def read_cells(path: Path) -> list[CellMembership]:
    """Read a sidecar into :class:`CellMembership` objects.

    Raises
    ------
    CellsSidecarError
        Missing fields, an unknown unit kind, several output ids or an invalid bitmap.
    """
    cells = []
    for i, row in enumerate(_rows(path)):
        kind = row.get("unit_kind")
        if kind not in _KINDS:
            raise CellsSidecarError(
                f"{path}: cell {i}: unit_kind {kind!r} must be one of {sorted(_KINDS)}"
            )
        if not row.get("cell") or not row.get("output_id"):
            raise CellsSidecarError(f"{path}: cell {i}: 'output_id' and 'cell' are required")
        try:
            members = BitMap.deserialize(bytes(row["members"]))  # type: ignore[arg-type]
        except (ValueError, TypeError) as exc:
            raise CellsSidecarError(
                f"{path}: cell {i} [{row['cell']}]: not a serialized Roaring bitmap"
            ) from exc
        cells.append(CellMembership(str(row["output_id"]), str(row["cell"]), kind, members))
    ids = {c.output_id for c in cells}
    if len(ids) > 1:
        raise CellsSidecarError(f"{path}: one sidecar describes one output; found {sorted(ids)}")
    return cells


def write_cells(path: Path, cells: Sequence[CellMembership]) -> Path:
    """Write ``cells`` as a sidecar (Parquet or JSON by ``path``'s suffix); return ``path``."""
    if path.name.endswith(".cells.json"):
        payload = {"cells": [
            {"output_id": c.output_id, "cell": c.cell, "unit_kind": c.unit_kind,
             "members": base64.b64encode(c.members.serialize()).decode("ascii")}
            for c in cells
        ]}
        path.write_text(json.dumps(payload, ensure_ascii=False), encoding="utf-8")
        return path
    if not path.name.endswith(".cells.parquet"):
        raise CellsSidecarError(f"{path}: a sidecar ends in {' or '.join(SIDECAR_SUFFIXES)}")
    pl.DataFrame({
        "output_id": [c.output_id for c in cells],
        "cell": [c.cell for c in cells],
        "unit_kind": [c.unit_kind for c in cells],
        "members": [c.members.serialize() for c in cells],
    }, schema={"output_id": pl.String, "cell": pl.String, "unit_kind": pl.String,
               "members": pl.Binary}).write_parquet(path)
    return path
