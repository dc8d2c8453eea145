"""The export service over its Unix socket: the caller is identified by the kernel (SO_PEERCRED
pid and uid → the hub's server registry), files come only from the session's project scratch
through a no-symlink walk, and no caller can wedge the service for the others."""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path

import polars as pl
import pytest
from sqlalchemy import select
from ws_helpers import PROJECT, ServiceThread, fake_session, sessions_by_uid

from enclave.hub import sessions
from enclave.toolkit import crosstab, open_project, save_output
from enclave.toolkit.export import ExportServiceError, call, preview_check, request_export, whoami
from enclave.workspace import export_service as es
from enclave.workspace import safe_files
from enclave.workspace.export_service import MAX_REQUEST_BYTES, ExportService

NOBODY = 65534
SECRET = "QUARANTINE-ROW-7f3a9"


def _outputs(settings) -> Path:
    return settings.projects_dir / PROJECT / "scratch" / "rex" / "outputs"


def _sex_table(settings, name="dm_sex.csv") -> Path:
    project = open_project(settings.projects_dir / PROJECT / "extract")
    people = (project.lazy("H_NHI_OPDTE")
              .filter(pl.col("ICD9CM_1").str.starts_with("E11") & (pl.col("year") == 2020))
              .group_by("ID").agg(sex=pl.col("ID_S").first()))
    return save_output(crosstab(people, rows="sex", project=project), name,
                       folder=_outputs(settings))


def _send(sock_path: Path, data: bytes, *, timeout: float = 30) -> dict:
    """One raw call over the socket as this process (uid 0)."""
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(timeout)
        sock.connect(str(sock_path))
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        return json.loads(sock.makefile().read())


CLIENT = ("import json, socket, sys\n"
          "s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])\n"
          "s.sendall(sys.argv[2].encode() + b'\\n')\n"
          "s.shutdown(socket.SHUT_WR); print(s.makefile().read())\n")


def _call_as(uid: int, sock_path: Path, payload: dict) -> dict:
    """One call from a process of ``uid`` (setpriv), so SO_PEERCRED sees that uid."""
    out = subprocess.run(
        ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups",
         sys.executable, "-I", "-c", CLIENT, str(sock_path), json.dumps(payload)],
        capture_output=True, text=True, timeout=60, check=True)
    return json.loads(out.stdout)


@pytest.fixture
def open_service(demo):
    """A service on a socket other uids can reach; rex is this process, pia is uid 65534."""
    run = Path(tempfile.mkdtemp(prefix="enclave-sock-"))
    run.chmod(0o755)
    resolver = sessions_by_uid(fake_session("rex"), fake_session("pia", uid=NOBODY))
    service = ExportService(demo, socket_path=run / "export.sock", session_for=resolver)
    try:
        with ServiceThread(service):
            yield service
    finally:
        for p in run.iterdir():
            p.unlink()
        run.rmdir()


@pytest.fixture
def blocked_checker(monkeypatch):
    """The checker waits for ``release`` (set ``started`` when a call reaches it)."""
    import disclosure_review.checker

    real = disclosure_review.checker.check_paths
    started, release = threading.Event(), threading.Event()

    def slow(*args, **kwargs):
        started.set()
        release.wait(timeout=60)
        return real(*args, **kwargs)

    monkeypatch.setattr(disclosure_review.checker, "check_paths", slow)
    yield started, release
    release.set()


def _preview(path: Path | str) -> dict:
    return {"op": "preview", "project": PROJECT, "paths": [str(path)]}


# -- what a researcher does ------------------------------------------------------------------
def test_whoami_uses_the_peer_uid(toolkit_env, export_service):
    assert whoami() == {"username": "rex", "uid": os.getuid()}
    assert call({"op": "whoami"})["project"] == PROJECT


def test_preview_passes_a_safe_table(toolkit_env, export_service):
    path = _sex_table(toolkit_env)
    report = preview_check([path])
    assert report["verdict"] == "pass", report
    assert report["findings"] == []


