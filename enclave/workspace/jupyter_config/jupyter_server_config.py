"""Server configuration of every workspace server (root-owned: ``JUPYTER_CONFIG_DIR``).

It runs in the server process before anything of the researcher's exists, and takes the
server's secrets out of reach of the kernels it will start:

* the Hub API token (``JUPYTERHUB_API_TOKEN``) and the OAuth cookie secret the spawner chose
  (``ENCLAVE_COOKIE_SECRET``) move from the environment, which every kernel inherits, into the
  configuration, which stays in this process;
* the process becomes non-dumpable, so a kernel (same Unix user) can read neither its memory nor
  ``/proc/<pid>/environ``, where the original environment would still be;
* kernel specs and lab extensions (and their themes) come only from the installation: the
  user's folders are ones the kernel can write (IPython's under ``/tmp``), and the server would
  list, serve and run what is there (a lab extension's script runs in every page); Jupyter's
  user data folder is an empty read-only one of the sandbox; notebook signatures stay in
  memory, so a kernel cannot mark a notebook trusted;
* JupyterLab's extension manager is read-only (it would install packages).
"""

import ctypes
import os
import sys

c = get_config()  # type: ignore[name-defined]  # noqa: F821

_token = os.environ.pop("JUPYTERHUB_API_TOKEN", "")
os.environ.pop("JPY_API_TOKEN", None)
if _token:
    c.HubAuth.api_token = _token
_secret = os.environ.pop("ENCLAVE_COOKIE_SECRET", "")
if _secret:
    c.ServerApp.cookie_secret = _secret.encode("ascii")

_PR_SET_DUMPABLE = 4
if ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
    raise SystemExit("enclave: cannot make the workspace server non-dumpable; refusing to start")

_shared = os.path.join(sys.prefix, "share", "jupyter")
c.ServerApp.kernel_spec_manager_class = "enclave.workspace.kernelspecs.InstalledKernelSpecManager"
c.KernelSpecManager.allowed_kernelspecs = {"python3"}
c.LabApp.labextensions_path = [os.path.join(_shared, "labextensions")]
c.LabApp.extra_labextensions_path = []
c.NotebookNotary.db_file = ":memory:"
c.NotebookNotary.secret = os.urandom(32)
c.LabApp.extension_manager = "readonly"
