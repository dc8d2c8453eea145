"""Rule 1: every count must be more than the threshold; zeros go to review; invalid counts fail."""

from __future__ import annotations

import numpy as np

from disclosure_review.model import Finding, Verdict
from disclosure_review.rules._base import RuleInput, fmt, whole


def count_threshold(item: RuleInput) -> list[Finding]:
    """Each known count cell: ``1..threshold`` fails, ``0`` per ``zero_cells``, negative or
    fractional counts fail as invalid. Masked cells are left to the masked-cell rules."""
    spec = item.evidence.spec
    out: list[Finding] = []
    zero = item.policy.zero_cells
    for column in spec.counts:
        col = item.numbers(column)
        limit = item.threshold_for(column)
        vals = col.values
        known = ~col.masked
        invalid = known & ((vals < 0) | ~whole(np.nan_to_num(vals)))
        small = known & ~invalid & (vals >= 1) & (vals <= limit)
        zeros = known & ~invalid & (vals == 0)
        unit = "institutions" if column in spec.institution_counts else "people"
        for i in np.flatnonzero(invalid):
            out.append(item.cell_finding(
                "count_threshold", Verdict.FAIL, int(i), column,
                f"invalid count {fmt(vals[i])}: counts are whole numbers of 0 or more; "
                "fix the table before export",
            ))
        for i in np.flatnonzero(small):
            out.append(item.cell_finding(
                "count_threshold", Verdict.FAIL, int(i), column,
                f"count {fmt(vals[i])} rests on {limit} or fewer {unit}; every count must be "
                f"more than {limit}: collapse categories or widen groups",
            ))
        if zero != "allow":
            severity = Verdict.FAIL if zero == "fail" else Verdict.REVIEW
            for i in np.flatnonzero(zeros):
                out.append(item.cell_finding(
                    "count_threshold", severity, int(i), column,
                    "zero cell: a reviewer must judge whether it discloses something about a "
                    "whole group (policy zero_cells)",
                ))
    return out


def unknown_table(item: RuleInput) -> list[Finding]:
    """A table whose column roles could not be inferred goes to review."""
    cols = ", ".join(item.evidence.table.columns)
    return [item.finding(
        "unknown_table", Verdict.REVIEW, "whole table",
        f"cannot tell which columns are counts, values or percentages (columns: {cols}); "
        "name them (n, count, 人數, mean_..., pct_...) or declare them in a manifest",
    )]