def test_preview_fails_small_counts(toolkit_env, export_service):
    path = _outputs(toolkit_env) / "tiny.csv"
    path.write_text("sex,n\nF,3\nM,40\n", encoding="utf-8")
    report = preview_check(["tiny.csv"])  # a bare name means outputs/tiny.csv
    assert report["verdict"] == "fail"
    assert {f["rule"] for f in report["findings"]} >= {"count_threshold"}
    assert all(f["file"] == "tiny.csv" for f in report["findings"])


def test_request_export_creates_a_request_as_the_caller(toolkit_env, export_service):
    path = _sex_table(toolkit_env)
    reply = request_export([path], purpose="Table 1: people with diabetes by sex")
    assert reply["status"] == "queued"
    assert reply["verdict"] == "pass"
    from enclave.state.db import session_scope
    from enclave.state.models import ExportRequest

    with session_scope(toolkit_env) as session:
        request = session.scalars(select(ExportRequest)).one()
        assert (request.code, request.author, request.project_code) == (
            reply["request"], "rex", PROJECT)
        assert request.files[0].name == "dm_sex.csv"
        assert request.files[0].cells_name == "dm_sex.csv.cells.parquet"


# -- paths -----------------------------------------------------------------------------------
def test_path_traversal_and_links_out_of_scratch_refused(toolkit_env, export_service):
    extract = toolkit_env.projects_dir / PROJECT / "extract"
    outputs = _outputs(toolkit_env)
    with pytest.raises(ExportServiceError, match=re.escape("component '..' is not allowed")):
        preview_check([f"{outputs}/../../../extract/person_index.parquet"])
    (outputs / "link.parquet").symlink_to(extract / "person_index.parquet")
    with pytest.raises(ExportServiceError, match=re.escape("a symlink at component 'link.parquet'")):
        request_export([outputs / "link.parquet"], purpose="x")
    with pytest.raises(ExportServiceError, match="outside the project scratch"):
        preview_check([str(toolkit_env.keys_dir)])
    with pytest.raises(ExportServiceError, match="absolute path"):
        call({"op": "preview", "project": PROJECT, "paths": ["outputs/x.csv"]})
    with pytest.raises(ExportServiceError, match="empty component"):
        call(_preview(f"{outputs}//tiny.csv"))


def test_symlink_at_an_intermediate_component_refused(toolkit_env, export_service, tmp_path):
    outside = tmp_path / "custodian-only"
    outside.mkdir()
    (outside / "t.csv").write_text(f"sex,n\n{SECRET},30\n", encoding="utf-8")
    outputs = _outputs(toolkit_env)
    (outputs / "sub").symlink_to(outside, target_is_directory=True)
    with pytest.raises(ExportServiceError, match="a symlink at component 'sub'") as info:
        preview_check([outputs / "sub" / "t.csv"])
    assert SECRET not in str(info.value)
    # The workspace's own extract link is a symlink too: nothing is exported through it.
    with pytest.raises(ExportServiceError, match="a symlink at component 'extract'"):
        preview_check([outputs.parent / "extract" / "person_index.parquet"])
    # A sidecar is opened in the same folder and vetted like the file.
    (outputs / "tiny.csv").write_text("sex,n\nF,30\nM,40\n", encoding="utf-8")
    (outputs / "tiny.csv.cells.json").symlink_to(outside / "t.csv")
    with pytest.raises(ExportServiceError, match=re.escape("symlink at component 'tiny.csv.cells.json'")):
        preview_check(["tiny.csv"])


