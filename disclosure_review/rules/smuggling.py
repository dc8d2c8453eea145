"""Rule 7: identifiers and smuggling in tables, text, code and notebook outputs."""

from __future__ import annotations

import bisect
import re

import polars as pl

from disclosure_review.identifiers import scan_text
from disclosure_review.model import Finding, Verdict
from disclosure_review.rules._base import RuleInput


def _redact(text: str) -> str:
    # Findings are stored and shown; never repeat the identifier itself.
    text = text.strip()
    return f"{text[:2]}…({len(text)} chars)" if len(text) > 3 else "…"


def _line_starts(text: str) -> list[int]:
    starts = [0]
    starts.extend(m.end() for m in re.finditer("\n", text))
    return starts


def _scan(item: RuleInput, text: str) -> list[tuple[int, str, Verdict, str]]:
    """(offset, entity, severity, matched) for every identifier and project pseudonym."""
    policy = item.policy
    found: list[tuple[int, str, Verdict, str]] = []
    for hit in scan_text(text, min_score=policy.identifier_min_score):
        severity = (Verdict.FAIL if hit.entity in policy.identifier_fail_entities
                    else Verdict.REVIEW)
        found.append((hit.start, hit.entity, severity, hit.text))
    project = item.project
    if project is not None:
        for m in project.pseudonym_pattern.finditer(text):
            if project.is_pseudonym(m.group(0)):
                found.append((m.start(), "PROJECT_PSEUDONYM", Verdict.FAIL, m.group(0)))
    return found


def _detail(entity: str, matched: str, project: str | None) -> str:
    if entity == "PROJECT_PSEUDONYM":
        return (f"a stage-2 pseudonym of project {project} ({_redact(matched)}) appears in the "
                "output: person-level identifiers may not leave")
    return (f"looks like {entity} ({_redact(matched)}); identifiers may not leave the enclave "
            "(if this is a false alarm, a reviewer can clear it)")


def identifiers_in_text(item: RuleInput) -> list[Finding]:
    """Scan text, code and notebook outputs for identifiers and project pseudonyms."""
    text = item.evidence.text or ""
    starts = _line_starts(text)
    project_id = item.project.project_id if item.project else None
    return [
        item.finding("identifiers", severity, f"line {bisect.bisect_right(starts, off)}",
                     _detail(entity, matched, project_id))
        for off, entity, severity, matched in _scan(item, text)
    ]


def identifiers_in_table(item: RuleInput) -> list[Finding]:
    """Scan header and distinct text values of a table (``column: value`` lines for context)."""
    ev = item.evidence
    frame = ev.table
    lines: list[tuple[str, str | None]] = [(" ".join(frame.columns), None)]
    budget = item.policy.identifier_scan_max_values
    for column in frame.columns:
        if frame[column].dtype != pl.String or budget <= 0:
            continue
        values = frame[column].drop_nulls().unique(maintain_order=True).head(budget)
        budget -= values.len()
        lines.extend((f"{column}: {v}", column) for v in values.to_list() if v.strip())
    text = "\n".join(line for line, _ in lines)
    starts = _line_starts(text)
    project_id = item.project.project_id if item.project else None
    out: list[Finding] = []
    seen: set[tuple[int, str]] = set()
    for off, entity, severity, matched in _scan(item, text):
        line_no = bisect.bisect_right(starts, off) - 1
        if (line_no, entity) in seen:
            continue
        seen.add((line_no, entity))
        line, column = lines[line_no]
        if column is None:
            location = "column headers"
        else:
            value = line[len(column) + 2:]
            row = frame.with_row_index("__r").filter(pl.col(column) == value)["__r"][0]
            location = f"{ev.row_labels()[int(row)]} column '{column}'"
        out.append(item.finding("identifiers", severity, location,
                                _detail(entity, matched, project_id)))
    return out


def embedded_literals(item: RuleInput) -> list[Finding]:
    """Large literals and encoded blobs in code and notebooks go to review.

    Long lines (code only), base64/hex runs and long comma-separated number lists can carry
    row-level data out of the enclave hidden in code or printed output.
    """
    ev = item.evidence
    policy = item.policy
    text = ev.text or ""
    out: list[Finding] = []
    blob = re.compile(rf"[A-Za-z0-9+/_-]{{{policy.encoded_blob_chars},}}={{0,2}}")
    numbers = re.compile(rf"(?:[-+]?\d+(?:\.\d+)?\s*,\s*){{{policy.large_literal_items},}}")
    for no, line in enumerate(text.splitlines(), start=1):
        if m := blob.search(line):
            out.append(item.finding(
                "embedded_literals", Verdict.REVIEW, f"line {no}",
                f"encoded blob of {len(m.group(0))} characters (base64/hex-like): data may be "
                "smuggled in it; a reviewer must decode and judge it",
            ))
        elif numbers.search(line):
            out.append(item.finding(
                "embedded_literals", Verdict.REVIEW, f"line {no}",
                f"a literal list of more than {policy.large_literal_items} numbers: possible "
                "row-level data; a reviewer must judge it",
            ))
        elif ev.kind == "code" and len(line) > policy.large_literal_chars:
            out.append(item.finding(
                "embedded_literals", Verdict.REVIEW, f"line {no}",
                f"a {len(line)}-character line (limit {policy.large_literal_chars}): large "
                "embedded literal; a reviewer must judge it",
            ))
    return out
