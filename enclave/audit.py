"""The tamper-evident audit log: an append-only, hash-chained table plus a signed anchor.

Every state-changing operation calls :func:`record` inside the same transaction as its change,
so the change and its audit entry commit together or not at all. Each entry's hash covers its
fields and the previous entry's hash; the head row is locked while appending, so concurrent
writers form one chain. After each commit the head (sequence number and hash) is written to
``audit/anchor.json`` signed with the deployment's Ed25519 audit key, which makes truncating
the tail or rewriting the whole chain detectable too.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from sqlalchemy import event, select
from sqlalchemy.orm import Session

from enclave import clock
from enclave.config import Settings
from enclave.keys import KeyStore
from enclave.state.db import session_scope, write_lock
from enclave.state.models import AuditEntry, AuditHead

GENESIS = "0" * 64
ANCHOR_FILE = "anchor.json"


class Outcome(StrEnum):
    OK = "ok"
    DENIED = "denied"
    FAILED = "failed"


def _canonical(entry: dict[str, Any]) -> bytes:
    return json.dumps(entry, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode()


def entry_hash(fields: dict[str, Any]) -> str:
    """SHA-256 over the canonical JSON of an entry's fields (including ``prev_hash``)."""
    return hashlib.sha256(_canonical(fields)).hexdigest()


def _fields(row: AuditEntry) -> dict[str, Any]:
    return {
        "seq": row.seq,
        "ts": row.ts,
        "actor": row.actor,
        "role": row.role,
        "action": row.action,
        "object": row.object,
        "project": row.project,
        "reason": row.reason,
        "outcome": row.outcome,
        "details": row.details,
        "prev_hash": row.prev_hash,
    }


def record(
    session: Session,
    settings: Settings,
    *,
    actor: str,
    role: str,
    action: str,
    obj: str = "",
    project: str | None = None,
    reason: str | None = None,
    outcome: Outcome | str = Outcome.OK,
    details: dict[str, Any] | None = None,
    at: datetime | None = None,
) -> AuditEntry:
    """Append one entry to the chain within the caller's transaction.

    Parameters
    ----------
    actor, role
        Who acted and in which role (``system`` for automatic jobs).
    action
        Dotted verb, e.g. ``user.add``, ``ingest.batch``, ``project.approve``.
    obj
        What was acted on (user name, batch id, file path ...).
    project
        Project id when the action concerns one.
    reason
        The stated reason (mandatory for sensitive look-ups; enforced by callers).
    outcome
        ``ok``, ``denied`` or ``failed``.
    details
        Extra JSON-serialisable facts (counts, checksums). Never key material or raw IDs.
    """
    head = write_lock(session, AuditHead)
    if head is None:
        raise RuntimeError("audit_head row missing: the schema was not migrated")
    moment = (at or clock.now()).astimezone(clock.LOCAL_ZONE)
    fields = {
        "seq": head.seq + 1,
        "ts": moment.isoformat(timespec="microseconds"),
        "actor": actor,
        "role": str(role),
        "action": action,
        "object": obj,
        "project": project,
        "reason": reason,
        "outcome": str(outcome),
        "details": json.dumps(details or {}, ensure_ascii=False, sort_keys=True, default=str),
        "prev_hash": head.entry_hash,
    }
    digest = entry_hash(fields)
    row = AuditEntry(**fields, entry_hash=digest)
    session.add(row)
    head.seq = row.seq
    head.entry_hash = digest
    session.flush()
    _anchor_after_commit(session, settings, row.seq, digest)
    return row


def _anchor_after_commit(session: Session, settings: Settings, seq: int, digest: str) -> None:
    pending = session.info.setdefault("audit_anchor", {})
    pending["latest"] = (seq, digest)
    if pending.get("hooked"):
        return
    pending["hooked"] = True

    def _after_commit(sess: Session) -> None:
        latest = sess.info.get("audit_anchor", {}).pop("latest", None)
        sess.info.get("audit_anchor", {}).pop("hooked", None)
        if latest:
            write_anchor(settings, *latest)

    def _after_rollback(sess: Session, _previous: object) -> None:
        sess.info.pop("audit_anchor", None)

    event.listen(session, "after_commit", _after_commit, once=True)
    event.listen(session, "after_soft_rollback", _after_rollback, once=True)


