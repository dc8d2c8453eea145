"""The Jupyter server extension that closes every way out of the workspace but the export
request (DESIGN §5, issue 7 "No other way out").

Server side, whatever the browser does:

* ``/files/…``, ``/view/…``, ``/nbconvert/…``, ``/api/nbconvert``, ``/directories/…`` and
  archive routes answer 403 (:class:`RefusedHandler`), so no file is downloaded or exported;
* the contents API (:class:`EnclaveContentsManager`) never returns the bytes of anything
  under the extract, and screens every model it saves and every model it returns with
  :mod:`enclave.workspace.screening` (the rules the hub's gateway applies too): uploads and
  saves only of code, text and notebooks, size-capped and scanned for identifiers; to the
  browser only images that decode (re-encoded as PNG), text up to ``max_text_kb`` and
  notebooks with outputs over ``max_output_cell_kb`` replaced by a note — whoever wrote them;
* the IOPub data rate is limited to ``max_output_cell_kb`` per second;
* terminals follow the policy; JupyterLab's download/export/copy-output plugins are
  disabled through the page config (``jupyter_config/labconfig/page_config.json``, also
  forced by a page-config hook so a user's config cannot bring them back).

Values come from :class:`WorkspaceGuard` traitlets, which
:func:`enclave.workspace.singleuser.server_args` fills from the policies.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from jupyter_server.services.contents.largefilemanager import AsyncLargeFileManager
from jupyter_server.utils import url_path_join
from pydantic import ValidationError
from tornado import web
from traitlets import Bool, Integer, Unicode
from traitlets.config import Config, Configurable

from enclave.errors import PolicyError, ScreeningRefused
from enclave.workspace import screening
from enclave.workspace.policy import WorkspacePolicy

#: The single-user server's ``JUPYTER_CONFIG_DIR`` (root-owned, so a researcher cannot add a
#: config file that unloads the guard). Holds ``labconfig/page_config.json`` and the
#: ``migrated`` marker that stops jupyter_core from trying to migrate old config into it.
JUPYTER_CONFIG_DIR = Path(__file__).resolve().parent / "jupyter_config"
PAGE_CONFIG_FILE = JUPYTER_CONFIG_DIR / "labconfig" / "page_config.json"

#: Route patterns (after the base URL) that never answer in a workspace, and why.
REFUSED_ROUTES: dict[str, str] = {
    r"/files/.*": "file downloads are disabled in the enclave",
    r"/view/.*": "file downloads are disabled in the enclave",
    r"/nbconvert/.*": "notebook export (nbconvert) is disabled in the enclave",
    r"/api/nbconvert.*": "notebook export (nbconvert) is disabled in the enclave",
    r"/directories/.*": "archive downloads are disabled in the enclave",
    r"/api/archive.*": "archive downloads are disabled in the enclave",
    r"/extract-archive/.*": "archive uploads are disabled in the enclave",
}


def disabled_lab_plugins() -> list[str]:
    """The JupyterLab plugin ids the workspace disables (from ``page_config.json``)."""
    data = json.loads(PAGE_CONFIG_FILE.read_text(encoding="utf-8"))
    # The config-manager form is {plugin id: true}; JupyterLab merges it with other levels.
    return [name for name, off in data["disabledExtensions"].items() if off]


def _refuse(message: str) -> web.HTTPError:
    # The API handler shows log_message verbatim while tornado %-formats it when logging:
    # escape '%' (file names) so neither breaks.
    return web.HTTPError(403, message.replace("%", "%%"))


class WorkspaceGuard(Configurable):
    """The workspace's policy values (set by ``server_args`` from ``policies/``)."""

    extract_dir = Unicode(
        "", config=True,
        help="The project's read-only extract. Nothing under it is ever sent to the browser "
             "as file contents. Empty: only the generic rules apply.",
    )
    max_output_cell_kb = Integer(
        512, config=True,
        help="Largest output (KiB) of one notebook cell kept on save; larger outputs are "
             "replaced by a note. Also the IOPub data rate limit (KiB per second).",
    )
    max_upload_kb = Integer(512, config=True,
                            help="Largest upload or plain-file save (KiB) through the browser.")
    max_notebook_kb = Integer(4096, config=True,
                              help="Largest notebook save (KiB) after output capping.")
    max_image_kb = Integer(2048, config=True,
                           help="Largest image (KiB) the browser may receive as base64.")
    max_image_megapixels = Integer(25, config=True,
                                   help="Largest image (million pixels) decoded to be shown.")
    max_text_kb = Integer(256, config=True,
                          help="Largest text file (KiB) the browser may receive.")
    upload_suffixes = Unicode(
        ".py,.r,.sql,.md,.txt,.ipynb,.csv", config=True,
        help="Comma-separated file suffixes (code and text) that may be uploaded or saved "
             "(a string, so it passes intact on the command line).",
    )
    terminal_enabled = Bool(False, config=True,
                            help="Whether terminals are offered (policy quotas.yaml).")
    scan_uploads = Bool(True, config=True,
                        help="Scan uploads and saves for identifiers (presidio). Security: "
                             "turning this off lets re-identifiable data in.")

    def policy(self) -> WorkspacePolicy:
        """The values as the :class:`WorkspacePolicy` that :mod:`screening` applies.

        Raises
        ------
        PolicyError
            A value is out of range (names the traitlet).
        """
        try:
            return WorkspacePolicy(
                max_output_cell_kb=self.max_output_cell_kb, terminal_enabled=self.terminal_enabled,
                max_upload_kb=self.max_upload_kb, max_notebook_kb=self.max_notebook_kb,
                max_image_kb=self.max_image_kb, max_text_kb=self.max_text_kb,
                max_image_megapixels=self.max_image_megapixels,
                upload_suffixes=tuple(s for s in self.upload_suffixes.split(",") if s.strip()))
        except ValidationError as exc:
            raise PolicyError(f"WorkspaceGuard configuration: {exc}") from exc


