"""The Jupyter server extension that closes every way out of the workspace but the export
request (DESIGN §5, issue 7 "No other way out").

Server side, whatever the browser does:

* ``/files/…``, ``/view/…``, ``/nbconvert/…``, ``/api/nbconvert``, ``/directories/…`` and
  archive routes answer 403 (:class:`RefusedHandler`), so no file is downloaded or exported;
* the contents API (:class:`EnclaveContentsManager`) never returns the bytes of anything
  under the extract, and returns base64 bytes only for small images (PNG/JPEG/GIF by magic
  bytes) — a renamed Parquet file is caught by its contents, not its name;
* uploads and saves are limited to code and text types and a size, decoded as UTF-8 and
  scanned for identifiers (``disclosure_review.identifiers.scan_text``): no re-identifiable
  data comes in;
* notebook outputs larger than ``max_output_cell_kb`` are replaced by a note on save, and
  the IOPub data rate is limited to the same size per second;
* terminals follow the policy; JupyterLab's download/export/copy-output plugins are
  disabled through the page config (``jupyter_config/labconfig/page_config.json``, also
  forced by a page-config hook so a user's config cannot bring them back).

Values come from :class:`WorkspaceGuard` traitlets, which
:func:`enclave.workspace.singleuser.server_args` fills from the policies.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from jupyter_server.services.contents.largefilemanager import AsyncLargeFileManager
from jupyter_server.utils import url_path_join
from tornado import web
from traitlets import Bool, Integer, Unicode
from traitlets.config import Config, Configurable

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
_HOW_TO_EXPORT = ("; outputs leave only through an export request "
                  "(toolkit request_export(...) or `enclave export request`)")

# Identifier kinds that refuse a notebook's *outputs*: the kernel only sees pseudonymised
# enclave data, so outputs legitimately hold dates and codes, never these.
_STRONG_ENTITIES = frozenset({"TW_NATIONAL_ID", "TW_RESIDENT_CERTIFICATE", "TW_PHONE",
                              "CHINESE_PERSON_NAME"})
_IMAGE_MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF87a", b"GIF89a")


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


def _scan(text: str, *, file: str, part: str, entities: frozenset[str] | None = None) -> None:
    from disclosure_review.identifiers import scan_text  # presidio: load only when needed

    hits = [h for h in scan_text(text) if entities is None or h.entity in entities]
    if hits:
        kinds = sorted({h.entity for h in hits})
        raise _refuse(
            f"{file}: {part} holds what looks like identifiers ({', '.join(kinds)}; "
            f"{len(hits)} hit(s)); re-identifiable data may not be brought into the enclave"
        )


class EnclaveContentsManager(AsyncLargeFileManager):
    """Contents manager that refuses data downloads and screens uploads and saves.

    Override points are :meth:`get` and :meth:`save` only; everything else is the stock
    file manager.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.guard = WorkspaceGuard(parent=self.parent, config=self.config)

    # -- reading --------------------------------------------------------------------------
    def _under_extract(self, path: str) -> bool:
        if not self.guard.extract_dir:
            return False
        extract = os.path.realpath(self.guard.extract_dir)
        target = os.path.realpath(self._get_os_path(path))
        return target == extract or target.startswith(extract + os.sep)

    async def get(self, path: str, content: bool = True, type: str | None = None,
                  format: str | None = None, **kwargs: Any) -> dict[str, Any]:
        """Return a model; refuse file contents from the extract and non-image bytes."""
        if content and type != "directory" and self._under_extract(path):
            os_path = self._get_os_path(path)
            if not os.path.isdir(os_path):
                raise _refuse(f"{path}: files of the extract are not sent to the browser; "
                              "read them in the kernel with the toolkit (open_project())")
        model = await super().get(path, content=content, type=type, format=format, **kwargs)
        if content and model.get("type") == "file" and model.get("format") == "base64":
            self._check_image(path, model)
        return model

    def _check_image(self, path: str, model: dict[str, Any]) -> None:
        data = base64.b64decode(model.get("content") or b"")
        if not data.startswith(_IMAGE_MAGIC):
            raise _refuse(f"{path}: binary files (Parquet, Excel, databases, archives...) are "
                          "not sent to the browser" + _HOW_TO_EXPORT)
        if len(data) > self.guard.max_image_kb * 1024:
            raise _refuse(f"{path}: image of {len(data) // 1024} KiB exceeds the "
                          f"{self.guard.max_image_kb} KiB limit (policies/workspace.yaml "
                          "max_image_kb)")

    # -- writing --------------------------------------------------------------------------
    async def save(self, model: dict[str, Any], path: str = "") -> dict[str, Any]:
        """Screen the model (type, size, identifiers, output size), then save it."""
        kind = model.get("type")
        if kind is not None and kind != "directory" and "content" in model:
            if "chunk" in model:
                raise _refuse(f"{path}: chunked uploads are refused; uploads are limited to "
                              f"{self.guard.max_upload_kb} KiB (policies/workspace.yaml "
                              "max_upload_kb)")
            self._check_suffix(path)
            if kind == "notebook":
                model = {**model, "content": self._screen_notebook(model["content"], path)}
            else:
                self._screen_file(model, path)
        return await super().save(model, path)

    def _check_suffix(self, path: str) -> None:
        suffix = Path(path).suffix.lower()
        allowed = {s.strip().lower() for s in self.guard.upload_suffixes.split(",") if s.strip()}
        if suffix not in allowed:
            raise _refuse(f"{path}: only code and text files may be uploaded or saved through "
                          f"the browser (allowed: {' '.join(sorted(allowed))}; "
                          "policies/workspace.yaml upload_suffixes)")

    def _screen_file(self, model: dict[str, Any], path: str) -> None:
        raw = model.get("content") or ""
        if model.get("format") == "base64":
            try:
                data = base64.b64decode(raw, validate=False)
            except (binascii.Error, ValueError) as exc:
                raise _refuse(f"{path}: upload is not valid base64 ({exc})") from exc
        else:
            data = raw.encode("utf-8") if isinstance(raw, str) else bytes(raw)
        limit = self.guard.max_upload_kb * 1024
        if len(data) > limit:
            raise _refuse(f"{path}: {len(data) // 1024} KiB exceeds the upload limit of "
                          f"{self.guard.max_upload_kb} KiB (policies/workspace.yaml max_upload_kb)")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise _refuse(f"{path}: not UTF-8 text (byte {exc.start}); only code and text may "
                          "be brought into the enclave") from exc
        if "\x00" in text:
            raise _refuse(f"{path}: contains NUL bytes; only code and text may be uploaded")
        if self.guard.scan_uploads:
            _scan(text, file=path, part="the file")

    def _screen_notebook(self, nb: dict[str, Any], path: str) -> dict[str, Any]:
        limit = self.guard.max_output_cell_kb * 1024
        sources: list[str] = []
        outputs_text: list[str] = []
        cells = []
        for index, cell in enumerate(nb.get("cells", [])):
            source = cell.get("source", "")
            sources.append(source if isinstance(source, str) else "".join(source))
            if cell.get("cell_type") == "code" and cell.get("outputs"):
                cell = {**cell, "outputs": [self._cap_output(o, index, limit)
                                            for o in cell["outputs"]]}
                outputs_text.append(json.dumps(cell["outputs"], ensure_ascii=False))
            cells.append(cell)
        nb = {**nb, "cells": cells}
        size = len(json.dumps(nb, ensure_ascii=False).encode("utf-8"))
        if size > self.guard.max_notebook_kb * 1024:
            raise _refuse(f"{path}: notebook of {size // 1024} KiB exceeds "
                          f"{self.guard.max_notebook_kb} KiB (policies/workspace.yaml "
                          "max_notebook_kb); clear large outputs and save again")
        if self.guard.scan_uploads:
            _scan("\n\n".join(sources), file=path, part="the cell sources")
            _scan("\n".join(outputs_text), file=path, part="the cell outputs",
                  entities=_STRONG_ENTITIES)
        return nb

    def _cap_output(self, output: dict[str, Any], index: int, limit: int) -> dict[str, Any]:
        size = len(json.dumps(output, ensure_ascii=False).encode("utf-8"))
        if size <= limit:
            return output
        self.log.warning("cell %d: output of %d KiB removed on save (limit %d KiB)",
                         index, size // 1024, limit // 1024)
        return {"output_type": "stream", "name": "stderr", "text": (
            f"[output removed by the enclave: {size // 1024} KiB exceeds the "
            f"{limit // 1024} KiB limit per cell output (policies/quotas.yaml "
            "max_output_cell_kb); summarise before displaying]\n")}


class RefusedHandler(web.RequestHandler):
    """Answers every method of a closed route with 403 and a JSON reason."""

    def initialize(self, reason: str) -> None:
        self.reason = reason

    def prepare(self) -> None:
        # Refuse before authentication or routing: the route is closed for everybody.
        self.set_status(403)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"message": f"{self.request.path}: {self.reason}{_HOW_TO_EXPORT}",
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
