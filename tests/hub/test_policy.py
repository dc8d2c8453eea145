"""Opening hours, nights and the network allow-list, from the real policy files."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from pydantic import ValidationError

from enclave import clock
from enclave.hub.policy import QuotasPolicy, opening_hours, quotas_policy


def at(day: int, hour: int, minute: int = 0, month: int = 3) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=clock.LOCAL_ZONE)


def test_slots_follow_the_calendar_policy() -> None:
    hours = opening_hours()
    assert hours.slot_at(at(2, 8, 29)) is None
    assert hours.slot_at(at(2, 8, 30)) == "am"
    assert hours.slot_at(at(2, 12, 45)) is None  # lunch
    assert hours.slot_at(at(2, 13, 30)) == "pm"
    assert hours.slot_at(at(2, 17, 30)) is None
    assert hours.slot_at(at(7, 10)) is None  # Saturday
    assert hours.slot_at(at(3, 10, month=4)) is None  # Children's Day (observed), a holiday
    assert hours.slot_at(at(2, 10).astimezone(UTC)) == "am"  # UTC input, local rule


def test_closed_and_nights() -> None:
    hours = opening_hours()
    assert not hours.is_closed(at(2, 12, 45))  # lunch is not closing time
    assert hours.is_closed(at(2, 17, 31))
    assert hours.night_of(at(2, 17, 31)) == date(2026, 3, 2)
    assert hours.night_of(at(3, 7, 0)) == date(2026, 3, 2)  # before Tuesday's opening
    assert hours.night_of(at(2, 10)) is None
    assert hours.night_of(at(7, 20)) is None  # Saturday evening follows no working day


def test_network_allow_list() -> None:
    quotas = quotas_policy()
    assert quotas.client_allowed("127.0.0.1") and quotas.client_allowed("::1")
    assert quotas.client_allowed("::ffff:127.0.0.1")
    assert not quotas.client_allowed("10.0.0.5") and not quotas.client_allowed("not-an-ip")
    site = QuotasPolicy(allowed_networks=["10.20.0.0/16"])
    assert site.client_allowed("10.20.3.4") and not site.client_allowed("10.21.0.1")
    with pytest.raises(ValidationError, match="not a CIDR"):
        QuotasPolicy(allowed_networks=["10.0.0.0/33"])


def test_client_address_trusts_the_proxy_not_the_client() -> None:
    from types import SimpleNamespace

    from enclave.hub.auth import client_address

    def handler(headers: dict[str, str], peer: str = "127.0.0.1") -> SimpleNamespace:
        conn = SimpleNamespace(context=SimpleNamespace(remote_ip=peer))
        return SimpleNamespace(request=SimpleNamespace(headers=headers, connection=conn, remote_ip="spoofed"))

    # A client claiming loopback in X-Real-Ip / X-Forwarded-For: the proxy's appended entry wins.
    assert (
        client_address(handler({"X-Real-Ip": "127.0.0.1", "X-Forwarded-For": "127.0.0.1, 203.0.113.9"}))
        == "203.0.113.9"
    )
    assert client_address(handler({"X-Real-Ip": "127.0.0.1"}, peer="198.51.100.4")) == "198.51.100.4"
    assert client_address(None) == ""
