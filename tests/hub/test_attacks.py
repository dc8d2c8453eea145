"""The workspace under attack from its own researcher: a real hub, real bubblewrap sandboxes and
real kernels driven over the websocket, trying what a hostile insider tries from a kernel.

Each test makes the attempt from inside a kernel (or from a browser-less client of the hub, as
the researcher or as nobody) and asserts that it was refused and that nothing reached the
other side: no byte of a file the researcher may not read, of another project, or of the
host. The attacks are listed, with how each is stopped, in ``docs/SECURITY.md``.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from pathlib import Path

import pytest
import requests
from hub_helpers import MONDAY_10, Researcher, start_hub
from sqlalchemy import select

from enclave.hub import isolation
from enclave.state.db import session_scope
from enclave.state.models import AuditEntry

pytestmark = pytest.mark.slow

NATIONAL_ID = "A123456789"  # checksum-valid
SECRET_ROW = f"SECRET-QUARANTINE-ROW,{NATIONAL_ID},Chen Da-Ming,0912-345-678"


@pytest.fixture(scope="module")
def secrets_on_host(hub):
    """What the researcher must never obtain: custodian-only quarantine rows, another project's
    extract (its marker), another member's private file, and services on the host."""
    quarantine = hub.settings.quarantine_dir / "batch=attack"
    quarantine.mkdir(parents=True, exist_ok=True)
    (quarantine / "rows.csv").write_text("line,reason\n" + SECRET_ROW + "\n")
    other = hub.projects["other"]
    other_part = hub.settings.projects_dir / other / "extract" / "H_NHI_OPDTE" / "year=2022"
    # Another member's private folder in chen.wei's own project scratch (made once chen's
    # server has mounted the scratch; see the chen fixture).
    abstract = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    abstract.bind("\0enclave-attack-host")
    abstract.listen()
    six = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    six.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    six.bind(("::1", 0))
    six.listen()
    hits: list[str] = []

    def accept(sock: socket.socket, label: str) -> None:
        while True:
            try:
                conn, _ = sock.accept()
            except OSError:
                return
            hits.append(label)
            conn.close()

    for sock, label in ((abstract, "abstract"), (six, "ipv6")):
        threading.Thread(target=accept, args=(sock, label), daemon=True).start()
    yield {
        "quarantine": quarantine,
        "other_part": other_part,
        "other_marker": f"other-{other}",
        "ipv6_port": six.getsockname()[1],
        "hits": hits,
    }
    abstract.close()
    six.close()


@pytest.fixture(scope="module")
def chen(hub, secrets_on_host) -> Researcher:
    r = Researcher(hub, "chen.wei")
    r.ensure_server(hub.projects["main"])
    private = hub.settings.projects_dir / hub.projects["main"] / "scratch" / "lin.mei"
    private.mkdir(exist_ok=True)
    (private / "notes.csv").write_text("lin's private notes," + SECRET_ROW + "\n")
    os.chown(private, 12345, 12345)
    os.chown(private / "notes.csv", 12345, 12345)
    os.chmod(private, 0o700)
    yield r
    r.stop()


def _main(hub, chen: Researcher) -> str:
    chen.ensure_server(hub.projects["main"])
    return hub.projects["main"]


# A client of the export socket the kernel can use for raw requests.
SOCKET_CLIENT = r"""
import json, os, socket
def raw(payload, *, line=None, timeout=30):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(os.environ["ENCLAVE_EXPORT_SOCKET"])
    try:
        s.sendall(line if line is not None else json.dumps(payload).encode() + b"\n")
        s.shutdown(socket.SHUT_WR)
    except BrokenPipeError:
        pass  # the service answered and closed before reading it all: read its answer

    data = b""
    while chunk := s.recv(65536):
        data += chunk
    s.close()
    return json.loads(data or b"{}")
"""


