"""Rule 5: model outputs need enough residual degrees of freedom; no per-record outputs."""

from __future__ import annotations

import re

import numpy as np

from disclosure_review.model import Finding, Verdict
from disclosure_review.rules._base import RuleInput, fmt

_DF_ROW = re.compile(r"^(df|residual df|df residuals?|df_resid|resid(ual)? df|自由度|殘差自由度)$",
                     re.IGNORECASE)


def _residual_df(item: RuleInput) -> tuple[float, str] | None:
    ev = item.evidence
    declared = ev.spec.residual_df
    if isinstance(declared, int | float):
        return float(declared), "declared in the manifest"
    if isinstance(declared, str) and declared in ev.table.columns:
        vals = item.numbers(declared).values
        vals = vals[~np.isnan(vals)]
        if vals.size:
            return float(vals.min()), f"column '{declared}'"
    # A statsmodels/R summary exported as a table often has a 'Df Residuals' row.
    frame = ev.table
    for label_col in frame.columns[:1]:
        for r, label in enumerate(frame[label_col].cast(str).to_list()):
            if label and _DF_ROW.match(label.strip()):
                for other in frame.columns[1:]:
                    v = item.numbers(other).values[r]
                    if not np.isnan(v):
                        return float(v), f"row '{label}'"
    return None


def residual_df(item: RuleInput) -> list[Finding]:
    """Residual degrees of freedom must be more than ``min_residual_df``; unknown → review."""
    limit = item.policy.min_residual_df
    found = _residual_df(item)
    if found is None:
        return [item.finding(
            "residual_df", Verdict.REVIEW, "whole table",
            "model output without residual degrees of freedom; add a 'df_resid' column or "
            "declare residual_df in the manifest",
        )]
    value, source = found
    if value <= limit:
        return [item.finding(
            "residual_df", Verdict.FAIL, source,
            f"residual degrees of freedom {fmt(value)} must be more than {limit}: the model "
            "nearly reproduces individual records",
        )]
    return []


def per_record_outputs(item: RuleInput) -> list[Finding]:
    """Residuals, fitted values, predictions or scores per record fail."""
    return [
        item.finding(
            "per_record_outputs", Verdict.FAIL, f"column '{column}'",
            "per-record residuals/predictions are row-level data and may not leave; export "
            "model summaries only",
        )
        for column in item.evidence.spec.per_record
    ]