class EnclaveContentsManager(AsyncLargeFileManager):
    """Contents manager that refuses data downloads and screens uploads and saves.

    Override points are :meth:`get` and :meth:`save` only; everything else is the stock
    file manager.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.guard = WorkspaceGuard(parent=self.parent, config=self.config)
        self.policy = self.guard.policy()

    # -- reading --------------------------------------------------------------------------
    def _under_extract(self, path: str) -> bool:
        if not self.guard.extract_dir:
            return False
        extract = os.path.realpath(self.guard.extract_dir)
        target = os.path.realpath(self._get_os_path(path))
        return target == extract or target.startswith(extract + os.sep)

    async def get(self, path: str, content: bool = True, type: str | None = None,
                  format: str | None = None, **kwargs: Any) -> dict[str, Any]:
        """Return a model screened for the browser; refuse file contents from the extract."""
        if content and type != "directory" and self._under_extract(path):
            os_path = self._get_os_path(path)
            if not os.path.isdir(os_path):
                raise _refuse(f"{path}: files of the extract are not sent to the browser; "
                              "read them in the kernel with the toolkit (open_project())")
        model = await super().get(path, content=content, type=type, format=format, **kwargs)
        try:
            return screening.screen_egress(model, path=path, policy=self.policy)
        except ScreeningRefused as exc:
            raise _refuse(str(exc)) from exc

    # -- writing --------------------------------------------------------------------------
    async def save(self, model: dict[str, Any], path: str = "") -> dict[str, Any]:
        """Screen the model (type, size, identifiers, output size), then save it."""
        try:
            model = screening.screen_ingress(model, path=path, policy=self.policy,
                                             scan=self.guard.scan_uploads)
        except ScreeningRefused as exc:
            raise _refuse(str(exc)) from exc
        return await super().save(model, path)


class RefusedHandler(web.RequestHandler):
    """Answers every method of a closed route with 403 and a JSON reason."""

    def initialize(self, reason: str) -> None:
        self.reason = reason

    def prepare(self) -> None:
        # Refuse before authentication or routing: the route is closed for everybody.
        self.set_status(403)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"message": f"{self.request.path}: {self.reason}{screening.HOW_TO_EXPORT}",
                                "reason": "enclave"}))


def _page_config_hook(previous: Callable[..., dict[str, Any]] | None
                      ) -> Callable[..., dict[str, Any]]:
    forced = set(disabled_lab_plugins())

    def hook(handler: Any, page_config: dict[str, Any]) -> dict[str, Any]:
        if previous is not None:
            page_config = previous(handler, page_config)
        current = page_config.get("disabledExtensions") or []
        if isinstance(current, dict):
            current = [k for k, v in current.items() if v]
        page_config["disabledExtensions"] = sorted(set(current) | forced)
        return page_config

    return hook


def _link_jupyter_server_extension(serverapp: Any) -> None:
    # Runs before the contents manager and the web app exist: force our classes and limits
    # whatever other configuration says.
    guard = WorkspaceGuard(parent=serverapp)
    serverapp.contents_manager_class = EnclaveContentsManager
    # The server-info and browser-open files would put the server's Hub API token in the
    # runtime folder, which the kernels read (their connection files are there): never write them.
    serverapp.write_server_info_file = lambda: None
    serverapp.write_browser_open_files = lambda: None
    if not guard.terminal_enabled:
        serverapp.terminals_enabled = False
    # Kernel websocket connections are created later with the server's config: rate-limit
    # IOPub data to one maximal cell output per second (averaged over 3 s).
    serverapp.update_config(Config({"ZMQChannelsWebsocketConnection": {
        "limit_rate": True,
        "iopub_data_rate_limit": float(guard.max_output_cell_kb * 1024),
        "rate_limit_window": 3.0,
    }}))


def _load_jupyter_server_extension(serverapp: Any) -> None:
    if not isinstance(serverapp.contents_manager, EnclaveContentsManager):
        # Fail closed: without our contents manager the browser could fetch data files.
        serverapp.log.critical("enclave: contents manager is %s, not EnclaveContentsManager; "
                               "refusing to serve", type(serverapp.contents_manager).__name__)
        sys.exit(3)
    base = serverapp.base_url
    handlers = [(url_path_join(base, pattern), RefusedHandler, {"reason": reason})
                for pattern, reason in REFUSED_ROUTES.items()]
    # add_handlers puts a host rule before the default handlers: ours match first.
    serverapp.web_app.add_handlers(".*$", handlers)
    settings = serverapp.web_app.settings
    settings["page_config_hook"] = _page_config_hook(settings.get("page_config_hook"))
    serverapp.log.info("enclave workspace guard loaded: %d routes refused, terminals %s",
                       len(handlers), "on" if serverapp.terminals_enabled else "off")


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": "enclave.workspace.server_ext"}]