def test_path_race_in_the_export_service_never_copies_what_the_researcher_may_not_read(hub, chen, secrets_on_host):
    main = _main(hub, chen)
    code = SOCKET_CLIENT + f"""
import threading, time
outputs = os.environ["ENCLAVE_SCRATCH"] + "/outputs"
d = outputs + "/d"
os.makedirs(d, exist_ok=True)
for name in ("rows.csv", "part-0.parquet"):
    open(d + "/" + name, "w").write("sex,n\\nF,30\\nM,40\\n")
os.rename(d, outputs + "/real")
targets = [{str(secrets_on_host["quarantine"])!r}, {str(secrets_on_host["other_part"])!r}]
stop = False
def swap():
    i = 0
    while not stop:
        try:
            os.symlink(targets[i % 2], outputs + "/link"); os.rename(outputs + "/link", d)
        except OSError:
            pass
        try:
            os.rename(d, outputs + "/gone"); os.unlink(outputs + "/gone")
        except OSError:
            pass
        try:
            os.rename(outputs + "/real", d); os.rename(d, outputs + "/real")
        except OSError:
            pass
        i += 1
t = threading.Thread(target=swap); t.start()
replies = []
deadline = time.time() + 20
n = 0
while time.time() < deadline and n < 150:
    for name in ("rows.csv", "part-0.parquet"):
        op = "request" if n % 10 == 0 else "preview"
        replies.append(raw({{"op": op, "project": {main!r}, "paths": [d + "/" + name], "purpose": "race"}}))
    n += 1
stop = True; t.join()
text = json.dumps(replies)
marker = {secrets_on_host["other_marker"]!r}
print(json.dumps({{"calls": len(replies), "ok": sum(r.get("ok", False) for r in replies),
                  "leak_quarantine": "SECRET-QUARANTINE" in text, "leak_other": marker in text,
                  "kinds": sorted({{r.get("kind", "") for r in replies}})}}))
"""
    res = chen.kernel_json(code, timeout=180)
    assert res["calls"] >= 20
    assert not res["leak_quarantine"] and not res["leak_other"], res
    assert "UnsafePath" in res["kinds"] or "PathRefused" in res["kinds"], res
    # Nothing of either secret was staged into an export request either.
    exports = hub.settings.home / "exports"
    for path in exports.rglob("*") if exports.exists() else []:
        if path.is_file():
            data = path.read_bytes()
            assert b"SECRET-QUARANTINE" not in data and secrets_on_host["other_marker"].encode() not in data, path
    tmp = hub.settings.tmp_dir
    assert not any(p.name.startswith("export-stage-") for p in tmp.iterdir()) if tmp.exists() else True


def test_export_service_is_bound_to_the_servers_project_and_the_callers_files(hub, chen, secrets_on_host):
    main, other = _main(hub, chen), hub.projects["other"]
    other_scratch = hub.settings.projects_dir / other / "scratch"
    other_scratch.mkdir(exist_ok=True)
    (other_scratch / "t.csv").write_text(secrets_on_host["other_marker"] + ",30\n")
    lin_file = hub.settings.projects_dir / main / "scratch" / "lin.mei" / "notes.csv"
    code = SOCKET_CLIENT + f"""
res = {{}}
res["other_project"] = raw({{"op": "preview", "project": {other!r}, "paths": [{str(other_scratch / "t.csv")!r}]}})
res["other_scratch"] = raw({{"op": "preview", "project": {main!r}, "paths": [{str(other_scratch / "t.csv")!r}]}})
res["member_file"] = raw({{"op": "preview", "project": {main!r}, "paths": [{str(lin_file)!r}]}})
res["no_project_named"] = raw({{"op": "whoami"}})
print(json.dumps(res))
"""
    res = chen.kernel_json(code)
    assert res["other_project"]["ok"] is False and res["other_project"]["kind"] == "ProjectMismatch"
    assert res["other_scratch"]["ok"] is False and "outside" in res["other_scratch"]["error"]
    assert res["member_file"]["ok"] is False and "another user" in res["member_file"]["error"]
    text = json.dumps(res)
    assert "SECRET-QUARANTINE" not in text and secrets_on_host["other_marker"] not in text
    assert res["no_project_named"]["project"] == main and res["no_project_named"]["username"] == "chen.wei"
    with session_scope(hub.settings) as s:
        denied = s.execute(
            select(AuditEntry.details).where(AuditEntry.action == "export.service", AuditEntry.actor == "chen.wei")
        ).scalars().all()
    assert any("ProjectMismatch" in str(d) for d in denied)


def test_export_service_cannot_be_wedged_by_special_files_or_bad_requests(hub, chen):
    _main(hub, chen)
    code = SOCKET_CLIENT + """
import threading, time
outputs = os.environ["ENCLAVE_SCRATCH"] + "/outputs"
fifo = outputs + "/pipe.csv"
if not os.path.exists(fifo):
    os.mkfifo(fifo)
res = {}
t0 = time.time()
res["fifo"] = raw({"op": "preview", "paths": [fifo]})
res["fifo_seconds"] = time.time() - t0
try:
    os.mknod(outputs + "/dev", 0o600 | 0o020000, os.makedev(1, 3))
    res["mknod"] = "made"
except OSError as exc:
    res["mknod"] = type(exc).__name__
# A client that connects and never sends a line does not hold others up.
idle = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM); idle.connect(os.environ["ENCLAVE_EXPORT_SOCKET"])
res["oversized"] = raw(None, line=b"{" + b" " * (2 * 1024 * 1024) + b"}\\n")
res["malformed"] = raw(None, line=b"this is not json\\n")
res["not_a_list"] = raw({"op": "preview", "paths": "/etc/passwd"})
t0 = time.time()
res["whoami"] = raw({"op": "whoami"})
res["whoami_seconds"] = time.time() - t0
idle.close()
print(json.dumps(res))
"""
    res = chen.kernel_json(code)
    assert res["fifo"]["ok"] is False and res["fifo_seconds"] < 10, res
    assert res["mknod"] == "PermissionError"
    for key in ("oversized", "malformed", "not_a_list"):
        assert res[key]["ok"] is False, (key, res[key])
    assert res["whoami"]["ok"] is True and res["whoami_seconds"] < 10


