"""What every rule receives, and small helpers shared by the rule modules."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from disclosure_review.context import ProjectContext
from disclosure_review.evidence import Evidence
from disclosure_review.infer import NumericColumn, numeric_column
from disclosure_review.model import Finding, Verdict
from disclosure_review.policy import DisclosurePolicy


@dataclass
class RuleInput:
    """One evidence item with its policy and (optional) project context."""

    evidence: Evidence
    policy: DisclosurePolicy
    project: ProjectContext | None = None

    def finding(self, rule: str, severity: Verdict, location: str, detail: str) -> Finding:
        """A finding on this evidence's file; ``location`` is prefixed with the part."""
        return Finding(rule, severity, self.evidence.file, self.evidence.where(location), detail)

    def cell_finding(self, rule: str, severity: Verdict, row: int, column: str,
                     detail: str) -> Finding:
        """A finding on one table cell, located by its row labels and column."""
        return Finding(rule, severity, self.evidence.file, self.evidence.cell(row, column),
                       detail)

    def numbers(self, column: str) -> NumericColumn:
        """``column`` of the table parsed as numbers (masked cells are NaN)."""
        cache = self.__dict__.setdefault("_numbers", {})
        if column not in cache:
            cache[column] = numeric_column(self.evidence.table, column)
        return cache[column]

    def threshold_for(self, column: str) -> int:
        """The count threshold for ``column`` (institution counts have their own)."""
        spec = self.evidence.spec
        if spec is not None and column in spec.institution_counts:
            return self.policy.institution_threshold
        return self.policy.threshold


def fmt(x: float) -> str:
    """A number without a useless ``.0``."""
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def whole(values: np.ndarray) -> np.ndarray:
    """Mask of entries that are whole numbers."""
    return np.isclose(values, np.round(values), rtol=0, atol=1e-9)
