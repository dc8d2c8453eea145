"""The export service over its Unix socket: the caller is identified by uid (SO_PEERCRED),
files come only from the project scratch, preview and request use the real checker."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import polars as pl
import pytest
from sqlalchemy import select
from ws_helpers import PROJECT, ServiceThread

from enclave.toolkit import crosstab, open_project, save_output
from enclave.toolkit.export import ExportServiceError, call, preview_check, request_export, whoami
from enclave.workspace.export_service import CallerNotIdentified, ExportService


def _outputs(settings) -> Path:
    return settings.projects_dir / PROJECT / "scratch" / "rex" / "outputs"


def _sex_table(settings, name="dm_sex.csv") -> Path:
    project = open_project(settings.projects_dir / PROJECT / "extract")
    people = (project.lazy("H_NHI_OPDTE")
              .filter(pl.col("ICD9CM_1").str.starts_with("E11") & (pl.col("year") == 2020))
              .group_by("ID").agg(sex=pl.col("ID_S").first()))
    return save_output(crosstab(people, rows="sex", project=project), name,
                       folder=_outputs(settings))


def test_whoami_uses_the_peer_uid(toolkit_env, export_service):
    assert whoami() == {"username": "rex", "uid": os.getuid()}


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


def test_path_traversal_and_links_out_of_scratch_refused(toolkit_env, export_service):
    extract = toolkit_env.projects_dir / PROJECT / "extract"
    outputs = _outputs(toolkit_env)
    sneaky = f"{outputs}/../../../extract/person_index.parquet"
    with pytest.raises(ExportServiceError, match="outside the project scratch"):
        preview_check([sneaky])
    (outputs / "link.parquet").symlink_to(extract / "person_index.parquet")
    with pytest.raises(ExportServiceError, match="outside the project scratch"):
        request_export([outputs / "link.parquet"], purpose="x")
    keys = toolkit_env.keys_dir
    with pytest.raises(ExportServiceError, match="outside the project scratch"):
        preview_check([str(keys)])
    with pytest.raises(ExportServiceError, match="absolute path"):
        call({"op": "preview", "project": PROJECT, "paths": ["outputs/x.csv"]})


def test_non_member_is_refused(demo):
    service = ExportService(demo, uid_map={os.getuid(): "oscar"})
    with pytest.raises(Exception, match="not a current member"):
        service.preview("oscar", {"project": PROJECT, "paths": ["/nonexistent"]})
    reply = service.handle(os.getuid(), {"op": "request", "project": PROJECT,
                                         "paths": [str(_sex_table(demo))], "purpose": "x"})
    assert reply["ok"] is False
    assert reply["kind"] == "PermissionDenied"


def test_other_project_scratch_refused(demo, toolkit_env, export_service):
    other = demo.projects_dir / "P2026-0002" / "scratch"
    other.mkdir(parents=True)
    (other / "t.csv").write_text("sex,n\nF,30\n", encoding="utf-8")
    with pytest.raises(ExportServiceError, match="outside the project scratch"):
        preview_check([other / "t.csv"])


def test_real_uid_lookup_refuses_non_researcher_accounts(demo):
    service = ExportService(demo)  # production mode: pwd lookup, enc-<username> only
    with pytest.raises(CallerNotIdentified, match="not a researcher account"):
        service.identify(0)
    assert service.handle(0, {"op": "whoami"})["kind"] == "CallerNotIdentified"


def test_peer_uid_comes_from_the_kernel_not_the_request(demo):
    # Serve with rex mapped to *our* uid only, then connect as nobody (uid 65534) through
    # setpriv: the service must see 65534 whatever the request says.
    run = Path(tempfile.mkdtemp(prefix="enclave-sock-"))
    run.chmod(0o755)
    service = ExportService(demo, socket_path=run / "export.sock", uid_map={os.getuid(): "rex"})
    client = ("import json, socket, sys\n"
              "s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])\n"
              "s.sendall(json.dumps({'op': 'whoami', 'uid': 0, 'username': 'rex'}).encode() + b'\\n')\n"
              "s.shutdown(socket.SHUT_WR); print(s.makefile().read())\n")
    try:
        with ServiceThread(service):
            out = subprocess.run(
                ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                 sys.executable, "-I", "-c", client, str(run / "export.sock")],
                capture_output=True, text=True, timeout=60, check=True)
            reply = json.loads(out.stdout)
            assert reply["ok"] is False
            assert "uid 65534 is not mapped" in reply["error"]
            with socket.socket(socket.AF_UNIX) as sock:  # and we (mapped) are rex
                sock.connect(str(run / "export.sock"))
                sock.sendall(b'{"op": "whoami"}\n')
                sock.shutdown(socket.SHUT_WR)
                assert json.loads(sock.makefile().read())["username"] == "rex"
        assert (run / "export.sock").stat().st_mode & 0o777 == 0o666
    finally:
        for p in run.iterdir():
            p.unlink()
        run.rmdir()


def test_malformed_request_is_refused(toolkit_env, export_service):
    sock_path = Path(os.environ["ENCLAVE_EXPORT_SOCKET"])
    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect(str(sock_path))
        sock.sendall(b"this is not json\n")
        sock.shutdown(socket.SHUT_WR)
        reply = json.loads(sock.makefile().read())
    assert reply["ok"] is False
    with pytest.raises(ExportServiceError, match="unknown op"):
        call({"op": "release"})


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
        with socket.socket(socket.AF_UNIX) as sock:
            sock.connect(str(sock_path))
            sock.sendall(b'{"op": "whoami"}\n')
            sock.shutdown(socket.SHUT_WR)
            reply = json.loads(sock.makefile().read())
        assert reply["ok"] is False and reply["kind"] == "CallerNotIdentified"  # root is no researcher
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
    assert proc.returncode == 0
    assert not sock_path.exists()
