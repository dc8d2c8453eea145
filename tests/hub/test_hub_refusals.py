"""Start refusals through a real hub whose clock (or host) does not allow a server:
closed hours (time injected into the hub process), and no network namespace (fail closed)."""

from __future__ import annotations

from datetime import datetime

import pytest
from hub_helpers import MONDAY_10, Researcher, start_hub
from sqlalchemy import select

from enclave import clock
from enclave.state.db import session_scope
from enclave.state.models import AuditEntry, Project

pytestmark = pytest.mark.slow

SATURDAY_10 = datetime(2026, 3, 7, 10, 0, tzinfo=clock.LOCAL_ZONE)


def _used(hub, code: str) -> int:
    with session_scope(hub.settings) as s:
        return s.execute(select(Project.used_half_days).where(Project.code == code)).scalar_one()


def test_spawn_refused_outside_opening_hours(tmp_path) -> None:
    hub = start_hub(tmp_path, now=SATURDAY_10)
    try:
        main = hub.projects["main"]
        before = _used(hub, main)
        page = Researcher(hub, "chen.wei").spawn(main)
        assert "the workspace is closed now" in page and "08:30-12:30" in page
        assert _used(hub, main) == before  # a refused start uses no day
        with session_scope(hub.settings) as s:
            reasons = s.execute(select(AuditEntry.details).where(AuditEntry.action == "hub.spawn")).scalars().all()
        assert any("outside_hours" in str(r) for r in reasons)
    finally:
        hub.procs.stop()


def test_spawn_refused_without_network_namespace(tmp_path) -> None:
    # The host cannot create namespaces (no usable `ip`): fail closed, say how to develop anyway.
    hub = start_hub(tmp_path, now=MONDAY_10, extra_config='c.EnclaveSpawner.ip_command = "/nonexistent/ip"\n')
    try:
        page = Researcher(hub, "chen.wei").spawn(hub.projects["main"])
        assert "cannot isolate your server from the network" in page and "--dev-no-netns" in page
    finally:
        hub.procs.stop()


def test_development_flag_starts_without_namespace_and_says_so(tmp_path) -> None:
    hub = start_hub(
        tmp_path,
        now=MONDAY_10,
        extra_config=('c.EnclaveSpawner.ip_command = "/nonexistent/ip"\nc.EnclaveSpawner.allow_without_netns = True\n'),
    )
    chen = Researcher(hub, "chen.wei")
    try:
        chen.spawn(hub.projects["main"])
        chen.wait_ready()
        # Still its own Unix user and mount view, only the network is the host's.
        out = chen.execute(f"import os; print(os.getuid(), os.path.exists({str(hub.settings.vault_dir)!r}))")
        uid, vault_visible = out["stdout"].split()
        assert int(uid) != 0 and vault_visible == "False"
        log = (tmp_path / "hub.log").read_text()
        assert "DEVELOPMENT: enc-chen.wei-" in log
        with session_scope(hub.settings) as s:
            spawns = (
                s.execute(
                    select(AuditEntry.details).where(AuditEntry.action == "hub.spawn", AuditEntry.outcome == "ok")
                )
                .scalars()
                .all()
            )
        assert any('"netns": null' in str(d) or "'netns': None" in str(d) for d in spawns), spawns
    finally:
        chen.stop()
        hub.procs.stop()
