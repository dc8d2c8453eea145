"""Benchmark starting a researcher's workspace: login to a ready server, through the real hub.

Ours: a researcher logs in to a real JupyterHub of a test-sized enclave home (the hub
end-to-end fixture: three active projects, the demo extract), picks the project on the spawn
form, and waits until the hub reports the server ready (isolation, sandbox, gateway and
JupyterLab up), then until a first kernel has run ``1 + 1`` over the websocket.

Baseline, measured in the same run: the same ``jupyterhub-singleuser``'s server code started
plainly (``jupyter server`` as root, no hub, no isolation) until ``/api/status`` answers,
then a first kernel run through its REST and websocket API. The ratio ours / baseline is
printed; runs are interleaved because the machine's speed drifts.

Run as root: ``.venv/bin/python benchmarks/spawn.py [--runs 5]``.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import requests
import websocket

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests" / "hub"))

from hub_helpers import MONDAY_10, Researcher, start_hub  # noqa: E402

from enclave.hub import app, isolation  # noqa: E402


def _run_code(ws_url: str, header: list[str], code: str, timeout: float = 60) -> str:
    ws = websocket.create_connection(ws_url, header=header, timeout=timeout)
    msg_id = uuid.uuid4().hex
    ws.send(json.dumps({
        "header": {"msg_id": msg_id, "username": "bench", "session": uuid.uuid4().hex,
                   "msg_type": "execute_request", "version": "5.3"},
        "parent_header": {}, "metadata": {}, "channel": "shell",
        "content": {"code": code, "silent": False, "store_history": False,
                    "user_expressions": {}, "allow_stdin": False, "stop_on_error": True},
    }))
    result, idle = None, False
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and not (result is not None and idle):
            msg = json.loads(ws.recv())
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            if msg["msg_type"] == "execute_result":
                result = msg["content"]["data"]["text/plain"]
            elif msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                idle = True
    finally:
        ws.close()
    if result is None:
        raise RuntimeError("the kernel did not answer")
    return result


def ours(hub, project: str) -> tuple[float, float]:
    """Seconds from login to a ready server, and to a first kernel result."""
    t0 = time.perf_counter()
    chen = Researcher(hub, "chen.wei")
    chen.spawn(project)
    chen.wait_ready(timeout=120)
    ready = time.perf_counter() - t0
    kernel = chen.api("POST", "kernels", json={"name": "python3"}).json()["id"]
    ws_url = hub.url.replace("http://", "ws://") + f"/user/chen.wei/api/kernels/{kernel}/channels"
    assert _run_code(ws_url, [f"Authorization: token {chen.token}"], "1 + 1") == "2"
    first = time.perf_counter() - t0
    chen.stop()
    return ready, first


def baseline(root: Path) -> tuple[float, float]:
    """The plain server: start to /api/status, and to a first kernel result."""
    token = secrets.token_hex(16)
    port = app.free_port()
    work = Path(tempfile.mkdtemp(dir=root))
    env = {**os.environ, "JUPYTER_TOKEN": token, "HOME": str(work)}
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "jupyter-server"), "--allow-root", "--no-browser",
         f"--port={port}", f"--ServerApp.root_dir={work}", "--ServerApp.ip=127.0.0.1"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    headers = {"Authorization": f"token {token}"}
    try:
        while True:
            try:
                if requests.get(f"http://127.0.0.1:{port}/api/status", headers=headers, timeout=2).ok:
                    break
            except requests.RequestException:
                pass
            if proc.poll() is not None or time.perf_counter() - t0 > 120:
                raise RuntimeError("the plain server did not come up")
            time.sleep(0.05)
        ready = time.perf_counter() - t0
        kernel = requests.post(f"http://127.0.0.1:{port}/api/kernels", headers=headers,
                               json={"name": "python3"}, timeout=60).json()["id"]
        url = f"ws://127.0.0.1:{port}/api/kernels/{kernel}/channels"
        assert _run_code(url, [f"Authorization: token {token}"], "1 + 1") == "2"
        first = time.perf_counter() - t0
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    return ready, first


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root: the hub creates Unix users, namespaces and mounts")
    with tempfile.TemporaryDirectory(prefix="bench-spawn-") as tmp:
        root = Path(tmp)
        hub = start_hub(root / "hub", now=MONDAY_10)
        project = hub.projects["main"]
        rows = []
        try:
            ours(hub, project)  # warm-up: first use creates Unix users and the scratch image
            baseline(root)
            for run in range(1, args.runs + 1):
                b_ready, b_first = baseline(root)
                o_ready, o_first = ours(hub, project)
                rows.append((o_ready, o_first, b_ready, b_first))
                print(f"run {run}: ours ready {o_ready:.2f} s, first result {o_first:.2f} s | "
                      f"plain server ready {b_ready:.2f} s, first result {b_first:.2f} s | "
                      f"ratio ready {o_ready / b_ready:.2f}, first result {o_first / b_first:.2f}",
                      flush=True)
        finally:
            hub.procs.stop()
            isolation.release_all(hub.settings)
    med = [statistics.median(col) for col in zip(*rows, strict=True)]
    print(f"median: ours ready {med[0]:.2f} s, first result {med[1]:.2f} s | plain ready "
          f"{med[2]:.2f} s, first result {med[3]:.2f} s | ratio ready {med[0] / med[2]:.2f}, "
          f"first result {med[1] / med[3]:.2f}")


if __name__ == "__main__":
    main()