def test_swapping_a_folder_for_a_symlink_never_leaks(toolkit_env, export_service, tmp_path, monkeypatch):
    outside = tmp_path / "quarantine"
    outside.mkdir()
    (outside / "t.csv").write_text(f"sex,{SECRET}\nF,31\nM,{SECRET}\n", encoding="utf-8")
    outputs = _outputs(toolkit_env)
    race, parked, link = outputs / "race", outputs / "race.real", outputs / "race.link"
    race.mkdir()
    (race / "t.csv").write_text("sex,n\nF,30\nM,40\n", encoding="utf-8")
    link.symlink_to(outside, target_is_directory=True)

    staged: list[bytes] = []
    real_copy = safe_files.copy_bounded

    def recording_copy(fd, dest, **kwargs):  # every byte the service stages
        copied = real_copy(fd, dest, **kwargs)
        dest.flush()
        staged.append(Path(dest.name).read_bytes())
        return copied

    monkeypatch.setattr(safe_files, "copy_bounded", recording_copy)
    stop = threading.Event()

    def swap() -> None:  # each rename is atomic: "race" is the folder, missing, or the link
        while not stop.is_set():
            os.rename(race, parked)
            os.rename(link, race)
            os.rename(race, link)
            os.rename(parked, race)

    swapper = threading.Thread(target=swap, daemon=True)
    swapper.start()
    replies = []
    try:
        for _ in range(150):
            replies.append(export_service.handle(os.getuid(), os.getpid(), _preview(race / "t.csv")))
    finally:
        stop.set()
        swapper.join(timeout=10)
    text = json.dumps(replies)
    assert SECRET not in text
    assert not any(SECRET.encode() in data for data in staged)
    # Both states were met: the real folder was checked, the link was refused.
    assert any(r["ok"] for r in replies)
    assert any("symlink at component 'race'" in r.get("error", "") for r in replies)


def test_fifo_refused_promptly_while_others_are_served(open_service):
    fifo = _outputs(open_service.settings) / "pipe.csv"
    os.mkfifo(fifo)
    replies: dict[str, dict] = {}

    def fifo_call() -> None:
        replies["fifo"] = _send(open_service.socket_path, json.dumps(_preview(fifo)).encode() + b"\n",
                                timeout=10)

    try:
        caller = threading.Thread(target=fifo_call)
        began = time.monotonic()
        caller.start()
        other = _call_as(NOBODY, open_service.socket_path, {"op": "whoami"})
        caller.join(timeout=15)
        assert time.monotonic() - began < 10
        assert replies["fifo"]["ok"] is False
        assert "not a regular file" in replies["fifo"]["error"]
        assert other["ok"] and other["username"] == "pia"
    finally:
        # If the guard failed, a worker blocks opening the FIFO: a writer releases it.
        with contextlib.suppress(OSError):
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))


def test_file_owned_by_another_user_refused(toolkit_env, export_service):
    path = _outputs(toolkit_env) / "pia_private.csv"
    path.write_text("sex,n\nF,30\nM,40\n", encoding="utf-8")
    os.chown(path, 12345, 12345)
    with pytest.raises(ExportServiceError, match="owned by another user"):
        preview_check([path])


def test_hard_linked_file_refused(toolkit_env, export_service):
    outputs = _outputs(toolkit_env)
    (outputs / "a.csv").write_text("sex,n\nF,30\nM,40\n", encoding="utf-8")
    os.link(outputs / "a.csv", outputs / "b.csv")
    with pytest.raises(ExportServiceError, match="has 2 hard links"):
        preview_check(["b.csv"])


def test_two_files_with_one_name_refused(toolkit_env, export_service):
    outputs = _outputs(toolkit_env)
    (outputs / "sub").mkdir()
    for folder in (outputs, outputs / "sub"):
        (folder / "t.csv").write_text("sex,n\nF,30\nM,40\n", encoding="utf-8")
    with pytest.raises(ExportServiceError, match=re.escape("also named 't.csv'")):
        preview_check([outputs / "t.csv", outputs / "sub" / "t.csv"])


