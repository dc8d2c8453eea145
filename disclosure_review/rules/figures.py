"""Rule 8: figures always go to a person; release re-encodes them to strip metadata."""

from __future__ import annotations

from disclosure_review.model import Finding, Verdict
from disclosure_review.rules._base import RuleInput


def figure_review(item: RuleInput) -> list[Finding]:
    """Every figure: review (or fail if the policy says ``figures: fail``)."""
    fig = item.evidence.figure
    severity = Verdict.FAIL if item.policy.figures == "fail" else Verdict.REVIEW
    meta = f"; embedded metadata: {', '.join(fig.metadata_keys)}" if fig.metadata_keys else ""
    return [item.finding(
        "figure_review", severity, "whole figure",
        f"{fig.format} figure {fig.width}x{fig.height}: a reviewer must check what it shows "
        f"(small groups, outliers, labels){meta}; it is re-encoded on release",
    )]