def test_a_kernel_cannot_take_over_the_servers_socket(hub, chen):
    _main(hub, chen)
    code = r"""
import glob, json, os, socket, threading
res = {}
folders = glob.glob("/run/enclave-hub/*")
res["folders"] = len(folders)
shared = folders[0]
res["server_folder"] = sorted(os.listdir(shared + "/server"))
try:
    os.unlink(shared + "/hub-api.sock"); res["unlink_hub_api"] = "unlinked"
except OSError as exc:
    res["unlink_hub_api"] = type(exc).__name__
try:
    open(shared + "/planted", "w"); res["plant"] = "planted"
except OSError as exc:
    res["plant"] = type(exc).__name__
# An impostor server where the real one first listened.
path = shared + "/server/server.sock"
if os.path.exists(path):
    os.unlink(path)
impostor = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
impostor.bind(path); impostor.listen(16)
def serve():
    while True:
        try:
            conn, _ = impostor.accept()
        except OSError:
            return
        conn.recv(65536)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\nConnection: close\r\n\r\nIMPOSTOR")
        conn.close()
threading.Thread(target=serve, daemon=True).start()
import builtins; builtins._enclave_impostor = impostor
print(json.dumps(res))
"""
    res = chen.kernel_json(code)
    assert res["folders"] == 1  # only its own server's folder is visible
    assert res["server_folder"] == []  # the real socket was moved out of reach at start
    assert res["unlink_hub_api"] == "PermissionError" and res["plant"] == "PermissionError"
    base = f"{hub.url}/user/chen.wei/"
    # The owner still reaches the real server; the impostor is reached by nobody.
    status = chen.api("GET", "status")
    assert status.status_code == 200 and "IMPOSTOR" not in status.text and "kernels" in status.json()
    # Nobody signed in gets nothing but the way to the hub's login.
    anon = requests.get(base + "api/contents/extract", timeout=30, allow_redirects=False)
    assert anon.status_code == 403 and "IMPOSTOR" not in anon.text
    page = requests.get(base + "lab", timeout=30, allow_redirects=False)
    assert page.status_code in (302, 303) and "/hub/" in page.headers["Location"]
    with_bad_token = requests.get(base + "api/contents", headers={"Authorization": "token forged"}, timeout=30)
    assert with_bad_token.status_code == 403


def test_no_data_crosses_projects_through_tmp_shm_or_ipc(hub, chen):
    main, other = hub.projects["main"], hub.projects["other"]
    write = r"""
import ctypes, json, os
libc = ctypes.CDLL(None, use_errno=True)
libc.shmat.restype = ctypes.c_void_p
res = {}
for p in ("/tmp/carry", "/var/tmp/carry", "/dev/shm/carry"):
    open(p, "w").write("PROJECT-MAIN-DATA")
shm = libc.shmget(0x5EC12E7, 4096, 0o1666)  # IPC_CREAT | 0666
res["shmget"] = shm
if shm >= 0:
    addr = libc.shmat(shm, None, 0)
    ctypes.memmove(addr, b"PROJECT-MAIN-DATA", 17)
def fill(path):
    try:
        with open(path, "wb") as fh:
            for _ in range(64):
                fh.write(b"\0" * (1 << 20)); fh.flush()
        return "wrote 64 MiB"
    except OSError as exc:
        return type(exc).__name__
    finally:
        os.remove(path)
res["tmp_quota"] = fill("/tmp/big")
res["shm_quota"] = fill("/dev/shm/big")
print(json.dumps(res))
"""
    chen.ensure_server(main)
    res = chen.kernel_json(write)
    assert res["shmget"] >= 0  # System V shared memory works inside the sandbox...
    # Beyond the policy's sizes (tests: 8 and 4 MiB) writes fail; the host disk is not reachable.
    assert res["tmp_quota"] == "OSError" and res["shm_quota"] == "OSError", res
    chen.ensure_server(other)
    try:
        read = r"""
import ctypes, json, os
libc = ctypes.CDLL(None, use_errno=True)
res = {p: os.path.exists(p) for p in ("/tmp/carry", "/var/tmp/carry", "/dev/shm/carry")}
res["shmget"] = libc.shmget(0x5EC12E7, 4096, 0)
res["shm_errno"] = ctypes.get_errno()
print(json.dumps(res))
"""
        after = chen.kernel_json(read)
    finally:
        chen.ensure_server(main)
    assert after["/tmp/carry"] is False and after["/var/tmp/carry"] is False and after["/dev/shm/carry"] is False
    assert after["shmget"] == -1 and after["shm_errno"] == 2  # ENOENT: ...and none of it crosses


