"""Rule registry: every rule is ``rule(item: RuleInput) -> list[Finding]``.

Rules read only evidence (never files). Which rules run for which kind of output is data:
``rules_by_kind`` in ``policies/disclosure.yaml``.
"""

from __future__ import annotations

from collections.abc import Callable

from disclosure_review.rules._base import RuleInput
from disclosure_review.rules.figures import figure_review
from disclosure_review.rules.magnitude import dominance, extremes, magnitude_counts
from disclosure_review.rules.percent import percent_numerators
from disclosure_review.rules.regression import per_record_outputs, residual_df
from disclosure_review.rules.rowlevel import row_level
from disclosure_review.rules.smuggling import (
    embedded_literals,
    identifiers_in_table,
    identifiers_in_text,
)
from disclosure_review.rules.suppression import masked_cells, suppression_recovery
from disclosure_review.rules.threshold import count_threshold, unknown_table

Rule = Callable[[RuleInput], list]

REGISTRY: dict[str, Rule] = {
    "count_threshold": count_threshold,
    "unknown_table": unknown_table,
    "magnitude_counts": magnitude_counts,
    "extremes": extremes,
    "dominance": dominance,
    "percent_numerators": percent_numerators,
    "masked_cells": masked_cells,
    "suppression_recovery": suppression_recovery,
    "residual_df": residual_df,
    "per_record_outputs": per_record_outputs,
    "row_level": row_level,
    "identifiers_in_table": identifiers_in_table,
    "identifiers_in_text": identifiers_in_text,
    "embedded_literals": embedded_literals,
    "figure_review": figure_review,
}

__all__ = ["REGISTRY", "Rule", "RuleInput"]
