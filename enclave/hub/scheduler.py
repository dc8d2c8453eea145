"""The hub's clock-driven duties, run as a JupyterHub service every minute.

Owns :func:`tick`: count the half-day slot of every running server (days quota), stop servers
at closing time unless an overnight run is registered for that night, cull idle servers, and
settle closed days and begun overnight runs to the billing ledger. It talks to the Hub only
through its REST API (token and URL from the environment the Hub sets), so a test can call
:func:`tick` with an injected time against a real hub.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from urllib.parse import quote

import requests

from enclave import audit, clock
from enclave.config import Settings, load_settings
from enclave.hub import usage
from enclave.hub.policy import SpawnRefused, opening_hours, quotas_policy
from enclave.state.db import session_scope

SCOPES = ["list:users", "read:users", "read:servers", "admin:server_state", "delete:servers", "read:users:activity"]


@dataclass
class TickReport:
    """What one :func:`tick` did (for logs and tests)."""

    counted: list[tuple[str, str]] = field(default_factory=list)  # (server, slot)
    stopped: list[tuple[str, str]] = field(default_factory=list)  # (server, reason)
    kept_overnight: list[str] = field(default_factory=list)
    settlement: usage.Settlement | None = None


def _servers(api_url: str, token: str) -> list[dict]:
    resp = requests.get(
        f"{api_url}/users", params={"state": "active"}, headers={"Authorization": f"token {token}"}, timeout=30
    )
    resp.raise_for_status()
    out = []
    for user in resp.json():
        for name, server in (user.get("servers") or {}).items():
            if not server.get("ready"):
                continue
            state = server.get("state") or {}
            project = (server.get("user_options") or {}).get("project") or state.get("project")
            out.append(
                {
                    "user": user["name"],
                    "name": name,
                    "project": project,
                    "last_activity": server.get("last_activity"),
                    "ready": server.get("ready"),
                }
            )
    return out


def _stop(api_url: str, token: str, user: str, name: str) -> None:
    path = (
        f"{api_url}/users/{quote(user)}/server" if not name else f"{api_url}/users/{quote(user)}/servers/{quote(name)}"
    )
    resp = requests.delete(path, headers={"Authorization": f"token {token}"}, timeout=60)
    if resp.status_code not in (202, 204, 404):
        resp.raise_for_status()


def tick(settings: Settings, *, api_url: str, token: str, now: datetime | None = None) -> TickReport:
    """Run the scheduler's duties once at ``now`` (default :func:`enclave.clock.now`)."""
    moment = now or clock.now()
    hours = opening_hours(settings)
    quotas = quotas_policy(settings)
    report = TickReport()
    servers = [s for s in _servers(api_url, token) if s["project"]]
    per_project: dict[str, int] = {}
    for s in servers:
        per_project[s["project"]] = per_project.get(s["project"], 0) + 1
    for s in servers:
        label = f"{s['user']}/{s['name']}"
        reason = None
        slot = hours.slot_at(moment)
        if hours.is_closed(moment):
            night = hours.night_of(moment)
            if night and usage.has_overnight(settings, project=s["project"], night=night, username=s["user"]):
                report.kept_overnight.append(label)
            else:
                reason = "closing_time"
        elif slot is not None and s["ready"]:
            try:
                usage.mark_slot(
                    settings,
                    project=s["project"],
                    day=hours.local(moment).date(),
                    slot=slot,
                    servers=per_project[s["project"]],
                )
                report.counted.append((label, slot))
            except SpawnRefused:
                reason = "days_used_up"
        if reason is None and s["last_activity"]:
            last = datetime.fromisoformat(s["last_activity"].replace("Z", "+00:00"))
            if moment - last > timedelta(minutes=quotas.idle_cull_minutes):
                reason = "idle"
        if reason:
            _stop(api_url, token, s["user"], s["name"])
            report.stopped.append((label, reason))
            with session_scope(settings) as session:
                audit.record(
                    session,
                    settings,
                    actor="system",
                    role="system",
                    action="hub.stop",
                    obj=label,
                    project=s["project"],
                    details={"reason": reason},
                )
    report.settlement = usage.settle(settings, now=moment, hours=hours)
    return report


def main(argv: list[str] | None = None) -> None:
    """Service entry point: ``python -m enclave.hub.scheduler --home HOME [--interval 60]``."""
    parser = argparse.ArgumentParser(prog="enclave.hub.scheduler")
    parser.add_argument("--home", required=True)
    parser.add_argument("--interval", type=float, default=60.0)
    args = parser.parse_args(argv)
    settings = load_settings(args.home)
    # The hub stops its services with SIGINT then SIGTERM: end quietly between ticks.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: sys.exit(0))
    api_url = os.environ["JUPYTERHUB_API_URL"]
    token = os.environ["JUPYTERHUB_API_TOKEN"]
    while True:
        try:
            report = tick(settings, api_url=api_url, token=token)
            if report.stopped:
                print(f"stopped {report.stopped}", flush=True)
        except requests.RequestException as exc:
            # The hub may be restarting; the next tick retries.
            print(f"scheduler: hub API unreachable: {exc}", flush=True)
        time.sleep(args.interval)


if __name__ == "__main__":
    main()
