"""Automated disclosure checking of research outputs before export (issue 6).

The package owns the checker (readers → evidence → rules → report), its rules, the
identifier scanner, the linear-programming test for recoverable suppressed cells and the
differencing engine that compares new cells with everything already released for a project.
The review queue and the release step live elsewhere and call into this package.
"""

from disclosure_review.model import CheckReport, Finding, Verdict

__all__ = ["CheckReport", "Finding", "Verdict"]