def test_a_kernel_sees_only_its_own_sandbox(hub, chen):
    _main(hub, chen)
    other = hub.projects["other"]
    lin = Researcher(hub, "lin.mei")
    lin.ensure_server(other)  # another researcher's server, running meanwhile
    try:
        code = f"""
import json, os
res = {{}}
pids = [p for p in os.listdir("/proc") if p.isdigit()]
cmdlines = []
for p in pids:
    try:
        cmdlines.append(open(f"/proc/{{p}}/cmdline", "rb").read().replace(b"\\0", b" ").decode())
    except OSError:
        pass
res["pids"] = len(pids)
res["sees_lin"] = any("lin.mei" in c for c in cmdlines)
res["sees_other_project"] = any({other!r} in c for c in cmdlines)
home = {str(hub.settings.home)!r}
res["visible"] = {{p: os.path.exists(p) for p in (home + "/vault", home + "/keys", home + "/state.db",
    home + "/quarantine", home + "/hub", home + "/projects/" + {other!r}, "/etc/shadow", "/root/.bashrc",
    "/home", "/var/lib/dpkg", "/work/main/.git", "/usr/bin/python3" )}}
res["passwd"] = [l.split(":")[0] for l in open("/etc/passwd")]
res["hostname"] = open("/etc/hostname").read().strip()
status = dict(l.split(":", 1) for l in open("/proc/self/status") if ":" in l)
res["caps"] = [status[k].strip() for k in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")]
res["no_new_privs"] = status["NoNewPrivs"].strip()
res["seccomp"] = status["Seccomp"].strip()
res["uid"] = os.getuid()
print(json.dumps(res))
"""
        res = chen.kernel_json(code)
    finally:
        lin.stop()
    assert res["pids"] <= 8, res
    assert not res["sees_lin"] and not res["sees_other_project"]
    hidden = {k: v for k, v in res["visible"].items() if k != "/usr/bin/python3"}
    assert not any(hidden.values()), hidden
    assert res["visible"]["/usr/bin/python3"]  # the read-only system is there
    assert set(res["passwd"]) == {"root", "nobody", isolation.unix_user_name(hub.settings, "chen.wei")}
    assert res["hostname"] == "enclave"
    assert all(int(c, 16) == 0 for c in res["caps"]) and res["no_new_privs"] == "1" and res["seccomp"] == "2"
    assert res["uid"] != 0


def test_a_kernel_cannot_gain_privileges_or_new_namespaces(hub, chen):
    _main(hub, chen)
    code = r"""
import ctypes, json, os, socket, subprocess
libc = ctypes.CDLL(None, use_errno=True)
res = {}
def call(name, *args):
    r = getattr(libc, name)(*args)
    return [r, ctypes.get_errno()]
res["ptrace_server"] = call("ptrace", 16, 2, 0, 0)  # PTRACE_ATTACH
res["ptrace_init"] = call("ptrace", 16, 1, 0, 0)
for p in ("/proc/2/environ", "/proc/2/mem", "/proc/1/environ", "/proc/2/maps"):
    try:
        open(p, "rb").read(16); res[p] = "read"
    except OSError as exc:
        res[p] = type(exc).__name__
res["unshare_user"] = call("unshare", 0x10000000)
res["unshare_net"] = call("unshare", 0x40000000)
res["clone3"] = call("syscall", 435, 0, 0)
res["mount"] = call("mount", b"none", b"/tmp", b"tmpfs", 0, None)
res["keyctl"] = call("syscall", 250, 0, 0, 0, 0)
res["bpf"] = call("syscall", 321, 0, 0, 0)
res["io_uring"] = call("syscall", 425, 1, 0)
res["userfaultfd"] = call("syscall", 323, 0)
res["perf"] = call("syscall", 298, 0, 0, -1, -1, 0)
for family, name in ((40, "vsock"), (17, "packet"), (38, "alg")):
    try:
        socket.socket(family, socket.SOCK_STREAM if family != 17 else socket.SOCK_RAW).close(); res[name] = "opened"
    except OSError as exc:
        res[name] = exc.errno
def run(*cmd):
    return subprocess.run(cmd, capture_output=True, text=True, input="", timeout=20)
res["su"] = run("su", "-c", "id -u", "root").stdout
res["unshare_binary"] = run("unshare", "-U", "-r", "id", "-u").returncode
res["euid"] = os.geteuid()
print(json.dumps(res))
"""
    res = chen.kernel_json(code)
    eperm, enosys, eafnosupport = 1, 38, 97
    for key in ("ptrace_server", "ptrace_init", "unshare_user", "unshare_net", "mount", "keyctl", "bpf", "io_uring",
                "userfaultfd", "perf"):
        assert res[key][0] == -1 and res[key][1] == eperm, (key, res[key])
    assert res["clone3"] == [-1, enosys]
    for p in ("/proc/2/environ", "/proc/2/mem", "/proc/1/environ", "/proc/2/maps"):
        assert res[p] == "PermissionError", (p, res[p])
    assert res["vsock"] == eafnosupport and res["alg"] == eafnosupport and res["packet"] != "opened"
    assert "0" not in res["su"].split() and res["unshare_binary"] != 0 and res["euid"] != 0