def _anchor_payload(seq: int, digest: str) -> bytes:
    return f"enclave-audit-anchor:{seq}:{digest}".encode()


def write_anchor(settings: Settings, seq: int, digest: str) -> None:
    """Advance the signed anchor to (seq, digest) unless it already points further."""
    settings.audit_dir.mkdir(parents=True, exist_ok=True)
    path = settings.audit_dir / ANCHOR_FILE
    lock_path = settings.audit_dir / ".anchor.lock"
    with open(lock_path, "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if path.is_file():
            current = json.loads(path.read_text())
            if int(current.get("seq", 0)) >= seq:
                return
        signer = KeyStore.for_home(settings.keys_dir).audit_signing_key()
        body = {
            "seq": seq,
            "hash": digest,
            "signature": signer.sign(_anchor_payload(seq, digest)).hex(),
        }
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(body))
        os.replace(tmp, path)


@dataclass(frozen=True)
class VerifyResult:
    """Outcome of :func:`verify`: ``ok`` and, if not, the first bad entry and why."""

    ok: bool
    entries: int
    first_bad_seq: int | None = None
    problem: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "entries": self.entries,
            "first_bad_seq": self.first_bad_seq,
            "problem": self.problem,
        }


def verify_rows(rows: Iterable[AuditEntry]) -> VerifyResult:
    """Check a chain read in ``seq`` order; name the first entry that breaks it.

    Edited entries fail their own hash; deleted entries leave a gap in ``seq`` and a broken
    link; inserted or reordered entries break the link from their successor.
    """
    previous_hash = GENESIS
    expected_seq = 1
    count = 0
    for row in rows:
        count += 1
        if row.seq != expected_seq:
            return VerifyResult(
                False,
                count,
                row.seq,
                f"entry {row.seq}: expected sequence number {expected_seq} "
                f"(an entry was deleted, inserted or reordered)",
            )
        if row.prev_hash != previous_hash:
            return VerifyResult(
                False,
                count,
                row.seq,
                f"entry {row.seq}: previous-hash link broken "
                f"(an entry before it was deleted, inserted, reordered or edited)",
            )
        if entry_hash(_fields(row)) != row.entry_hash:
            return VerifyResult(
                False,
                count,
                row.seq,
                f"entry {row.seq}: content does not match its hash (the entry was edited)",
            )
        previous_hash = row.entry_hash
        expected_seq += 1
    return VerifyResult(True, count)


def verify(session: Session, settings: Settings) -> VerifyResult:
    """Verify the whole chain, the head row and the signed anchor."""
    rows = session.execute(select(AuditEntry).order_by(AuditEntry.seq)).scalars()
    result = verify_rows(rows)
    if not result.ok:
        return result
    last = session.execute(
        select(AuditEntry).order_by(AuditEntry.seq.desc()).limit(1)
    ).scalar_one_or_none()
    last_seq, last_hash = (last.seq, last.entry_hash) if last else (0, GENESIS)
    head = session.get(AuditHead, 1)
    if head is None or (head.seq, head.entry_hash) != (last_seq, last_hash):
        return VerifyResult(
            False,
            result.entries,
            last_seq + 1 if head and head.seq > last_seq else last_seq,
            "the chain head does not match the last entry (entries were removed from the end "
            "or the head was altered)",
        )
    anchor_path = settings.audit_dir / ANCHOR_FILE
    if last_seq == 0 and not anchor_path.exists():
        return result
    if not anchor_path.is_file():
        return VerifyResult(False, result.entries, 1, "the signed anchor file is missing")
    anchor = json.loads(anchor_path.read_text())
    a_seq, a_hash = int(anchor["seq"]), str(anchor["hash"])
    try:
        KeyStore.for_home(settings.keys_dir).audit_verify_key().verify(
            bytes.fromhex(anchor["signature"]), _anchor_payload(a_seq, a_hash)
        )
    except (InvalidSignature, ValueError):
        return VerifyResult(False, result.entries, a_seq, "the anchor's signature is invalid")
    if a_seq > last_seq:
        return VerifyResult(
            False,
            result.entries,
            last_seq + 1,
            f"entries {last_seq + 1}..{a_seq} were removed from the end of the chain",
        )
    anchored = session.get(AuditEntry, a_seq)
    if anchored is None or anchored.entry_hash != a_hash:
        return VerifyResult(
            False,
            result.entries,
            a_seq,
            f"entry {a_seq}: differs from the signed anchor (the chain was rewritten)",
        )
    return result


