"""The citizens' opt-out registry: import lists, answer for one person, count and flag spikes.

The registry holds stage-1 tokens only, never national IDs: an imported list is validated,
its IDs hashed with the deployment's stage-1 key (the same tokens the vault uses), and each
row stored as an event (opt-out or withdrawal, effective date, channel). Lists from several
channels and agencies merge: the same event twice is stored once. A person's status on a day
is their latest event on or before that day; a withdrawal on the same day as an opt-out wins.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import polars as pl
from pydantic import Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from catalog.checks import tw_id_valid_expr
from enclave import audit, clock
from enclave.config import Settings
from enclave.errors import InputError
from enclave.keys import KeyStore
from enclave.policies import PolicyModel, load_policy
from enclave.roles import Role
from enclave.state.models import OptOutEvent
from enclave.users import require

ACTIONS = ("optout", "withdraw")
REQUIRED_COLUMNS = ("ID", "EFFECTIVE_DATE", "CHANNEL", "ACTION")


class OptOutPolicy(PolicyModel):
    channels: list[str] = Field(default_factory=lambda: ["counter", "web", "app", "agency", "other"])
    trailing_months: int = 6
    spike_factor: float = 3.0
    spike_sigmas: float = 3.0
    spike_min_count: int = 10
    apply_to_active_extracts: bool = True


def optout_policy(settings: Settings) -> OptOutPolicy:
    return load_policy("optout", OptOutPolicy, settings)


@dataclass
class ImportResult:
    file: str
    sha256: str
    rows_read: int
    imported: int
    duplicates: int
    rejected: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "file": self.file,
            "sha256": self.sha256,
            "rows_read": self.rows_read,
            "imported": self.imported,
            "duplicates": self.duplicates,
            "rejected": len(self.rejected),
            "rejected_rows": self.rejected[:50],
        }


def _read_list(path: Path) -> pl.DataFrame:
    raw = path.read_bytes()
    for encoding in ("utf-8", "cp950"):
        try:
            text = raw.decode(encoding)
            break
        except UnicodeDecodeError:
            continue
    else:
        raise InputError(f"{path.name}: neither UTF-8 nor Big5")
    frame = pl.read_csv(text.encode("utf-8"), infer_schema=False, quote_char=None)
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise InputError(f"{path.name}: line 1 (header) lacks column(s) {missing}; expected {list(REQUIRED_COLUMNS)}")
    return frame.with_row_index("line", offset=2)


def import_list(
    session: Session, settings: Settings, path: Path, *, actor: str, channel: str | None = None
) -> ImportResult:
    """Validate and merge one opt-out list (custodian only). Invalid rows are reported, not stored."""
    from enclave.checksums import sha256_file
    from pipelines.ingest.tokens import Tokenizer

    who = require(session, actor, Role.CUSTODIAN)
    policy = optout_policy(settings)
    frame = _read_list(path)
    if channel:
        frame = frame.with_columns(pl.lit(channel).alias("CHANNEL"))
    ident = pl.col("ID").str.strip_chars().str.to_uppercase()
    checked = frame.with_columns(
        ident.alias("ID"),
        pl.col("EFFECTIVE_DATE").str.strip_chars().str.strptime(pl.Date, "%Y%m%d", strict=False).alias("_date"),
        pl.col("CHANNEL").str.strip_chars().str.to_lowercase().alias("CHANNEL"),
        pl.col("ACTION").str.strip_chars().str.to_lowercase().alias("ACTION"),
    )
    problem = (
        pl.when(pl.col("ID").is_null() | ~tw_id_valid_expr(pl.col("ID")).fill_null(False))
        .then(pl.lit("ID: not a valid national ID or resident certificate number"))
        .when(pl.col("_date").is_null())
        .then(pl.lit("EFFECTIVE_DATE: not a date in YYYYMMDD"))
        .when(~pl.col("CHANNEL").is_in(policy.channels))
        .then(pl.lit(f"CHANNEL: not one of {policy.channels}"))
        .when(~pl.col("ACTION").is_in(list(ACTIONS)))
        .then(pl.lit(f"ACTION: not one of {list(ACTIONS)}"))
    )
    checked = checked.with_columns(problem.alias("_problem"))
    bad = checked.filter(pl.col("_problem").is_not_null())
    good = checked.filter(pl.col("_problem").is_null())
    keys = KeyStore.for_home(settings.keys_dir)
    tokenizer = Tokenizer(keys.stage1_key(), keys.escrow_key())
    tokens = tokenizer.map_column(good.get_column("ID"), "person")
    good = good.with_columns(tokens.bin.encode("hex").alias("_token")).unique(
        subset=["_token", "_date", "CHANNEL", "ACTION"], keep="first"
    )
    sha = sha256_file(path)
    existing = {
        (t, d, c, a)
        for t, d, c, a in session.execute(
            select(OptOutEvent.token, OptOutEvent.effective_date, OptOutEvent.channel, OptOutEvent.action).where(
                OptOutEvent.token.in_(good.get_column("_token").to_list())
            )
        )
    }
    moment = clock.now()
    new_rows = []
    for token, day, chan, action in good.select("_token", "_date", "CHANNEL", "ACTION").iter_rows():
        if (token, day, chan, action) in existing:
            continue
        new_rows.append(
            OptOutEvent(
                token=token,
                effective_date=day,
                channel=chan,
                action=action,
                source_file=path.name,
                source_sha256=sha,
                imported_at=moment,
            )
        )
    session.add_all(new_rows)
    result = ImportResult(
        file=path.name,
        sha256=sha,
        rows_read=frame.height,
        imported=len(new_rows),
        duplicates=frame.height - bad.height - len(new_rows),
        rejected=[{"line": int(r["line"]), "problem": r["_problem"]} for r in bad.iter_rows(named=True)],
    )
    audit.record(
        session,
        settings,
        actor=who.username,
        role=Role.CUSTODIAN.value,
        action="optout.import",
        obj=path.name,
        details={k: v for k, v in result.to_dict().items() if k != "rejected_rows"},
    )
    return result


@dataclass(frozen=True)
class PersonStatus:
    opted_out: bool
    since: date | None
    channel: str | None
    events: int


def _status_from(events: Sequence[OptOutEvent], at: date) -> PersonStatus:
    applicable = [e for e in events if e.effective_date <= at]
    if not applicable:
        return PersonStatus(False, None, None, len(events))
    # Latest event wins; on the same day a withdrawal outranks an opt-out.
    last = max(applicable, key=lambda e: (e.effective_date, e.action == "withdraw"))
    if last.action == "optout":
        return PersonStatus(True, last.effective_date, last.channel, len(events))
    return PersonStatus(False, None, None, len(events))


def person_status(
    session: Session, settings: Settings, national_id: str, *, actor: str, reason: str, at: date | None = None
) -> PersonStatus:
    """Answer for one person (a sensitive look-up: custodian only, with a stated reason)."""
    from pipelines.ingest.tokens import stage1_token

    who = require(session, actor, Role.CUSTODIAN)
    if not reason.strip():
        raise InputError("a look-up of one person needs a stated reason (--reason)")
    token = stage1_token(KeyStore.for_home(settings.keys_dir).stage1_key(), "person", national_id).hex()
    events = session.execute(select(OptOutEvent).where(OptOutEvent.token == token)).scalars().all()
    status = _status_from(events, at or clock.local_now().date())
    audit.record(
        session,
        settings,
        actor=who.username,
        role=Role.CUSTODIAN.value,
        action="optout.status",
        obj="person",
        reason=reason,
        details={"opted_out": status.opted_out},
    )
    return status


def opted_out_tokens(session: Session, at: date) -> set[bytes]:
    """Stage-1 tokens of everyone opted out on ``at`` (for provisioning)."""
    rows = session.execute(
        select(OptOutEvent.token, OptOutEvent.effective_date, OptOutEvent.action).where(
            OptOutEvent.effective_date <= at
        )
    ).all()
    if not rows:
        return set()
    frame = pl.DataFrame(rows, schema=["token", "day", "action"], orient="row")
    latest = (
        frame.with_columns((pl.col("action") == "withdraw").alias("_w"))
        .sort(["token", "day", "_w"])
        .group_by("token", maintain_order=True)
        .last()
    )
    return {bytes.fromhex(t) for t in latest.filter(pl.col("action") == "optout").get_column("token")}


@dataclass
class Stats:
    by_channel_month: list[dict]
    by_month: list[dict]
    spikes: list[dict]
    currently_opted_out: int


def stats(session: Session, settings: Settings, *, at: date | None = None) -> Stats:
    """Opt-outs by channel and month, and months that are abnormal spikes (policy)."""
    policy = optout_policy(settings)
    rows = session.execute(select(OptOutEvent.effective_date, OptOutEvent.channel, OptOutEvent.action)).all()
    day = at or clock.local_now().date()
    current = len(opted_out_tokens(session, day))
    if not rows:
        return Stats([], [], [], current)
    frame = pl.DataFrame(rows, schema=["day", "channel", "action"], orient="row").with_columns(
        pl.col("day").dt.strftime("%Y-%m").alias("month")
    )
    by_cm = frame.group_by("month", "channel", "action").len("count").sort("month", "channel", "action").to_dicts()
    months = frame.filter(pl.col("action") == "optout").group_by("month").len("count").sort("month")
    # Fill empty months so a trailing mean is over calendar months, not active months.
    if months.height:
        start, end = months["month"].min(), months["month"].max()
        calendar = pl.date_range(
            pl.lit(f"{start}-01").str.to_date(), pl.lit(f"{end}-01").str.to_date(), "1mo", eager=True
        ).dt.strftime("%Y-%m")
        months = pl.DataFrame({"month": calendar}).join(months, on="month", how="left").fill_null(0)
    window = policy.trailing_months
    months = months.with_columns(
        pl.col("count").shift(1).rolling_mean(window, min_samples=2).alias("trailing_mean"),
        pl.col("count").shift(1).rolling_std(window, min_samples=2).alias("trailing_std"),
    )
    flagged = months.filter(
        (pl.col("count") >= policy.spike_min_count)
        & (pl.col("count") > policy.spike_factor * pl.col("trailing_mean"))
        & (pl.col("count") > pl.col("trailing_mean") + policy.spike_sigmas * pl.col("trailing_std"))
    )
    return Stats(by_cm, months.to_dicts(), flagged.to_dicts(), current)