def test_no_network_or_host_service_is_reachable(hub, chen, secrets_on_host):
    _main(hub, chen)
    proxy_api = next(
        line.split("127.0.0.1:")[1].strip('"\n ')
        for line in (hub.settings.home / "hub" / "jupyterhub_config.py").read_text().splitlines()
        if line.startswith("c.ConfigurableHTTPProxy.api_url")
    )
    hub_port = hub.api_url.split(":")[-1].split("/")[0]
    code = f"""
import json, os, socket, urllib.request, urllib.error
res = {{}}
def tcp(host, port, family=socket.AF_INET):
    s = socket.socket(family, socket.SOCK_STREAM); s.settimeout(3)
    try:
        s.connect((host, int(port))); return "connected"
    except OSError as exc:
        return type(exc).__name__
    finally:
        s.close()
res["proxy_api"] = tcp("127.0.0.1", {proxy_api!r})
res["ipv6_loopback"] = tcp("::1", {secrets_on_host["ipv6_port"]}, socket.AF_INET6)
res["outside"] = tcp("1.1.1.1", 443)
try:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect("\\0enclave-attack-host"); res["abstract"] = "connected"
except OSError as exc:
    res["abstract"] = type(exc).__name__
def hub_api(method, path, body=None):
    req = urllib.request.Request("http://127.0.0.1:{hub_port}" + path, method=method, data=body,
                                 headers={{"Authorization": "token " + os.environ.get("JUPYTERHUB_API_TOKEN", "x")}})
    try:
        return urllib.request.urlopen(req, timeout=10).status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError as exc:
        return type(exc).__name__
res["create_token"] = hub_api("POST", "/hub/api/users/chen.wei/tokens", b'{{"note": "DATA"}}')
res["list_users"] = hub_api("GET", "/hub/api/users")
res["stop_server"] = hub_api("DELETE", "/hub/api/users/chen.wei/server")
res["hub_pages"] = hub_api("GET", "/hub/token")
res["proxy_routes"] = hub_api("GET", "/api/routes")
res["env_secrets"] = sorted(k for k in os.environ if "TOKEN" in k or "SECRET" in k)
print(json.dumps(res))
"""
    res = chen.kernel_json(code)
    assert res["proxy_api"] != "connected" and res["ipv6_loopback"] != "connected" and res["outside"] != "connected"
    assert res["abstract"] != "connected"
    for key in ("create_token", "list_users", "stop_server", "hub_pages", "proxy_routes"):
        assert res[key] == 403, (key, res[key])
    assert res["env_secrets"] == []
    assert secrets_on_host["hits"] == []
    assert chen.server() is not None  # the stop request never reached the hub


