"""End-to-end: a real JupyterHub, configurable-http-proxy and isolated single-user servers.

One hub serves the module (starting it costs seconds); tests run in file order and leave no
server running. Time is injected: the hub process runs with ENCLAVE_NOW pinned to a Monday
morning, and the scheduler's tick is called with explicit moments.
"""

from __future__ import annotations

import json
import socket
import threading
from datetime import datetime, timedelta
from pathlib import Path

import polars as pl
import pyotp
import pytest
from sqlalchemy import select

from enclave import clock
from enclave.hub import isolation, scheduler, usage
from enclave.hub.policy import opening_hours
from enclave.state.db import session_scope
from enclave.state.models import AuditEntry, LedgerEntry, Project, User

pytestmark = pytest.mark.slow


import hub_helpers as C  # noqa: E402
from hub_helpers import Researcher  # noqa: E402


@pytest.fixture(scope="module")
def host_listener():
    """A TCP service on the host's loopback that no kernel may reach."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    hits: list[str] = []

    def accept() -> None:
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            hits.append("connected")
            conn.close()

    threading.Thread(target=accept, daemon=True).start()
    yield srv.getsockname()[1], hits
    srv.close()


PROBE = r"""
import json, os, socket, errno
import polars as pl
home = {home!r}
res = {{}}
def attempt(name, fn):
    try:
        res[name] = ["ok", str(fn())[:200]]
    except Exception as exc:
        res[name] = ["refused", type(exc).__name__]
extract = os.environ["ENCLAVE_EXTRACT"]
attempt("own_extract", lambda: pl.read_parquet(extract + "/H_NHI_OPDTE/year=2020/part-0.parquet").height)
attempt("other_extract", lambda: os.listdir(home + "/projects/{other}/extract"))
other_part = home + "/projects/{other}/extract/H_NHI_OPDTE/year=2022/part-0.parquet"
attempt("other_extract_file", lambda: open(other_part, "rb").read(4))
attempt("vault", lambda: os.listdir(home + "/vault"))
attempt("keys", lambda: os.listdir(home + "/keys"))
attempt("state_db", lambda: open(home + "/state.db", "rb").read(4))
attempt("write_extract", lambda: open(extract + "/new.txt", "w").write("x"))
attempt("dns", lambda: socket.getaddrinfo("example.com", 443))
def tcp():
    s = socket.create_connection(("127.0.0.1", {port}), timeout=3); s.close(); return "connected"
attempt("host_loopback_tcp", tcp)
attempt("outside_tcp", lambda: socket.create_connection(("1.1.1.1", 443), timeout=3))
def udp():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); return s.sendto(b"x", ("8.8.8.8", 53))
attempt("udp", udp)
def fill():
    with open(os.environ["ENCLAVE_SCRATCH"] + "/big.bin", "wb") as fh:
        for _ in range(96):
            fh.write(b"\0" * (1 << 20)); fh.flush(); os.fsync(fh.fileno())
    return "wrote 96 MiB"
