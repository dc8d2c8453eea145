"""Assertion helpers for the disclosure_review tests (unique module name: no clash)."""

from __future__ import annotations

from disclosure_review.model import CheckReport


def rules_of(report: CheckReport, severity: str | None = None) -> list[tuple[str, str]]:
    """(rule, location) of each finding, optionally only of one severity."""
    return [
        (f.rule, f.location)
        for f in report.findings
        if severity is None or f.severity.value == severity
    ]