def test_downloads_through_the_browser_are_screened_by_real_type_and_size(hub, chen):
    _main(hub, chen)
    code = r"""
import base64, io, json, os
import nbformat, polars as pl
from PIL import Image
ws = os.environ["ENCLAVE_SCRATCH"]
pl.DataFrame({"ID": ["x"] * 100}).write_parquet(ws + "/outputs/data.parquet")
open(ws + "/outputs/fake.png", "wb").write(b"\x89PNG\r\n\x1a\n" + open(ws + "/outputs/data.parquet", "rb").read())
buf = io.BytesIO(); Image.new("RGB", (20, 20), "red").save(buf, "PNG")
open(ws + "/outputs/real.png", "wb").write(buf.getvalue() + b"TRAILING-DATA" * 100)
with open(ws + "/outputs/people.csv", "w") as fh:
    fh.write("id,sex,month\n")
    for i in range(60000):
        fh.write(f"{i:022d},F,1970-01-01\n")
nb = nbformat.v4.new_notebook()
cell = nbformat.v4.new_code_cell("x")
cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="ROW\n" * 800000)]
nb.cells = [cell]
nbformat.write(nb, ws + "/kernel_written.ipynb")
ext = "/tmp/ipython/labextensions/evil-ext"  # a folder the kernel can write (the data folder is not)
os.makedirs(ext + "/static", exist_ok=True)
build = {"load": "static/remoteEntry.js", "extension": "./extension"}
json.dump({"name": "evil-ext", "version": "1.0.0", "jupyterlab": {"_build": build}}, open(ext + "/package.json", "w"))
open(ext + "/static/remoteEntry.js", "w").write("/* EVIL-EXTENSION */")
spec = "/tmp/ipython/kernels/evil"  # IPython's folder: jupyter_client would look here
os.makedirs(spec, exist_ok=True)
kernel = {"argv": ["python3", "-c", "1"], "display_name": "evil", "language": "python"}
json.dump(kernel, open(spec + "/kernel.json", "w"))
open(spec + "/x.html", "w").write("<script>EVIL-KERNELSPEC</script>")
try:
    os.makedirs("/var/lib/jupyter/labextensions/evil-ext")
    data_dir = "writable"
except OSError as exc:
    data_dir = type(exc).__name__
settings = ws + "/.jupyter/lab/user-settings/@jupyterlab/apputils-extension"
os.makedirs(settings, exist_ok=True)
open(settings + "/themes.jupyterlab-settings", "w").write(json.dumps({"theme": "JupyterLab Light", "x": "S" * 200000}))
print(json.dumps({"ok": True, "data_dir": data_dir}))
"""
    made = chen.kernel_json(code)
    assert made["data_dir"] == "PermissionError"
    fake = chen.api("GET", "contents/outputs/fake.png", params={"format": "base64", "type": "file"})
    assert fake.status_code == 403 and "PAR1" not in fake.text
    real = chen.api("GET", "contents/outputs/real.png", params={"format": "base64", "type": "file"})
    assert real.status_code == 200
    import base64

    assert b"TRAILING-DATA" not in base64.b64decode(real.json()["content"])
    big_text = chen.api("GET", "contents/outputs/people.csv", params={"format": "text", "type": "file"})
    assert big_text.status_code == 403 and "1970-01-01" not in big_text.text
    nb = chen.api("GET", "contents/kernel_written.ipynb")
    assert nb.status_code == 200 and len(nb.content) < 600 * 1024
    assert "output removed by the enclave" in nb.text
    parquet = chen.api("GET", "contents/extract/H_NHI_OPDTE/year=2020/part-0.parquet", params={"format": "base64"})
    assert parquet.status_code == 403
    for route in ("files/outputs/people.csv", "nbconvert/html/kernel_written.ipynb?download=true",
                  "api/nbconvert/html", "view/outputs/people.csv", "lab/extensions/evil-ext/static/remoteEntry.js",
                  "kernelspecs/evil/x.html"):
        r = chen.api_raw("GET", route)
        assert r.status_code in (403, 404), (route, r.status_code)
        assert "EVIL" not in r.text and "1970-01-01" not in r.text
    lab = chen.api_raw("GET", "lab")
    assert lab.status_code == 200 and "evil-ext" not in lab.text
    assert "default-src 'self'" in lab.headers.get("Content-Security-Policy", "")
    specs = chen.api("GET", "kernelspecs").json()
    assert set(specs["kernelspecs"]) == {"python3"}
    assert chen.api("POST", "kernels", json={"name": "evil"}).status_code >= 400
    theme = chen.api_raw("GET", "lab/api/settings/@jupyterlab/apputils-extension:themes")
    assert theme.status_code == 200 and "SSSSSSSSSS" not in theme.text


