"""Rule 3: percentages and rates; the implied numerator and its complement must both pass."""

from __future__ import annotations

import re

import numpy as np

from disclosure_review.model import Finding, Verdict
from disclosure_review.rules._base import RuleInput, fmt

_PERCENT_NAME = re.compile(r"(%|pct|percent|百分比)", re.IGNORECASE)


def _as_fraction(item: RuleInput, column: str, values: np.ndarray) -> np.ndarray:
    scale = item.policy.percent_scale
    if scale == "fraction":
        return values
    if scale == "percent" or _PERCENT_NAME.search(column):
        return values / 100.0
    known = values[~np.isnan(values)]
    return values if known.size and np.nanmax(np.abs(known)) <= 1 else values / 100.0


def _check(item: RuleInput, row: int, column: str, numerator: float, complement: float,
           denominator: float, how: str) -> list[Finding]:
    limit = item.policy.threshold
    out: list[Finding] = []
    for name, value in (("numerator", numerator), ("complement", complement)):
        if 1 <= value <= limit:
            out.append(item.cell_finding(
                "percent_numerators", Verdict.FAIL, row, column,
                f"implied {name} is {fmt(value)} of {fmt(denominator)} ({how}); numerator "
                f"and complement must both be more than {limit}",
            ))
        elif value == 0 and item.policy.zero_cells != "allow":
            severity = Verdict.FAIL if item.policy.zero_cells == "fail" else Verdict.REVIEW
            out.append(item.cell_finding(
                "percent_numerators", severity, row, column,
                f"implied {name} is 0 of {fmt(denominator)} ({how}): the whole group "
                f"{'lacks' if name == 'numerator' else 'has'} the attribute; a reviewer must judge",
            ))
    return out


def percent_numerators(item: RuleInput) -> list[Finding]:
    """Check each percent cell's implied numerator ``round(p · d)`` and complement ``d − num``.

    The denominator is the declared/named denominator column. Without one, when the
    percentages add up to 100% over the rows, the count column is each row's numerator and
    the column total the denominator. Otherwise the table goes to review.
    """
    spec = item.evidence.spec
    out: list[Finding] = []
    denominator = spec.denominator
    for column in spec.percent:
        p = _as_fraction(item, column, item.numbers(column).values)
        if denominator is not None:
            d = item.numbers(denominator).values
            num = np.round(p * d)
            ok = ~np.isnan(num) & ~np.isnan(d)
            for i in np.flatnonzero(ok):
                out += _check(item, int(i), column, float(num[i]), float(d[i] - num[i]),
                              float(d[i]), f"{column} × '{denominator}'")
            continue
        counts = [c for c in spec.counts]
        total_share = float(np.nansum(p))
        if counts and abs(total_share - 1.0) < 0.005 * max(1, len(p)) ** 0.5:
            n = item.numbers(counts[0]).values
            total = float(np.nansum(n))
            ok = ~np.isnan(n)
            for i in np.flatnonzero(ok):
                out += _check(item, int(i), column, float(n[i]), total - float(n[i]), total,
                              f"'{counts[0]}' of the column total")
            continue
        out.append(item.finding(
            "percent_numerators", Verdict.REVIEW, f"column '{column}'",
            "cannot find the denominator of this percentage, so its implied numerator cannot "
            "be checked; add the denominator column or declare 'denominator' in a manifest",
        ))
    return out
