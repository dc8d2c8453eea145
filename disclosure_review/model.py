"""Result types of a disclosure check: the verdict order, one finding, the whole report."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any


class Verdict(Enum):
    """Outcome of a check; the order is fail > review > pass (worst wins)."""

    PASS = "pass"
    REVIEW = "review"
    FAIL = "fail"

    @property
    def rank(self) -> int:
        """Severity rank, higher is worse."""
        return _RANK[self]

    @property
    def exit_code(self) -> int:
        """Exit code of ``enclave export check`` for this verdict (0 pass, 1 fail, 3 review)."""
        return _EXIT[self]

    @classmethod
    def worst(cls, verdicts: Iterable[Verdict]) -> Verdict:
        """Return the worst verdict of ``verdicts``; :attr:`PASS` when there are none."""
        return max(verdicts, key=lambda v: v.rank, default=cls.PASS)


_RANK = {Verdict.PASS: 0, Verdict.REVIEW: 1, Verdict.FAIL: 2}
_EXIT = {Verdict.PASS: 0, Verdict.FAIL: 1, Verdict.REVIEW: 3}


@dataclass(frozen=True)
class Finding:
    """One problem found in one place of one output.

    Parameters
    ----------
    rule : str
        Registry name of the rule that produced it (e.g. ``count_threshold``).
    severity : Verdict
        :attr:`Verdict.FAIL` or :attr:`Verdict.REVIEW`; a finding is never a pass.
    file : str
        The output file (as given on the command line) or output id.
    location : str
        Where a person finds it, e.g. ``row[sex=F, age=65+] column 'n'``.
    detail : str
        What is wrong and what to do about it.
    """

    rule: str
    severity: Verdict
    file: str
    location: str
    detail: str

    def __post_init__(self) -> None:
        if self.severity is Verdict.PASS:
            raise ValueError(f"finding of rule {self.rule!r} cannot have severity 'pass'")

    def to_dict(self) -> dict[str, str]:
        """The JSON shape of the command contract."""
        return {
            "rule": self.rule,
            "severity": self.severity.value,
            "file": self.file,
            "location": self.location,
            "detail": self.detail,
        }


@dataclass(frozen=True)
class CheckReport:
    """All findings of one check run and the policy that produced them."""

    findings: tuple[Finding, ...]
    policy: str
    files: tuple[str, ...] = field(default=())

    @property
    def verdict(self) -> Verdict:
        """The worst finding's severity; pass when there are no findings."""
        return Verdict.worst(f.severity for f in self.findings)

    @property
    def exit_code(self) -> int:
        """Exit code for the CLI contract."""
        return self.verdict.exit_code

    def to_dict(self) -> dict[str, Any]:
        """``{"verdict", "policy", "findings": [...]}`` exactly as the contract states."""
        return {
            "verdict": self.verdict.value,
            "policy": self.policy,
            "findings": [f.to_dict() for f in self.findings],
        }
