"""The time source. Every rule that depends on "now" asks this module, so tests can set it.

Time is kept timezone-aware. Business rules (working days, opening hours, periods) use the
service centre's local zone (``Asia/Taipei`` by default, from policy); storage uses UTC.
Set ``ENCLAVE_NOW`` (ISO 8601) to pin the clock for a process, or call :func:`set_clock`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from enclave.errors import ConfigError

LOCAL_ZONE = ZoneInfo("Asia/Taipei")

_override: Callable[[], datetime] | None = None


def _parse(value: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value)
    except ValueError as exc:
        raise ConfigError(f"ENCLAVE_NOW={value!r} is not an ISO 8601 date-time") from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=LOCAL_ZONE)
    return moment


def now() -> datetime:
    """Return the current time, timezone-aware, always in UTC (what the state store keeps)."""
    if _override is not None:
        return _override().astimezone(UTC)
    pinned = os.environ.get("ENCLAVE_NOW")
    if pinned:
        return _parse(pinned).astimezone(UTC)
    return datetime.now(UTC)


def local_now() -> datetime:
    """Return :func:`now` in the service centre's local zone."""
    return now().astimezone(LOCAL_ZONE)


def set_clock(source: Callable[[], datetime] | datetime | None) -> None:
    """Replace the time source (a callable or a fixed moment); ``None`` restores real time."""
    global _override
    if source is None or callable(source):
        _override = source
        return
    fixed = source if source.tzinfo else source.replace(tzinfo=LOCAL_ZONE)
    _override = lambda: fixed  # noqa: E731


@contextmanager
def frozen(moment: datetime) -> Iterator[None]:
    """Pin the clock to ``moment`` inside a ``with`` block."""
    previous = _override
    set_clock(moment)
    try:
        yield
    finally:
        set_clock(previous)