def test_every_kind_of_kernel_message_is_capped_and_rate_limited(hub, chen):
    _main(hub, chen)
    result = chen.execute("'R' * 3_000_000", timeout=90)
    results = [m for m in result["messages"] if m["msg_type"] == "execute_result"]
    assert results and len(json.dumps(results[0]["content"])) < 8192
    assert "output removed by the enclave" in results[0]["content"]["data"]["text/plain"]
    shown = chen.execute("from IPython.display import HTML, display\ndisplay(HTML('<b>' + 'D' * 3_000_000 + '</b>'))")
    displays = [m for m in shown["messages"] if m["msg_type"] == "display_data"]
    assert displays and "DDDDDDDDDD" not in json.dumps(displays)
    asked = chen.execute("x = 1", user_expressions={"leak": "'U' * 3_000_000"})
    reply = next(m for m in asked["messages"] if m["msg_type"] == "execute_reply")
    assert "UUUUUUUUUU" not in json.dumps(reply) and reply["content"]["user_expressions"]["leak"]["status"] == "error"
    started = time.monotonic()
    flood = chen.execute("import sys\nfor i in range(300):\n    sys.stdout.write('F' * 100_000 + '\\n')", timeout=120)
    elapsed = time.monotonic() - started
    # 30 MB left the kernel; the browser got at most the policy's rate (512 KiB/s here) over the
    # run, plus one window of slack.
    assert flood["status"] == "ok"
    assert flood["frame_bytes"] < 512 * 1024 * (elapsed + 4), (flood["frame_bytes"], elapsed)
    # Display messages are not counted by jupyter-server's own rate limit (it counts stream bytes
    # only): the gateway holds them back by itself.
    started = time.monotonic()
    shown = chen.execute(
        "from IPython.display import display\n"
        "for i in range(200):\n    display({'text/plain': 'P' * 100_000}, raw=True)",
        timeout=120,
    )
    elapsed = time.monotonic() - started
    sent = sum(len(json.dumps(m)) for m in shown["messages"] if m["msg_type"] == "display_data")
    assert shown["status"] == "ok" and sent < 512 * 1024 * (elapsed + 4), (sent, elapsed)
    assert "output held back by the enclave" in json.dumps(shown["messages"])


def test_identifiers_never_come_in_through_saves_uploads_or_code(hub, chen):
    _main(hub, chen)

    def notebook(**parts) -> dict:
        cell = {"cell_type": "code", "source": parts.get("source", "x = 1"), "metadata": parts.get("cell_meta", {}),
                "outputs": parts.get("outputs", []), "execution_count": None}
        md = {"cell_type": "markdown", "source": "notes", "metadata": {},
              "attachments": parts.get("attachments", {})}
        return {"type": "notebook", "content": {"cells": [cell, md], "metadata": parts.get("meta", {}),
                                                "nbformat": 4, "nbformat_minor": 5}}

    attempts = {
        "notebook metadata": notebook(meta={"patient": NATIONAL_ID}),
        "cell metadata": notebook(cell_meta={"tags": [NATIONAL_ID]}),
        "attachment": notebook(attachments={"a.txt": {"text/plain": __import__("base64").b64encode(
            f"id {NATIONAL_ID}".encode()).decode()}}),
        "output at a line start": notebook(outputs=[{"output_type": "stream", "name": "stdout",
                                                     "text": f"rows\n{NATIONAL_ID}\n"}]),
        "lower case in source": notebook(source=f"ids = ['{NATIONAL_ID.lower()}']"),
    }
    for label, model in attempts.items():
        r = chen.api("PUT", f"contents/smuggle_{label.replace(' ', '_')}.ipynb", json=model)
        assert r.status_code == 403, (label, r.status_code, r.text[:200])
    upload = chen.api("PUT", "contents/upload.csv", json={"type": "file", "format": "text",
                                                          "content": f"id,phone\n{NATIONAL_ID},0912-345-678\n"})
    assert upload.status_code == 403
    listing = [c["name"] for c in chen.api("GET", "contents").json()["content"]]
    assert not any(n.startswith(("smuggle_", "upload")) for n in listing)
    code = f"open('smuggled.txt', 'w').write('{NATIONAL_ID}')"
    out = chen.execute(code)
    assert out["status"] == "error" and "EnclaveRefused" in json.dumps(out["messages"])
    assert not (hub.settings.projects_dir / hub.projects["main"] / "scratch" / "chen.wei" / "smuggled.txt").exists()


def test_symlink_and_hard_link_tricks_in_scratch(hub, chen):
    main = _main(hub, chen)
    keys = hub.settings.keys_dir
    code = f"""
import json, os
ws = os.environ["ENCLAVE_SCRATCH"]
res = {{}}
os.remove(ws + "/05_request_export.ipynb")
os.symlink({str(keys / "planted-by-kernel")!r}, ws + "/05_request_export.ipynb")
os.symlink("/etc/shadow", ws + "/shadow-link")
os.symlink({str(keys)!r}, ws + "/keys-link")
open(ws + "/outputs/mine.csv", "w").write("sex,n\\nF,30\\nM,40\\n")
if os.path.exists(ws + "/outputs/hard.csv"):
    os.remove(ws + "/outputs/hard.csv")
os.link(ws + "/outputs/mine.csv", ws + "/outputs/hard.csv")
print(json.dumps({{"ok": True}}))
"""
    assert chen.kernel_json(code)["ok"]
    refused = chen.kernel_json(SOCKET_CLIENT + """
ws = os.environ["ENCLAVE_SCRATCH"]
print(json.dumps(raw({"op": "preview", "paths": [ws + "/outputs/hard.csv"]})))
""")
    assert refused["ok"] is False and "hard link" in refused["error"]
    shadow = os.stat("/etc/shadow")
    keys_owner = os.stat(keys).st_uid
    chen.stop()
    chen.ensure_server(main)  # the hub prepares the workspace again, as root
    assert not (keys / "planted-by-kernel").exists()
    assert os.stat("/etc/shadow").st_uid == shadow.st_uid and os.stat(keys).st_uid == keys_owner == 0
    link = hub.settings.projects_dir / main / "scratch" / "chen.wei" / "05_request_export.ipynb"
    assert link.is_symlink()  # left as the researcher made it, never written through


