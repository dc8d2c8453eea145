"""Start refusals through a real hub whose clock (or host) does not allow a server:
closed hours (time injected into the hub process), no sandbox tool, and a kernel without network
namespaces (fail closed; the development flag starts anyway and says so)."""

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


def _bwrap_without_netns(folder) -> str:
    """A bubblewrap that behaves as on a kernel without network namespaces (the real one otherwise)."""
    path = folder / "bwrap-no-netns"
    path.write_text(
        "#!/bin/sh\n"
        'for arg in "$@"; do if [ "$arg" = --unshare-net ]; then\n'
        '  echo "bwrap: Creating new namespace failed: Operation not permitted" >&2; exit 1; fi; done\n'
        'exec bwrap "$@"\n'
    )
    path.chmod(0o755)
    return str(path)


def test_spawn_refused_without_the_sandbox_tool(tmp_path) -> None:
    hub = start_hub(tmp_path, now=MONDAY_10, extra_config='c.EnclaveSpawner.bwrap_command = "/nonexistent/bwrap"\n')
    try:
        page = Researcher(hub, "chen.wei").spawn(hub.projects["main"])
        assert "sandbox tool (bubblewrap) is not installed" in page and "fail closed" in page
        with session_scope(hub.settings) as s:
            reasons = s.execute(select(AuditEntry.details).where(AuditEntry.action == "hub.spawn")).scalars().all()
        assert any("sandbox_missing" in str(r) for r in reasons)
    finally:
        hub.procs.stop()


def test_spawn_refused_without_network_namespace(tmp_path) -> None:
    # The kernel refuses network namespaces: fail closed, say how to develop anyway.
    fake = _bwrap_without_netns(tmp_path)
    hub = start_hub(tmp_path, now=MONDAY_10, extra_config=f"c.EnclaveSpawner.bwrap_command = {fake!r}\n")
    try:
        page = Researcher(hub, "chen.wei").spawn(hub.projects["main"])
        assert "cannot isolate your server from the network" in page and "--dev-no-netns" in page
    finally:
        hub.procs.stop()


def test_development_flag_starts_without_namespace_and_says_so(tmp_path) -> None:
    fake = _bwrap_without_netns(tmp_path)
    hub = start_hub(
        tmp_path,
        now=MONDAY_10,
        extra_config=f"c.EnclaveSpawner.bwrap_command = {fake!r}\nc.EnclaveSpawner.allow_without_netns = True\n",
    )
    chen = Researcher(hub, "chen.wei")
    try:
        chen.spawn(hub.projects["main"])
        chen.wait_ready()
        # Still its own Unix user and sandbox, only the network is the host's.
        out = chen.execute(f"import os; print(os.getuid(), os.path.exists({str(hub.settings.vault_dir)!r}))")
        assert out["status"] == "ok", out
        uid, vault_visible = out["stdout"].split()
        assert int(uid) != 0 and vault_visible == "False"
        log = (tmp_path / "hub.log").read_text()
        assert "DEVELOPMENT: the server of chen.wei runs without a network namespace" in log
        with session_scope(hub.settings) as s:
            spawns = (
                s.execute(
                    select(AuditEntry.details).where(AuditEntry.action == "hub.spawn", AuditEntry.outcome == "ok")
                )
                .scalars()
                .all()
            )
        assert any('"netns": false' in str(d) or "'netns': False" in str(d) for d in spawns), spawns
    finally:
        chen.stop()
        hub.procs.stop()
