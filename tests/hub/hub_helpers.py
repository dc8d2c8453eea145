"""Helpers for the hub end-to-end tests: a real hub for an enclave home with researchers and active projects
(driven through the project service), tiny provisioned-looking extracts, test-sized quotas,
and JupyterHub + configurable-http-proxy started from the generated config."""

from __future__ import annotations

import copy
import re
import shutil
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import polars as pl
import pytest
import requests
import yaml

from enclave import clock
from enclave.config import Settings, load_settings, packaged_policies_dir
from enclave.home import init_home
from enclave.hub import app
from enclave.projects import service
from enclave.projects.spec import parse_spec
from enclave.state.db import session_scope
from enclave.users import add_user
from enclave.workspace.demo import write_demo_extract

REPO = Path(__file__).resolve().parents[2]
EXAMPLE_SPEC = REPO / "docs" / "examples" / "project_spec.yaml"
PASSWORD = "a-long-enough-password"
NTU = "National Taiwan University, Institute of Epidemiology and Preventive Medicine"
# A Monday morning (open); the hub process runs with its clock pinned here.
MONDAY_10 = datetime(2026, 3, 2, 10, 0, tzinfo=clock.LOCAL_ZONE)
PEOPLE = [
    ("chen.wei", "Chen Wei-Ting", NTU, ["researcher"]),
    ("lin.mei", "Lin Mei-Hua", NTU, ["researcher"]),
    ("wang.hao", "Wang Hao", "Taipei Medical University, School of Public Health", ["researcher"]),
    ("huang.yu", "Huang Yu", "Ministry of Health and Welfare", ["researcher"]),
    ("steve", "Steve Su", "NHIA", ["steward"]),
]
QUOTAS = {
    "memory_limit_mb": 700,
    "cpu_limit": 1.0,
    "scratch_quota_mb": 48,
    "tmp_mb": 8,
    "shm_mb": 4,
    "idle_cull_minutes": 60,
}


@dataclass
class Hub:
    settings: Settings
    url: str
    api_url: str
    token: str
    projects: dict[str, str]  # label -> code
    procs: app.HubProcesses
    log: Path | None = None

    def diagnostics(self) -> str:
        """The tail of the hub's log and of each server's log (for failure messages)."""
        parts = []
        if self.log and self.log.exists():
            parts.append(self.log.read_text(errors="replace")[-3000:])
        for server_log in sorted((self.settings.home / "hub" / "servers").glob("*.log")):
            parts.append(f"--- {server_log.name}\n" + server_log.read_text(errors="replace")[-2000:])
        return "\n".join(parts)


def make_home(root: Path, *, quotas: dict | None = None) -> tuple[Settings, dict[str, str]]:
    """An initialised home with people, three active projects and their extracts."""
    home = root / "home"
    policies = root / "policies"
    shutil.copytree(packaged_policies_dir(), policies)
    q = yaml.safe_load((policies / "quotas.yaml").read_text())
    q.update(quotas or QUOTAS)
    (policies / "quotas.yaml").write_text(yaml.safe_dump(q))
    settings = load_settings(home)
    init_home(
        settings,
        admin_username="alice",
        admin_full_name="Alice Lin",
        admin_unit="NHIA",
        admin_password="correct-horse-battery-staple",
    )
    settings.settings_file.write_text(f'[enclave]\npolicies_dir = "{policies}"\n')
    settings = load_settings(home)
    clock.set_clock(MONDAY_10)
    try:
        with session_scope(settings) as s:
            for username, full_name, unit, roles in PEOPLE:
                add_user(
                    s,
                    settings,
                    actor="alice",
                    username=username,
                    full_name=full_name,
                    unit=unit,
                    roles=roles,
                    password=PASSWORD,
                )
        spec = yaml.safe_load(EXAMPLE_SPEC.read_text(encoding="utf-8"))
        codes = {
            "main": _activate(settings, spec),
            "other": _activate(settings, {**copy.deepcopy(spec), "title": "Second study"}),
            "exhausted": _activate(settings, {**copy.deepcopy(spec), "title": "Used-up study"}),
        }
        with session_scope(settings) as s:
            p = service.get_project(s, codes["exhausted"])
            service.record_day_use(s, settings, actor="system", code=p.code, half_days=p.approved_half_days)
    finally:
        clock.set_clock(None)
    for label, code in codes.items():
        if label == "main":
            # The workspace's demo extract: what the template notebooks are written against.
            write_demo_extract(settings.projects_dir / code, persons=200)
        else:
            write_extract(settings, code, marker=f"{label}-{code}")
    (settings.vault_dir / "H_NHI_OPDTE").mkdir(parents=True, exist_ok=True)
    pl.DataFrame({"x": [1]}).write_parquet(settings.vault_dir / "H_NHI_OPDTE" / "vault.parquet")
    return settings, codes


