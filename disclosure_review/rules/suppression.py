"""Rule 4: masked cells; refused by default, and always refused when totals recover them."""

from __future__ import annotations

import numpy as np

from disclosure_review.model import Finding, Verdict
from disclosure_review.rules._base import RuleInput
from disclosure_review.suppression import (
    InconsistentTotals,
    feasible_ranges,
    margin_constraints,
    mask_bounds,
)


def masked_cells(item: RuleInput) -> list[Finding]:
    """A masked count cell (blank, ``*``, ``<6``, ``x``...) per policy ``suppression_marks``."""
    action = item.policy.suppression_marks
    if action == "allow":
        return []
    severity = Verdict.FAIL if action == "fail" else Verdict.REVIEW
    out: list[Finding] = []
    for column in item.evidence.spec.counts:
        col = item.numbers(column)
        for i in np.flatnonzero(col.masked):
            mark = col.raw[i] if col.raw[i] not in (None, "") else "blank"
            out.append(item.cell_finding(
                "masked_cells", severity, int(i), column,
                f"masked cell ({mark!s}): tables marked with symbols are not released; "
                "collapse categories or widen groups until every cell is more than "
                f"{item.policy.threshold} (policy suppression_marks={action})",
            ))
    return out


def suppression_recovery(item: RuleInput) -> list[Finding]:
    """Fail every masked count cell whose value the published totals recover.

    Cells are labelled by the dimension columns and, when the table has several count
    columns, by the column name too; total labels mark margins. See
    :mod:`disclosure_review.suppression` for the definition of recoverable.
    """
    ev = item.evidence
    spec = ev.spec
    policy = item.policy
    columns = list(spec.counts)
    if not columns:
        return []
    cols = [item.numbers(c) for c in columns]
    if not any(c.masked.any() for c in cols):
        return []
    frame = ev.table
    dims = list(spec.dimensions)
    row_labels = [tuple(str(v) for v in row) for row in frame.select(dims).iter_rows()] \
        if dims else [(f"#{i}",) for i in range(frame.height)]
    labels: list[tuple[str, ...]] = []
    totals: list[tuple[bool, ...]] = []
    values: list[float] = []
    masked: list[bool] = []
    bounds: list[tuple[float, float]] = []
    where: list[tuple[int, str]] = []
    for column, col in zip(columns, cols, strict=True):
        col_total = policy.is_total_label(column)
        for r, lab in enumerate(row_labels):
            labels.append((*lab, column) if len(columns) > 1 else lab)
            row_tot = tuple(policy.is_total_label(v) for v in lab) if dims else (False,)
            totals.append((*row_tot, col_total) if len(columns) > 1 else row_tot)
            values.append(float(col.values[r]))
            masked.append(bool(col.masked[r]))
            if col.masked[r]:
                bounds.append(mask_bounds(col.raw[r]))
            where.append((r, column))
    mask_arr = np.array(masked)
    if mask_arr.sum() > policy.suppression_max_masked_cells:
        return [item.finding(
            "suppression_recovery", Verdict.REVIEW, "whole table",
            f"{int(mask_arr.sum())} masked cells exceed suppression_max_masked_cells; "
            "recoverability was not computed",
        )]
    constraints = margin_constraints(labels, totals)
    try:
        ranges = feasible_ranges(
            np.array(values), mask_arr, constraints, bounds=bounds,
            threshold=policy.threshold, min_width=policy.suppression_min_width,
        )
    except InconsistentTotals:
        return [item.finding(
            "suppression_recovery", Verdict.REVIEW, "whole table",
            "the published cells and totals do not add up; recoverability of the masked "
            "cells cannot be decided",
        )]
    out: list[Finding] = []
    for rng in ranges:
        if rng.recoverable:
            r, column = where[rng.index]
            out.append(item.cell_finding(
                "suppression_recovery", Verdict.FAIL, r, column,
                f"masked cell can be recovered from the published totals: {rng.reason}; "
                "suppress more cells (secondary suppression) or, better, collapse categories",
            ))
    return out
