"""Workspace usage: half-day slots in which servers ran, overnight runs, and their billing.

Owns the hub's usage store (``<home>/hub/usage.db``, SQLite, written by the hub as root): which
(project, day, slot) had a server and how many at once, registered overnight runs, and which
days are settled. The first use of a slot counts one approved half day at once
(:func:`enclave.projects.service.record_day_use`, so the days quota is always current); a day
is billed when it closes: one slot a ``half_day``, both slots a ``full_day``, each extra
concurrent computer per slot an ``extra_computer``; each registered overnight run an
``overnight_run`` (a no-show counts as used).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

from enclave import audit, clock
from enclave.billing import ledger
from enclave.config import Settings
from enclave.errors import InputError, PermissionDenied
from enclave.hub.policy import MORE_DAYS_HINT, OpeningHours, SpawnRefused, opening_hours
from enclave.projects import service
from enclave.roles import Role
from enclave.state.db import session_scope
from enclave.users import require

SYSTEM = "system"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS slot_use (
  project TEXT NOT NULL, day TEXT NOT NULL, slot TEXT NOT NULL,
  max_servers INTEGER NOT NULL, first_seen TEXT NOT NULL,
  PRIMARY KEY (project, day, slot));
CREATE TABLE IF NOT EXISTS day_settled (
  project TEXT NOT NULL, day TEXT NOT NULL, settled_at TEXT NOT NULL,
  PRIMARY KEY (project, day));
CREATE TABLE IF NOT EXISTS overnight_runs (
  id INTEGER PRIMARY KEY AUTOINCREMENT, project TEXT NOT NULL, night TEXT NOT NULL,
  username TEXT NOT NULL, registered_by TEXT NOT NULL, registered_at TEXT NOT NULL,
  billed_at TEXT, UNIQUE (project, night, username));
"""


def hub_dir(settings: Settings) -> Path:
    """``<home>/hub``: hub state (0700, root only)."""
    path = settings.home / "hub"
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


@contextmanager
def _db(settings: Settings) -> Iterator[sqlite3.Connection]:
    conn = sqlite3.connect(hub_dir(settings) / "usage.db", timeout=30)
    try:
        conn.executescript(_SCHEMA)
        with conn:
            yield conn
    finally:
        conn.close()


def slot_counted(settings: Settings, *, project: str, day: date, slot: str) -> bool:
    """True when ``slot`` of ``day`` has already been counted for ``project``."""
    with _db(settings) as conn:
        row = conn.execute(
            "SELECT 1 FROM slot_use WHERE project=? AND day=? AND slot=?", (project, day.isoformat(), slot)
        ).fetchone()
    return row is not None


def mark_slot(settings: Settings, *, project: str, day: date, slot: str, servers: int) -> bool:
    """Record that ``servers`` servers of ``project`` ran in ``slot`` of ``day``.

    The first mark of a slot counts one half day against the approved days (and the first
    day of use, if none yet). Returns True when the slot was new.

    Raises
    ------
    SpawnRefused
        The project has no approved half day left (reason ``days_used_up``).
    """
    with _db(settings) as conn:
        row = conn.execute(
            "SELECT max_servers FROM slot_use WHERE project=? AND day=? AND slot=?", (project, day.isoformat(), slot)
        ).fetchone()
        if row is not None:
            if servers > row[0]:
                conn.execute(
                    "UPDATE slot_use SET max_servers=? WHERE project=? AND day=? AND slot=?",
                    (servers, project, day.isoformat(), slot),
                )
            return False
        try:
            with session_scope(settings) as session:
                proj = service.get_project(session, project)
                if proj.first_use_date is None:
                    service.record_first_use(session, settings, actor=SYSTEM, code=project, day=day)
                service.record_day_use(session, settings, actor=SYSTEM, code=project, half_days=1)
        except InputError as exc:
            raise SpawnRefused(
                f"{project} has used all its approved working days; {MORE_DAYS_HINT.format(code=project)}",
                reason="days_used_up",
                log_message=str(exc),
            ) from None
        conn.execute(
            "INSERT INTO slot_use VALUES (?,?,?,?,?)",
            (project, day.isoformat(), slot, servers, clock.now().isoformat()),
        )
        return True


def check_days_left(settings: Settings, *, project: str, day: date, slot: str) -> None:
    """Refuse a start when this slot would need a half day the project no longer has."""
    if slot_counted(settings, project=project, day=day, slot=slot):
        return
    with session_scope(settings) as session:
        proj = service.get_project(session, project)
        left = proj.approved_half_days - proj.used_half_days
    if left < 1:
        raise SpawnRefused(
            f"{project} has used all {proj.approved_half_days} approved half days; "
            f"{MORE_DAYS_HINT.format(code=project)}",
            reason="days_used_up",
            log_message=f"{project}: used {proj.used_half_days} of {proj.approved_half_days} half days",
        )


@dataclass(frozen=True)
class OvernightRun:
    id: int
    project: str
    night: date
    username: str
    registered_by: str
    billed: bool