def test_gateway_refuses_malformed_traffic_and_keeps_serving(hub, chen):
    _main(hub, chen)
    bad_json = requests.put(f"{hub.url}/user/chen.wei/api/contents/x.ipynb", data=b"{not json", timeout=30,
                            headers={"Authorization": f"token {chen.token}", "Content-Type": "application/json"})
    assert bad_json.status_code == 400
    huge = chen.api("PUT", "contents/huge.txt", json={"type": "file", "format": "text", "content": "y" * (3 << 20)})
    assert huge.status_code in (403, 413)
    import websocket

    kernel = chen.api("POST", "kernels", json={"name": "python3"}).json()["id"]
    ws = websocket.create_connection(
        hub.url.replace("http://", "ws://") + f"/user/chen.wei/api/kernels/{kernel}/channels",
        header=[f"Authorization: token {chen.token}"], timeout=30)
    ws.send("this is not a message")
    ws.send_binary(b"\xff\xff\xff\xff" + b"\0" * 8)
    ws.send(json.dumps({"header": {"msg_type": "kernel_info_request", "msg_id": "k1", "session": "s",
                                   "username": "u", "version": "5.3"}, "parent_header": {}, "metadata": {},
                        "content": {}, "channel": "shell"}))
    deadline = time.monotonic() + 30
    got = None
    while time.monotonic() < deadline and got is None:
        msg = json.loads(ws.recv())
        if msg["msg_type"] == "kernel_info_reply":
            got = msg
    ws.close()
    assert got is not None and got["content"]["status"] == "ok"


def test_two_enclave_homes_on_one_host_never_touch_each_others_objects(hub, chen, tmp_path_factory):
    main = _main(hub, chen)
    other_home = start_hub(tmp_path_factory.mktemp("second-home"), now=MONDAY_10)
    try:
        twin = Researcher(other_home, "chen.wei")
        twin.ensure_server(other_home.projects["main"])
        uid_here = chen.kernel_json("import os, json; print(json.dumps({'uid': os.getuid()}))")["uid"]
        uid_there = twin.kernel_json("import os, json; print(json.dumps({'uid': os.getuid()}))")["uid"]
        assert uid_here != uid_there
        assert isolation.unix_user_name(hub.settings, "chen.wei") != isolation.unix_user_name(
            other_home.settings, "chen.wei")
        assert isolation.project_group_name(hub.settings, main) != isolation.project_group_name(
            other_home.settings, other_home.projects["main"])
        twin.stop()
    finally:
        other_home.procs.stop()
        isolation.release_all(other_home.settings)
    # Stopping the other home's hub and server left this one's server running and isolated.
    assert chen.server() is not None and chen.server()["ready"]
    assert chen.kernel_json("import json, socket; print(json.dumps({'i': [n for _, n in socket.if_nameindex()]}))") == {
        "i": ["lo"]}
    cgroup = Path("/sys/fs/cgroup/memory/enclave") / isolation.server_name(hub.settings, "chen.wei", main)
    assert cgroup.is_dir()


def test_refusals_are_audited_as_the_researcher(hub, chen):
    _main(hub, chen)
    chen.api_raw("GET", "files/anything.csv")
    chen.kernel_json("import os, json; open(os.environ['ENCLAVE_SCRATCH'] + '/outputs/n.png', 'wb').write("
                     "b'\\x89PNG\\r\\n\\x1a\\nnot an image'); print(json.dumps({}))")
    assert chen.api("GET", "contents/outputs/n.png", params={"format": "base64"}).status_code == 403
    assert chen.api("PUT", "contents/u.txt", json={"type": "file", "format": "text",
                                                   "content": NATIONAL_ID}).status_code == 403
    with session_scope(hub.settings) as s:
        rows = s.execute(select(AuditEntry.action, AuditEntry.outcome).where(AuditEntry.actor == "chen.wei")).all()
    assert ("workspace.route", "denied") in rows
    assert ("workspace.download", "denied") in rows and ("workspace.upload", "denied") in rows