@dataclass(frozen=True)
class AuditFilter:
    actor: str | None = None
    action: str | None = None
    project: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    exclude_actor: str | None = None
    limit: int | None = None


def entries(session: Session, flt: AuditFilter = AuditFilter()) -> Sequence[AuditEntry]:
    """Entries matching a filter, oldest first (``limit`` keeps the newest)."""
    stmt = select(AuditEntry)
    if flt.actor:
        stmt = stmt.where(AuditEntry.actor == flt.actor)
    if flt.exclude_actor:
        stmt = stmt.where(AuditEntry.actor != flt.exclude_actor)
    if flt.action:
        like = flt.action.replace("*", "%")
        stmt = stmt.where(AuditEntry.action.like(like))
    if flt.project:
        stmt = stmt.where(AuditEntry.project == flt.project)
    if flt.since:
        stmt = stmt.where(AuditEntry.ts >= flt.since.astimezone(clock.LOCAL_ZONE).isoformat())
    if flt.until:
        stmt = stmt.where(AuditEntry.ts < flt.until.astimezone(clock.LOCAL_ZONE).isoformat())
    stmt = stmt.order_by(AuditEntry.seq.desc())
    if flt.limit:
        stmt = stmt.limit(flt.limit)
    return list(reversed(session.execute(stmt).scalars().all()))


def anchor_path(settings: Settings) -> Path:
    return settings.audit_dir / ANCHOR_FILE


class RefusalRecorder:
    """Audits refusals of a guard that a hostile caller can provoke at will (the workspace
    gateway, the export service), at most ``per_minute`` entries per actor, action and kind of
    refusal: the chain must show every kind of attempt without letting a loop of attempts flood
    it. The number of refusals left out is written in the next entry of that kind.

    Parameters
    ----------
    settings : Settings
        The enclave home (its state store holds the chain).
    per_minute : int
        Entries per actor and action in any minute.
    """

    def __init__(self, settings: Settings, *, per_minute: int = 20) -> None:
        self.settings = settings
        self.per_minute = per_minute
        self._lock = threading.Lock()
        self._windows: dict[tuple[str, str, str], tuple[float, int, int]] = {}

    def record(self, *, actor: str, role: str, action: str, obj: str = "", project: str | None = None,
               details: dict[str, Any] | None = None, kind: str = "") -> bool:
        """Write one DENIED entry unless this minute's budget for (actor, action, kind) is spent.

        Returns whether an entry was written.
        """
        key = (actor, action, kind)
        now = time.monotonic()
        with self._lock:
            start, written, dropped = self._windows.get(key, (now, 0, 0))
            if now - start >= 60:
                start, written = now, 0
            if written >= self.per_minute:
                self._windows[key] = (start, written, dropped + 1)
                return False
            self._windows[key] = (start, written + 1, 0)
        extra = {"refusals_not_recorded_before": dropped} if dropped else {}
        with session_scope(self.settings) as session:
            record(session, self.settings, actor=actor, role=role, action=action, obj=obj, project=project,
                   outcome=Outcome.DENIED, details={**(details or {}), **extra})
        return True
