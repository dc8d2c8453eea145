"""Can masked cells be recovered from the published totals? Linear programming.

A table is a set of cells, each identified by its labels on every dimension; a label that is
a total label (``Total``, ``合計``, ...) marks a margin. Every margin equals the sum of the
interior cells that match it on its other dimensions. Masked cells are the unknowns, known
cells move to the right-hand side, and every unknown is a count (``x >= 0``, with the bound a
mask such as ``<6`` states). For each masked cell we solve two linear programs (HiGHS via
:func:`scipy.optimize.linprog`): its minimum and its maximum over all tables consistent with
every published total.

Definition (recoverable). A masked cell with feasible range ``[lo, hi]`` is *recoverable*
when ``hi - lo < min_width`` (default 0.5: the totals fix its integer value), or when
``1 <= lo`` and ``hi <= threshold`` (the totals prove it is a small non-zero count, which is
exactly what suppression was meant to hide). Otherwise the cell is *protected*.

The linear relaxation is exact here: margin constraints of a table form a network matrix
(totally unimodular for two-way tables), so the extreme values are whole numbers; for
higher-way tables the relaxation can only widen the range, so a cell it calls protected may
still be narrowly bounded in integers (stated in the report, reviewed by a person).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linprog
from scipy.sparse import lil_matrix

_LESS_THAN = re.compile(r"^\s*[<≤]\s*=?\s*(\d+)\s*$")
_RANGE = re.compile(r"^\s*(\d+)\s*[-–~]\s*(\d+)\s*$")


def mask_bounds(mark: str | None) -> tuple[float, float]:
    """Bounds a mask reveals: ``<6`` → [0, 5], ``1-5`` → [1, 5], anything else → [0, ∞)."""
    if mark is None:
        return 0.0, math.inf
    if m := _LESS_THAN.match(mark):
        return 0.0, max(float(m.group(1)) - 1, 0.0)
    if m := _RANGE.match(mark):
        return float(m.group(1)), float(m.group(2))
    return 0.0, math.inf


@dataclass(frozen=True)
class CellRange:
    """Feasible range of one masked cell and whether it is recoverable."""

    index: int
    low: float
    high: float
    recoverable: bool
    reason: str


class InconsistentTotals(ValueError):
    """The published cells and totals admit no non-negative table."""


def margin_constraints(
    labels: Sequence[tuple[str, ...]], is_total: Sequence[tuple[bool, ...]]
) -> list[tuple[int, list[int]]]:
    """For each margin cell, the interior cells it sums.

    Parameters
    ----------
    labels : sequence of tuples
        Each cell's label on every dimension.
    is_total : sequence of tuples of bool
        Whether each label is a total label.

    Returns
    -------
    list of (margin index, child indexes)
        Only margins with at least one child.
    """
    by_labels: dict[tuple[str, ...], int] = {}
    for i, lab in enumerate(labels):
        by_labels[lab] = i
    constraints: list[tuple[int, list[int]]] = []
    # Index interior cells (no total label on any dimension the margin sums over) by the
    # labels on the margin's fixed dimensions.
    ndim = len(labels[0]) if labels else 0
    for m, (lab, tot) in enumerate(zip(labels, is_total, strict=True)):
        summed = [d for d in range(ndim) if tot[d]]
        if not summed:
            continue
        fixed = [d for d in range(ndim) if not tot[d]]
        children = [
            i
            for i, (clab, ctot) in enumerate(zip(labels, is_total, strict=True))
            if i != m
            and all(clab[d] == lab[d] and ctot[d] == tot[d] for d in fixed)
            and not any(ctot[d] for d in summed)
        ]
        if children:
            constraints.append((m, children))
    return constraints


def feasible_ranges(
    values: np.ndarray,
    masked: np.ndarray,
    constraints: Sequence[tuple[int, list[int]]],
    *,
    bounds: Sequence[tuple[float, float]] | None = None,
    threshold: int = 5,
    min_width: float = 0.5,
) -> list[CellRange]:
    """Minimum and maximum of every masked cell given all published totals.

    Parameters
    ----------
    values : np.ndarray
        Cell values; ignored where ``masked``.
    masked : np.ndarray of bool
        Which cells are masked (unknown).
    constraints : sequence of (margin, children)
        From :func:`margin_constraints`: ``value[margin] = sum(value[children])``.
    bounds : sequence of (low, high), optional
        Per masked cell (in cell order), e.g. from :func:`mask_bounds`; default [0, ∞).
    threshold : int
        Counts ``1..threshold`` are the small-count band.
    min_width : float
        Ranges narrower than this count as exactly determined.

    Returns
    -------
    list[CellRange]
        One per masked cell, in cell order.

    Raises
    ------
    InconsistentTotals
        No non-negative table matches the published numbers.
    """
    unknown = np.flatnonzero(masked)
    if unknown.size == 0:
        return []
    pos = {int(c): k for k, c in enumerate(unknown)}
    rows = [(m, ch) for m, ch in constraints if m in pos or any(c in pos for c in ch)]
    a_eq = lil_matrix((len(rows), unknown.size))
    b_eq = np.zeros(len(rows))
    for r, (m, children) in enumerate(rows):
        # margin - sum(children) = 0, with known values moved to the right-hand side.
        rhs = 0.0
        for cell, sign in [(m, 1.0)] + [(c, -1.0) for c in children]:
            if cell in pos:
                a_eq[r, pos[cell]] += sign
            else:
                rhs -= sign * float(values[cell])
        b_eq[r] = rhs
    var_bounds = list(bounds) if bounds is not None else [(0.0, math.inf)] * unknown.size
    var_bounds = [(lo, None if math.isinf(hi) else hi) for lo, hi in var_bounds]
    a = a_eq.tocsr() if rows else None
    b = b_eq if rows else None
    out: list[CellRange] = []
    for k, cell in enumerate(unknown):
        c = np.zeros(unknown.size)
        c[k] = 1.0
        lo_res = linprog(c, A_eq=a, b_eq=b, bounds=var_bounds, method="highs")
        if lo_res.status == 2:
            raise InconsistentTotals("the published totals do not add up to any table")
        hi_res = linprog(-c, A_eq=a, b_eq=b, bounds=var_bounds, method="highs")
        low = float(lo_res.fun) if lo_res.status == 0 else 0.0
        high = math.inf if hi_res.status == 3 else float(-hi_res.fun)
        if high - low < min_width:
            recoverable, reason = True, f"the totals fix it at {round(low)}"
        elif low >= 1 - 1e-9 and high <= threshold + 1e-9:
            recoverable, reason = True, (
                f"the totals confine it to {_fmt(low)}..{_fmt(high)}, a small non-zero count"
            )
        else:
            recoverable, reason = False, f"feasible range {_fmt(low)}..{_fmt(high)}"
        out.append(CellRange(int(cell), low, high, recoverable, reason))
    return out


def _fmt(x: float) -> str:
    if math.isinf(x):
        return "∞"
    return str(round(x)) if abs(x - round(x)) < 1e-6 else f"{x:.2f}"