def _activate(settings: Settings, spec: dict) -> str:
    form = parse_spec(spec)
    with session_scope(settings) as s:
        code = service.apply(s, settings, actor=form.applicant, spec=form, spec_dir=EXAMPLE_SPEC.parent).code
    with session_scope(settings) as s:
        number = service.approve(s, settings, actor="steve", code=code, reason="necessary").number
    with session_scope(settings) as s:
        for name in sorted(service.member_names(service.get_project(s, code))):
            for kind in ("contract", "confidentiality"):
                service.record_declaration(s, settings, actor="alice", code=code, username=name, kind=kind)
    with session_scope(settings) as s:
        service.record_payment(
            s, settings, actor="alice", notice_number=number, paid_on=service.today(), reference=f"R-{number}"
        )
    return code


def write_extract(settings: Settings, code: str, *, marker: str) -> None:
    """The extract layout of the shared contract, with tiny Parquet files."""
    extract = settings.projects_dir / code / "extract"
    part = extract / "H_NHI_OPDTE" / "year=2022"
    part.mkdir(parents=True, exist_ok=True)
    pl.DataFrame(
        {"ID": ["AAAAAAAAAAAAAAAAAAAAAA", "BBBBBBBBBBBBBBBBBBBBBB"], "ICD9CM_1": ["E11", marker]}
    ).write_parquet(part / "part-0.parquet")
    pl.DataFrame(
        {"pseudonym": ["AAAAAAAAAAAAAAAAAAAAAA", "BBBBBBBBBBBBBBBBBBBBBB"], "idx": pl.Series([0, 1], dtype=pl.UInt32)}
    ).write_parquet(extract / "person_index.parquet")
    (extract / "manifest.json").write_text('{"files": {}}')
    (extract / "data_dictionary.md").write_text(f"# Data dictionary of {code}\n")


def wait_until_up(url: str, proc, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"hub exited with {proc.returncode}")
        try:
            if requests.get(f"{url}/hub/api", timeout=2).ok:
                return
        except requests.RequestException:
            pass
        time.sleep(0.3)
    raise RuntimeError("hub did not come up")


def start_hub(
    root: Path, *, now: datetime, monkeypatch: pytest.MonkeyPatch | None = None, extra_config: str = "", **home_kwargs
) -> Hub:
    settings, codes = make_home(root, **home_kwargs)
    mp = monkeypatch or pytest.MonkeyPatch()
    mp.setenv("ENCLAVE_NOW", now.isoformat())
    procs = app.start(
        settings, port=app.free_port(), run_scheduler=False, log_path=root / "hub.log", extra_config=extra_config
    )
    mp.delenv("ENCLAVE_NOW")
    try:
        wait_until_up(procs.config.url, procs.hub)
    except RuntimeError:
        procs.stop()
        raise RuntimeError((root / "hub.log").read_text()[-4000:]) from None
    return Hub(
        settings, procs.config.url, procs.config.api_url, procs.config.scheduler_token, codes, procs, root / "hub.log"
    )


def login(hub: Hub, username: str, password: str = PASSWORD, otp: str = "") -> requests.Session:
    """Log in through the hub's login form (with its XSRF token); return the cookie session."""
    s = requests.Session()
    page = s.get(f"{hub.url}/hub/login", timeout=30)
    xsrf = re.search(r'name="_xsrf" value="([^"]+)"', page.text)
    data = {"username": username, "password": password, "otp": otp}
    if xsrf:
        data["_xsrf"] = xsrf.group(1)
    s.post(f"{hub.url}/hub/login", data=data, timeout=60, allow_redirects=False)
    return s