attempt("scratch_over_quota", fill)
os.remove(os.environ["ENCLAVE_SCRATCH"] + "/big.bin")
attempt("scratch_small", lambda: open(os.environ["ENCLAVE_SCRATCH"] + "/ok.txt", "w").write("fine"))
res["export_socket"] = os.path.exists(os.environ.get("ENCLAVE_EXPORT_SOCKET", "/nonexistent"))
res["run"] = sorted(os.listdir("/run"))
res["uid"] = os.getuid()
res["ifaces"] = [name for _, name in socket.if_nameindex()]
print(json.dumps(res))
"""


def test_login_is_refused_without_a_project_role_or_password(hub) -> None:
    assert not Researcher(hub, "chen.wei", password="wrong-password-here").logged_in
    assert not Researcher(hub, "steve").logged_in  # a steward, not a researcher
    assert not Researcher(hub, "huang.yu").logged_in  # a researcher with no active project
    assert Researcher(hub, "chen.wei").logged_in
    with session_scope(hub.settings) as s:
        actions = s.execute(
            select(AuditEntry.actor, AuditEntry.outcome).where(AuditEntry.action.in_(["user.login", "hub.login"]))
        ).all()
    assert ("steve", "denied") in actions and ("huang.yu", "denied") in actions
    assert ("chen.wei", "ok") in actions


def test_totp_second_factor(hub) -> None:
    secret = pyotp.random_base32()
    with session_scope(hub.settings) as s:
        s.execute(select(User).where(User.username == "lin.mei")).scalar_one().totp_secret = secret
    try:
        assert not Researcher(hub, "lin.mei").logged_in
        assert not Researcher(hub, "lin.mei", otp="000000").logged_in or pyotp.TOTP(secret).now() == "000000"
        assert Researcher(hub, "lin.mei", otp=pyotp.TOTP(secret).now()).logged_in
    finally:
        with session_scope(hub.settings) as s:
            s.execute(select(User).where(User.username == "lin.mei")).scalar_one().totp_secret = None


def test_spawn_isolation_quotas_and_billing(hub, host_listener) -> None:
    port, hits = host_listener
    main, other = hub.projects["main"], hub.projects["other"]
    chen = Researcher(hub, "chen.wei")
    page = chen.spawn_page()
    # Several active projects: the researcher picks one, and sees only that one.
    assert f'value="{main}"' in page and f'value="{other}"' in page
    chen.spawn(main)
    chen.wait_ready()
    try:
        result = chen.execute(PROBE.format(home=str(hub.settings.home), other=other, port=port))
        assert result["status"] == "ok", result
        res = json.loads(result["stdout"].strip().splitlines()[-1])
        own = pl.read_parquet(hub.settings.projects_dir / main / "extract/H_NHI_OPDTE/year=2020/part-0.parquet")
        assert res["own_extract"] == ["ok", str(own.height)]
        for attempt in (
            "other_extract",
            "other_extract_file",
            "vault",
            "keys",
            "state_db",
            "write_extract",
            "dns",
            "host_loopback_tcp",
            "outside_tcp",
            "udp",
            "scratch_over_quota",
        ):
            assert res[attempt][0] == "refused", (attempt, res[attempt])
        assert res["scratch_small"][0] == "ok"
        assert res["uid"] != 0
        # Host services' Unix sockets under /run are hidden (util-linux keeps its own utab there).
        assert set(res["run"]) <= {"enclave-hub", "mount"}, res["run"]
        assert res["export_socket"]  # the export service's socket is the one way out
        assert res["ifaces"] == ["lo"]
        assert hits == []  # the host service never saw a connection

        # No other way out through the server: /files downloads of data and nbconvert export.
        made = chen.execute(
            "import os, polars as pl\n"
            "pl.DataFrame({'a': [1]}).write_parquet(os.environ['ENCLAVE_SCRATCH'] + '/t.parquet')"
        )
        assert made["status"] == "ok", made
        assert chen.api_raw("GET", "files/t.parquet").status_code in (403, 404)
        assert chen.api_raw("GET", "nbconvert/html/01_getting_started.ipynb?download=true").status_code in (403, 404)

        # Computers quota: the project has one computer and chen.wei is using it.
        lin = Researcher(hub, "lin.mei")
        refused = lin.spawn(main)
        assert "already uses its 1 computer" in refused
        # Days quota: a project whose approved days are used up.
        refused = lin.spawn(hub.projects["exhausted"])
        assert "used all" in refused and "enclave project change" in refused

        # Memory beyond the limit is stopped by the cgroup (the kernel is killed).
        oom = chen.execute(
            "x = bytearray(2 * 1024**3); x[::4096] = b'1' * len(x[::4096]); print('survived')", timeout=90
        )
        assert "survived" not in oom["stdout"] and oom["status"] != "ok", oom
        cg = Path("/sys/fs/cgroup/memory/enclave") / isolation.server_name(hub.settings, "chen.wei", main)
        assert isolation.Cgroup((cg,)).oom_kills() >= 1

        # Overnight run registered for Monday night: kept at closing, billed per run.
        with clock.frozen(C.MONDAY_10):
            usage.register_overnight(
                hub.settings, project=main, night=C.MONDAY_10.date(), username="chen.wei", actor="chen.wei"
            )
        closing = datetime(2026, 3, 2, 17, 31, tzinfo=clock.LOCAL_ZONE)
        report = scheduler.tick(hub.settings, api_url=hub.api_url, token=hub.token, now=closing)
        assert report.kept_overnight == ["chen.wei/"] and report.stopped == []
        # Tuesday at closing time with no overnight run: the server is stopped.
        tuesday_close = datetime(2026, 3, 3, 17, 31, tzinfo=clock.LOCAL_ZONE)
        report = scheduler.tick(hub.settings, api_url=hub.api_url, token=hub.token, now=tuesday_close)
        assert report.stopped == [("chen.wei/", "closing_time")]
        assert chen.server() is None
    finally:
        chen.stop()
    with session_scope(hub.settings) as s:
        lines = s.execute(
            select(LedgerEntry.project_code, LedgerEntry.kind, LedgerEntry.amount, LedgerEntry.occurred_on).where(
                LedgerEntry.actor == "system"
            )
        ).all()
        project = s.execute(select(Project).where(Project.code == main)).scalar_one()
        assert project.used_half_days == 1 and project.first_use_date == C.MONDAY_10.date()
    assert (main, "half_day", 800, C.MONDAY_10.date()) in lines
    assert (main, "overnight_run", 1600, C.MONDAY_10.date()) in lines


def test_idle_server_is_culled(hub) -> None:
    chen = Researcher(hub, "chen.wei")
    chen.spawn(hub.projects["other"])
    chen.wait_ready()
    try:
        last = datetime.fromisoformat(chen.server()["last_activity"].replace("Z", "+00:00"))
        # The next working morning after the last activity: open, and more than an hour idle.
        moment = last.astimezone(clock.LOCAL_ZONE).replace(hour=10, minute=0, second=0, microsecond=0)
        oh = opening_hours(hub.settings)
        while moment <= last + timedelta(hours=1) or oh.slot_at(moment) is None:
            moment += timedelta(days=1)
        report = scheduler.tick(hub.settings, api_url=hub.api_url, token=hub.token, now=moment)
        assert ("chen.wei/", "idle") in report.stopped
        assert chen.server() is None
    finally:
        chen.stop()