# -- identity and project --------------------------------------------------------------------
def test_request_naming_another_project_refused(demo, toolkit_env, export_service):
    path = _sex_table(demo)
    with pytest.raises(ExportServiceError, match=f"started for project {PROJECT}, not 'P2026-0002'"):
        call({"op": "request", "project": "P2026-0002", "paths": [str(path)], "purpose": "x"})
    with pytest.raises(ExportServiceError, match="P2026-0002"):
        call({"op": "preview", "project": "P2026-0002", "paths": [str(path)]})


def test_other_project_scratch_refused(demo, toolkit_env, export_service):
    other = demo.projects_dir / "P2026-0002" / "scratch"
    other.mkdir(parents=True)
    (other / "t.csv").write_text("sex,n\nF,30\n", encoding="utf-8")
    with pytest.raises(ExportServiceError, match="outside the project scratch"):
        preview_check([other / "t.csv"])


def test_non_member_is_refused(demo):
    service = ExportService(demo, session_for=sessions_by_uid(fake_session("oscar")))
    reply = service.handle(os.getuid(), os.getpid(), {"op": "request", "project": PROJECT,
                                                      "paths": [str(_sex_table(demo))], "purpose": "x"})
    assert reply["ok"] is False
    assert reply["kind"] == "PermissionDenied"
    assert "oscar is not a current member" in reply["error"]


def test_uid_without_a_session_refused(demo):
    service = ExportService(demo)  # production resolver: the hub's registry, empty here
    reply = service.handle(12345, os.getpid(), {"op": "whoami"})
    assert reply["kind"] == "NoWorkspaceSession"
    assert "no running workspace server" in reply["error"]


def test_process_outside_the_servers_cgroup_refused(demo, tmp_path):
    own = Path("/proc/self/cgroup").read_text().splitlines()[-1].split(":", 2)[2]
    alive = (str(tmp_path),)  # an existing folder: the record is not stale
    elsewhere = replace(fake_session("rex"), cgroup="/enclave/another-server", cgroup_dirs=alive)
    assert not elsewhere.holds(os.getpid())  # read from this process's real /proc entry
    sessions.register(demo, elsewhere)
    service = ExportService(demo)
    reply = service.handle(os.getuid(), os.getpid(), {"op": "whoami"})
    assert reply["kind"] == "NoWorkspaceSession"
    assert "not inside the workspace server of rex" in reply["error"]
    inside = replace(elsewhere, cgroup=own)
    assert inside.holds(os.getpid())
    sessions.register(demo, inside)
    assert service.handle(os.getuid(), os.getpid(), {"op": "whoami"})["username"] == "rex"


def test_peer_uid_comes_from_the_kernel_not_the_request(open_service):
    reply = _call_as(NOBODY, open_service.socket_path, {"op": "whoami", "uid": 0, "username": "rex"})
    assert (reply["username"], reply["uid"]) == ("pia", NOBODY)
    mine = _send(open_service.socket_path, b'{"op": "whoami", "username": "pia"}\n')
    assert (mine["username"], mine["uid"]) == ("rex", os.getuid())
    assert open_service.socket_path.stat().st_mode & 0o777 == 0o666


# -- requests that are not JSON lines ----------------------------------------------------------
def test_malformed_request_is_refused(toolkit_env, export_service):
    reply = _send(export_service.socket_path, b"this is not json\n")
    assert reply["ok"] is False
    assert "not valid JSON" in reply["error"]
    assert _send(export_service.socket_path, b"[1, 2]\n")["error"].startswith("send one JSON object")
    with pytest.raises(ExportServiceError, match="unknown op"):
        call({"op": "release"})


def test_oversized_request_line_refused(toolkit_env, export_service):
    line = json.dumps({"op": "preview", "paths": ["/x" * MAX_REQUEST_BYTES]}).encode() + b"\n"
    reply = _send(export_service.socket_path, line)
    assert reply["ok"] is False
    assert f"request longer than {MAX_REQUEST_BYTES} bytes" in reply["error"]
    assert whoami()["username"] == "rex"  # and the service goes on


