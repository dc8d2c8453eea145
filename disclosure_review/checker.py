"""The checker: read every file, attach column roles, run the rules of each kind, report.

This is the one place that chains the stages (readers → evidence → specs → rules → report);
rules never read files and readers never judge.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from disclosure_review.context import ProjectContext
from disclosure_review.evidence import Evidence
from disclosure_review.infer import infer_spec, read_manifest, spec_from_manifest
from disclosure_review.model import CheckReport, Finding
from disclosure_review.policy import DisclosurePolicy, load_policy
from disclosure_review.readers import read_output
from disclosure_review.rules import REGISTRY, RuleInput


def evidence_kind(evidence: Evidence) -> str:
    """The ``rules_by_kind`` key for one evidence item."""
    if evidence.kind == "table":
        return evidence.spec.kind if evidence.spec else "unknown"
    return evidence.kind


def check_evidence(
    items: Sequence[Evidence],
    *,
    policy: DisclosurePolicy,
    project: ProjectContext | None = None,
) -> list[Finding]:
    """Run the policy's rules over evidence whose specs are already set."""
    findings: list[Finding] = []
    for ev in items:
        kind = evidence_kind(ev)
        rule_input = RuleInput(evidence=ev, policy=policy, project=project)
        for name in policy.rules_by_kind[kind]:
            findings.extend(REGISTRY[name](rule_input))
    return findings


def check_paths(
    paths: Sequence[Path],
    *,
    manifest: Path | None = None,
    policy: DisclosurePolicy | None = None,
    project: ProjectContext | None = None,
    progress: Callable[[Path], None] | None = None,
) -> CheckReport:
    """Check output files for disclosure risk.

    Parameters
    ----------
    paths : sequence of Path
        The files of one export request.
    manifest : Path, optional
        JSON/YAML manifest declaring each file's kind and column roles.
    policy : DisclosurePolicy, optional
        Default: :func:`~disclosure_review.policy.load_policy` with no override.
    project : ProjectContext, optional
        Enables the project-pseudonym rule.
    progress : callable, optional
        Called with each path after it is checked (for a progress bar).

    Returns
    -------
    CheckReport
        Findings in file order; the verdict is the worst finding.

    Raises
    ------
    OutputInputError
        A file is unreadable or empty, or the manifest is malformed (exit code 2).
    """
    policy = policy or load_policy()
    entries = read_manifest(manifest) if manifest is not None else {}
    findings: list[Finding] = []
    for path in paths:
        items = read_output(path, label=str(path))
        entry = entries.get(path.resolve())
        for ev in items:
            if ev.kind == "table":
                ev.spec = spec_from_manifest(entry, ev) if entry else infer_spec(ev)
        findings.extend(check_evidence(items, policy=policy, project=project))
        if progress is not None:
            progress(path)
    return CheckReport(findings=tuple(findings), policy=policy.label,
                       files=tuple(str(p) for p in paths))
