"""Rule 2: magnitude tables (sums, means, medians, extremes) and dominance."""

from __future__ import annotations

import re

import numpy as np

from disclosure_review.model import Finding, Verdict
from disclosure_review.rules._base import RuleInput, fmt

_TOTAL = re.compile(r"(sum|total|總和|合計|總計|總額)", re.IGNORECASE)
_MEAN = re.compile(r"(mean|avg|average|平均)", re.IGNORECASE)


def _group_counts(item: RuleInput) -> tuple[str, np.ndarray, np.ndarray] | None:
    spec = item.evidence.spec
    people = [c for c in spec.counts if c not in spec.institution_counts] or list(spec.counts)
    if not people:
        return None
    col = item.numbers(people[0])
    return people[0], col.values, col.masked


def magnitude_counts(item: RuleInput) -> list[Finding]:
    """Each value cell must rest on a count above the threshold (review if no count is given)."""
    spec = item.evidence.spec
    groups = _group_counts(item)
    if groups is None:
        return [item.finding(
            "magnitude_counts", Verdict.REVIEW, f"columns {', '.join(spec.values)}",
            "the table gives values but no count of the units behind each; add a count "
            "column (n, 人數) so the threshold can be checked",
        )]
    count_col, counts, masked = groups
    limit = item.policy.threshold
    out: list[Finding] = []
    for column in spec.values:
        vals = item.numbers(column)
        small = ~masked & ~vals.masked & (counts >= 1) & (counts <= limit)
        for i in np.flatnonzero(small):
            out.append(item.cell_finding(
                "magnitude_counts", Verdict.FAIL, int(i), column,
                f"value rests on {fmt(counts[i])} units (column '{count_col}'); a statistic "
                f"must rest on more than {limit}",
            ))
    return out


def extremes(item: RuleInput) -> list[Finding]:
    """Minimum and maximum are one unit's value: fail over small groups, else review."""
    spec = item.evidence.spec
    out: list[Finding] = []
    groups = _group_counts(item)
    small_group = item.policy.extremes_small_group
    for column in spec.extremes:
        vals = item.numbers(column)
        if groups is None:
            out.append(item.finding(
                "extremes", Verdict.REVIEW, f"column '{column}'",
                "minimum/maximum are individual values and the group sizes are not given",
            ))
            continue
        _, counts, masked = groups
        small = ~masked & ~vals.masked & (counts <= small_group)
        for i in np.flatnonzero(small):
            out.append(item.cell_finding(
                "extremes", Verdict.FAIL, int(i), column,
                f"a minimum/maximum is one person's value, here over a group of "
                f"{fmt(counts[i])} (<= {small_group}, policy extremes_small_group); drop it or "
                "report a percentile",
            ))
        if not small.any():
            out.append(item.finding(
                "extremes", Verdict.REVIEW, f"column '{column}'",
                "minimum/maximum are individual values; a reviewer must judge them",
            ))
    return out


def _total_column(item: RuleInput) -> tuple[str, np.ndarray] | None:
    spec = item.evidence.spec
    for column in spec.values:
        if _TOTAL.search(column) and column not in spec.extremes:
            return column, item.numbers(column).values
    groups = _group_counts(item)
    for column in spec.values:
        if _MEAN.search(column) and groups is not None:
            # total = mean × count recovers the cell total the contributions add up to.
            return f"{column} × {groups[0]}", item.numbers(column).values * groups[1]
    return None


def dominance(item: RuleInput) -> list[Finding]:
    """p% rule and n,k rule, where the largest contributions are given (top1, top2, ...).

    p%: dominated when ``total - x1 - x2 < p/100 · x1`` (the second largest contributor
    could estimate the largest within p%). n,k: dominated when the n largest exceed k% of
    the total.
    """
    spec = item.evidence.spec
    if not spec.contributions:
        return []
    total = _total_column(item)
    if total is None:
        return [item.finding(
            "dominance", Verdict.REVIEW, f"columns {', '.join(spec.contributions)}",
            "largest contributions are given but no cell total (sum, or mean with a count)",
        )]
    total_name, totals = total
    tops = [item.numbers(c).values for c in spec.contributions]
    policy = item.policy
    out: list[Finding] = []
    known = ~np.isnan(totals)
    for t in tops:
        known &= ~np.isnan(t)
    negative = known & np.any([t < 0 for t in tops], axis=0)
    for i in np.flatnonzero(negative):
        out.append(item.cell_finding(
            "dominance", Verdict.REVIEW, int(i), total_name,
            "dominance is not defined with negative contributions; a reviewer must judge",
        ))
    ok = known & ~negative
    x1 = tops[0]
    flagged = np.zeros(len(totals), dtype=bool)
    if len(tops) >= 2:
        rest = totals - tops[0] - tops[1]
        p_fail = ok & (rest < policy.p_percent / 100.0 * x1)
        for i in np.flatnonzero(p_fail):
            flagged[i] = True
            out.append(item.cell_finding(
                "dominance", Verdict.FAIL, int(i), total_name,
                f"p% rule: total {fmt(totals[i])} minus the two largest contributions leaves "
                f"{fmt(rest[i])}, less than {fmt(policy.p_percent)}% of the largest "
                f"({fmt(x1[i])}); the second largest contributor could estimate the largest",
            ))
    if len(tops) >= policy.nk_n:
        top_n = np.sum(tops[: policy.nk_n], axis=0)
        with np.errstate(divide="ignore", invalid="ignore"):
            share = np.where(totals > 0, top_n / totals, 0.0)
        nk_fail = ok & ~flagged & (share > policy.nk_k / 100.0)
        for i in np.flatnonzero(nk_fail):
            out.append(item.cell_finding(
                "dominance", Verdict.FAIL, int(i), total_name,
                f"n,k rule: the {policy.nk_n} largest contributions are "
                f"{share[i] * 100:.1f}% of the total (limit {fmt(policy.nk_k)}%)",
            ))
    return out