# -- nobody wedges it --------------------------------------------------------------------------
def test_slow_call_does_not_hold_up_other_uids(open_service, blocked_checker):
    started, release = blocked_checker
    path = _outputs(open_service.settings) / "tiny.csv"
    path.write_text("sex,n\nF,30\nM,40\n", encoding="utf-8")
    replies: dict[str, dict] = {}
    slow = threading.Thread(target=lambda: replies.update(
        slow=_send(open_service.socket_path, json.dumps(_preview(path)).encode() + b"\n")))
    slow.start()
    assert started.wait(timeout=30)
    # The same uid gets a clear "busy"; another uid is answered at once.
    busy = _send(open_service.socket_path, b'{"op": "whoami"}\n', timeout=10)
    assert busy["kind"] == "ServiceBusy" and "another export call in progress" in busy["error"]
    other = _call_as(NOBODY, open_service.socket_path, {"op": "preview", "paths": [str(path)]})
    assert other["ok"] is False and "owned by another user" in other["error"]  # served, vetted
    assert slow.is_alive()
    release.set()
    slow.join(timeout=30)
    assert replies["slow"]["ok"] is True
    assert replies["slow"]["report"]["verdict"] == "pass"


def test_call_past_its_deadline_is_stopped(demo, monkeypatch):
    import disclosure_review.checker

    real = disclosure_review.checker.check_paths

    def late(*args, **kwargs):
        time.sleep(0.4)
        return real(*args, **kwargs)

    monkeypatch.setattr(disclosure_review.checker, "check_paths", late)
    path = _outputs(demo) / "tiny.csv"
    path.write_text("sex,n\nF,30\nM,40\n", encoding="utf-8")
    service = ExportService(demo, session_for=sessions_by_uid(fake_session("rex")), call_deadline=0.2)
    reply = service.handle(os.getuid(), os.getpid(), _preview(path))
    assert reply["kind"] == "DeadlinePassed"
    assert "time limit while checking" in reply["error"]


def test_stuck_call_is_answered_and_keeps_only_its_uid_busy(open_service, blocked_checker, monkeypatch):
    started, release = blocked_checker
    monkeypatch.setattr(es, "REPLY_GRACE_SECONDS", 0.3)
    open_service.call_deadline = 0.3
    path = _outputs(open_service.settings) / "tiny.csv"
    path.write_text("sex,n\nF,30\nM,40\n", encoding="utf-8")
    began = time.monotonic()
    reply = _send(open_service.socket_path, json.dumps(_preview(path)).encode() + b"\n", timeout=10)
    assert time.monotonic() - began < 5
    assert reply["kind"] == "DeadlinePassed" and "abandoned" in reply["error"]
    assert started.is_set()
    assert _send(open_service.socket_path, b'{"op": "whoami"}\n')["kind"] == "ServiceBusy"
    assert _call_as(NOBODY, open_service.socket_path, {"op": "whoami"})["ok"] is True
    release.set()  # the worker ends; rex may call again
    deadline = time.monotonic() + 10
    while open_service._in_flight and time.monotonic() < deadline:
        time.sleep(0.05)
    open_service.call_deadline = 30
    assert _send(open_service.socket_path, b'{"op": "whoami"}\n')["username"] == "rex"


def test_entry_point_serves_until_terminated(demo):
    """``python -m enclave.workspace.export_service --home HOME`` binds the socket and answers."""
    import signal

    sock_path = demo.home / "run" / "export.sock"
    proc = subprocess.Popen([sys.executable, "-m", "enclave.workspace.export_service",
                             "--home", str(demo.home)], stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        for line in proc.stderr:  # wait for the service's own "listening" line
            if "listening on" in line:
                break
        reply = _send(sock_path, b'{"op": "whoami"}\n')
        assert reply["ok"] is False and reply["kind"] == "NoWorkspaceSession"  # root runs no server
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
    assert proc.returncode == 0
    assert not sock_path.exists()