class Researcher:
    """One researcher's browser-less session: hub cookie, API token, server and kernels."""

    def __init__(self, hub: Hub, username: str, password: str = PASSWORD, otp: str = "") -> None:
        self.hub = hub
        self.username = username
        self.http = login(hub, username, password, otp)
        self._token: str | None = None

    @property
    def logged_in(self) -> bool:
        names = [cookie.name for cookie in self.http.cookies]
        return "jupyterhub-session-id" in names and any(n.startswith("jupyterhub-hub-login") for n in names)

    def spawn_page(self) -> str:
        return self.http.get(f"{self.hub.url}/hub/spawn/{self.username}", timeout=30).text

    def spawn(self, project: str) -> str:
        """Submit the spawn form for ``project``; return the hub's page (error text if refused)."""
        r = self.http.post(
            f"{self.hub.url}/hub/spawn/{self.username}",
            data={"project": project, "_xsrf": self.http.cookies.get("_xsrf", path="/hub/")},
            timeout=90,
        )
        return r.text

    @property
    def token(self) -> str:
        if self._token is None:
            r = self.http.post(
                f"{self.hub.url}/hub/api/users/{self.username}/tokens",
                headers={"X-XSRFToken": self.http.cookies.get("_xsrf", path="/hub/")},
                json={"note": "test", "expires_in": 3600},
                timeout=30,
            )
            r.raise_for_status()
            self._token = r.json()["token"]
        return self._token

    def api(self, method: str, path: str, **kwargs) -> requests.Response:
        return requests.request(
            method,
            f"{self.hub.url}/user/{self.username}/api/{path}",
            headers={"Authorization": f"token {self.token}"},
            timeout=60,
            **kwargs,
        )

    def api_raw(self, method: str, path: str, **kwargs) -> requests.Response:
        """A request to the server outside ``/api`` (e.g. ``files/...``, ``nbconvert/...``)."""
        return requests.request(
            method,
            f"{self.hub.url}/user/{self.username}/{path}",
            headers={"Authorization": f"token {self.token}"},
            timeout=60,
            allow_redirects=False,
            **kwargs,
        )

    def hub_api(self, method: str, path: str, **kwargs) -> requests.Response:
        return requests.request(
            method,
            f"{self.hub.url}/hub/api/{path}",
            headers={"Authorization": f"token {self.token}"},
            timeout=60,
            **kwargs,
        )

    def server(self) -> dict | None:
        return (self.hub_api("GET", f"users/{self.username}").json().get("servers") or {}).get("")

    def wait_ready(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            server = self.server()
            if server and server.get("ready"):
                return
            if server is None:
                raise AssertionError("server stopped while starting\n" + self.hub.diagnostics())
            time.sleep(0.5)
        raise AssertionError("server did not become ready\n" + self.hub.diagnostics())

    def stop(self) -> None:
        self.hub_api("DELETE", f"users/{self.username}/server")
        deadline = time.monotonic() + 60
        while self.server() is not None and time.monotonic() < deadline:
            time.sleep(0.5)

    def ensure_server(self, project: str) -> None:
        """A ready server of this researcher for ``project`` (the running one, or a new one)."""
        server = self.server()
        if server and (server.get("user_options") or {}).get("project") == project and server.get("ready"):
            return
        if server:
            self.stop()
        self.spawn(project)
        self.wait_ready()

    def kernel_json(self, code: str, *, timeout: float = 120) -> dict:
        """Run ``code`` (which prints one JSON document last) in a kernel; return that document."""
        import json

        out = self.execute(code, timeout=timeout)
        if out["status"] != "ok" or not out["stdout"].strip():
            raise AssertionError(
                f"kernel run failed: {out['status']} {out['error']} {out['stdout'][-2000:]} {out.get('traceback', '')}"
            )
        return json.loads(out["stdout"].strip().splitlines()[-1])

    def execute(self, code: str, *, timeout: float = 60, user_expressions: dict | None = None) -> dict:
        """Run ``code`` in a new kernel over the websocket API; return its outputs and status.

        ``messages`` holds every message answering the request, ``frame_bytes`` the bytes of
        every frame the gateway sent while it ran (all channels).
        """
        import json
        import uuid

        import websocket

        kernel = self.api("POST", "kernels", json={"name": "python3"}).json()["id"]
        ws_url = self.hub.url.replace("http://", "ws://") + f"/user/{self.username}/api/kernels/{kernel}/channels"
        ws = websocket.create_connection(ws_url, header=[f"Authorization: token {self.token}"], timeout=timeout)
        msg_id = uuid.uuid4().hex
        ws.send(
            json.dumps(
                {
                    "header": {
                        "msg_id": msg_id,
                        "username": self.username,
                        "session": uuid.uuid4().hex,
                        "msg_type": "execute_request",
                        "version": "5.3",
                    },
                    "parent_header": {},
                    "metadata": {},
                    "channel": "shell",
                    "content": {
                        "code": code,
                        "silent": False,
                        "store_history": False,
                        "user_expressions": user_expressions or {},
                        "allow_stdin": False,
                        "stop_on_error": True,
                    },
                }
            )
        )
        out: dict = {"stdout": "", "status": None, "error": None, "kernel": kernel, "messages": [], "frame_bytes": 0}
        # The reply (shell) and the outputs (iopub) travel on different channels and may arrive
        # in either order: a run is over only when both the execute_reply and the kernel's idle
        # status for this request have arrived (stopping at the reply lost late stdout).
        replied = idle = False
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline and not (replied and idle):
                try:
                    frame = ws.recv()
                    out["frame_bytes"] += len(frame)
                    msg = json.loads(frame)
                except (websocket.WebSocketTimeoutException, websocket.WebSocketConnectionClosedException):
                    out["status"] = "lost"
                    break
                except ValueError:
                    continue  # a binary frame (widget buffers): not ours to read here
                if msg.get("parent_header", {}).get("msg_id") != msg_id:
                    if msg.get("msg_type") == "status" and msg["content"].get("execution_state") in (
                        "restarting",
                        "dead",
                    ):
                        out["status"] = msg["content"]["execution_state"]
                        break
                    continue
                out["messages"].append(msg)
                kind = msg["msg_type"]
                if kind == "stream":
                    out["stdout"] += msg["content"]["text"]
                elif kind == "error":
                    out["error"] = msg["content"]["ename"]
                    out["traceback"] = "\n".join(msg["content"].get("traceback") or [])[-3000:]
                elif kind == "status":
                    state = msg["content"].get("execution_state")
                    if state in ("restarting", "dead"):
                        out["status"] = state
                        break
                    idle = idle or state == "idle"
                elif kind == "execute_reply":
                    out["status"] = msg["content"]["status"]
                    replied = True
        finally:
            ws.close()
            # Each run has its own kernel: shut it down, or they add up to the memory limit.
            self.api("DELETE", f"kernels/{kernel}")
        return out