def register_overnight(settings: Settings, *, project: str, night: date, username: str, actor: str) -> OvernightRun:
    """Register an overnight run of ``username``'s server in ``project`` for ``night``.

    The actor is the researcher themselves or a custodian. The night must follow a working
    day and must not have begun billing yet.

    Raises
    ------
    PermissionDenied
        The researcher may not use the project, or the actor is neither them nor a custodian.
    InputError
        The night is not after a working day, is in the past, or is registered already.
    """
    hours = opening_hours(settings)
    with session_scope(settings) as session:
        if actor != username:
            require(session, actor, Role.CUSTODIAN)
        service.check_may_use(session, project, username)
        if not hours.calendar.is_working_day(night):
            raise InputError(f"{night} is not a working day; overnight runs follow a working day")
        if night < hours.local(clock.now()).date():
            raise InputError(f"{night} is in the past; register tonight or a later night")
        with _db(settings) as conn:
            try:
                cur = conn.execute(
                    "INSERT INTO overnight_runs (project, night, username, registered_by, registered_at)"
                    " VALUES (?,?,?,?,?)",
                    (project, night.isoformat(), username, actor, clock.now().isoformat()),
                )
            except sqlite3.IntegrityError:
                raise InputError(
                    f"{username} already has an overnight run in {project} for the night of {night}"
                ) from None
            run_id = int(cur.lastrowid or 0)
        audit.record(
            session,
            settings,
            actor=actor,
            role="researcher" if actor == username else "custodian",
            action="hub.overnight_register",
            obj=f"{project}:{night}",
            project=project,
            details={"username": username, "night": night.isoformat(), "run": run_id},
        )
    return OvernightRun(run_id, project, night, username, actor, False)


def overnight_runs(settings: Settings, *, project: str | None = None) -> list[OvernightRun]:
    """Registered overnight runs, newest night first."""
    sql = "SELECT id, project, night, username, registered_by, billed_at FROM overnight_runs"
    args: tuple = ()
    if project:
        sql += " WHERE project=?"
        args = (project,)
    with _db(settings) as conn:
        rows = conn.execute(sql + " ORDER BY night DESC, id", args).fetchall()
    return [OvernightRun(r[0], r[1], date.fromisoformat(r[2]), r[3], r[4], r[5] is not None) for r in rows]


def has_overnight(settings: Settings, *, project: str, night: date, username: str) -> bool:
    """True when ``username`` registered an overnight run in ``project`` for ``night``."""
    with _db(settings) as conn:
        row = conn.execute(
            "SELECT 1 FROM overnight_runs WHERE project=? AND night=? AND username=?",
            (project, night.isoformat(), username),
        ).fetchone()
    return row is not None


@dataclass
class Settlement:
    """What one :func:`settle` call posted to the ledger."""

    days: list[tuple[str, str, str]]  # (project, day, charge kind)
    extra_computers: list[tuple[str, str, int]]
    overnight_runs: list[int]


def settle(settings: Settings, *, now: datetime | None = None, hours: OpeningHours | None = None) -> Settlement:
    """Bill every closed day with usage and every overnight run whose night has begun.

    Idempotent: a day or run is billed once (``day_settled``, ``billed_at``).
    """
    moment = now or clock.now()
    hours = hours or opening_hours(settings)
    out = Settlement([], [], [])
    with _db(settings) as conn:
        rows = conn.execute(
            "SELECT s.project, s.day, s.slot, s.max_servers FROM slot_use s LEFT JOIN day_settled d"
            " ON d.project = s.project AND d.day = s.day WHERE d.day IS NULL ORDER BY s.project, s.day"
        ).fetchall()
        by_day: dict[tuple[str, str], list[tuple[str, int]]] = {}
        for project, day, slot, servers in rows:
            by_day.setdefault((project, day), []).append((slot, servers))
        runs = conn.execute(
            "SELECT id, project, night FROM overnight_runs WHERE billed_at IS NULL ORDER BY id"
        ).fetchall()
        with session_scope(settings) as session:
            for (project, day_text), slots in sorted(by_day.items()):
                day = date.fromisoformat(day_text)
                if moment < hours.closing_at(day):
                    continue
                kind = ledger.ChargeKind.FULL_DAY if len(slots) >= 2 else ledger.ChargeKind.HALF_DAY
                ref = f"hub:{project}:{day_text}"
                ledger.post_at_schedule(
                    session,
                    settings,
                    project_id=project,
                    kind=kind,
                    quantity=1,
                    occurred_on=day,
                    reference=ref,
                    actor=SYSTEM,
                )
                extra = sum(max(0, n - 1) for _, n in slots)
                if extra:
                    ledger.post_at_schedule(
                        session,
                        settings,
                        project_id=project,
                        kind=ledger.ChargeKind.EXTRA_COMPUTER,
                        quantity=extra,
                        occurred_on=day,
                        reference=ref,
                        actor=SYSTEM,
                    )
                    out.extra_computers.append((project, day_text, extra))
                conn.execute("INSERT INTO day_settled VALUES (?,?,?)", (project, day_text, moment.isoformat()))
                out.days.append((project, day_text, kind.value))
            for run_id, project, night_text in runs:
                night = date.fromisoformat(night_text)
                if moment < hours.closing_at(night):
                    continue
                ledger.post_at_schedule(
                    session,
                    settings,
                    project_id=project,
                    kind=ledger.ChargeKind.OVERNIGHT_RUN,
                    quantity=1,
                    occurred_on=night,
                    reference=f"hub-overnight:{run_id}",
                    actor=SYSTEM,
                )
                conn.execute("UPDATE overnight_runs SET billed_at=? WHERE id=?", (moment.isoformat(), run_id))
                out.overnight_runs.append(run_id)
    return out


def check_member(settings: Settings, *, project: str, username: str) -> None:
    """Refuse unless ``username`` may use ``project`` now (active, member, declarations signed)."""
    with session_scope(settings) as session:
        try:
            service.check_may_use(session, project, username)
        except PermissionDenied as exc:
            raise SpawnRefused(str(exc), reason="not_allowed") from None
