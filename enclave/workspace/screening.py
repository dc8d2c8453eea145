"""What may come in through the browser and what may go back out (DESIGN §5, issue 7).

The rules over Jupyter contents-API models, in one place for the two layers that apply them:
the in-server guard (:class:`enclave.workspace.server_ext.EnclaveContentsManager`) and the
root-run gateway between the browser and the server (:mod:`enclave.hub`). Pure functions over
decoded models (``dict`` from the JSON body) and bytes, with the policy as a parameter; no
Jupyter import, so the hub process can call them.

Ingress (a ``PUT /api/contents/<path>`` body), :func:`screen_ingress`:

* plain files: allowed suffix, size, valid base64, UTF-8 text without NUL, no identifiers;
* notebooks: outputs over the per-output cap become a note, total size capped; identifiers are
  looked for in every part (sources, outputs decoded to their text, cell and notebook
  metadata, text attachments). Outputs refuse only :data:`STRONG_ENTITIES`: the kernel sees
  pseudonymised data, so outputs legitimately hold dates and codes, never these.

Egress (a model about to be sent to the browser), :func:`screen_egress`:

* notebooks: the same per-output cap and total size cap;
* text files: a size cap (``max_text_kb``);
* base64 files: only PNG, JPEG or GIF images that decode fully, sent as a re-encoded PNG, so
  nothing appended to or hidden in the file's bytes leaves;
* directories pass (listings carry names, not contents); anything else is refused.

Every refusal is a :class:`~enclave.errors.ScreeningRefused` naming file, part and policy key.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import logging
import re
import warnings
from collections.abc import Iterator, Mapping
from pathlib import PurePosixPath
from typing import Any

from PIL import Image, UnidentifiedImageError

from enclave.errors import ScreeningRefused
from enclave.workspace.policy import WorkspacePolicy

__all__ = ["HOW_TO_EXPORT", "STRONG_ENTITIES", "ScreeningRefused", "cap_outputs", "screen_egress",
           "screen_file_ingress", "screen_image_egress", "screen_ingress", "screen_notebook_egress",
           "screen_notebook_ingress", "screen_text_egress"]

log = logging.getLogger(__name__)

#: Identifier kinds that refuse a notebook *output* (every kind refuses everything else).
STRONG_ENTITIES = frozenset({"TW_NATIONAL_ID", "TW_RESIDENT_CERTIFICATE", "TW_PHONE",
                             "CHINESE_PERSON_NAME"})
#: The hint every egress refusal ends with.
HOW_TO_EXPORT = ("; outputs leave only through an export request "
                 "(toolkit request_export(...) or `enclave export request`)")

Model = dict[str, Any]

# The keys of a contents-API model. Egress rebuilds models from these only: whatever else a
# (possibly tampered) server adds does not reach the browser.
_MODEL_KEYS = ("name", "path", "type", "writable", "created", "last_modified", "mimetype",
               "content", "format", "size", "hash", "hash_algorithm")
_QUOTAS_KEYS = frozenset({"max_output_cell_kb"})  # the rest live in workspace.yaml
_IMAGE_FORMATS = ("PNG", "JPEG", "GIF")
# Terminal colour and hyperlink codes: a traceback writes "\x1b[31mA123456789", which would
# hide the ID behind the letter "m".
_ANSI = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[@-Z\\-_])")


def _refused(file: str, part: str, problem: str, key: str) -> ScreeningRefused:
    if key in WorkspacePolicy.model_fields:
        where = f"policies/{'quotas' if key in _QUOTAS_KEYS else 'workspace'}.yaml {key}"
    elif key == "identifiers":
        where = "identifier scan, disclosure_review.identifiers"
    else:
        where = f"rule {key}"
    return ScreeningRefused(f"{file}: {part}: {problem} ({where})", file=file, part=part, key=key)


def _kib(size: int) -> int:
    return size // 1024


def _json_size(value: Any) -> int:
    # As nbformat writes it (UTF-8, no ASCII escapes); lone surrogates from JSON count too.
    return len(json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass"))


# -- text of the parts of a notebook ---------------------------------------------------------
def _strings(value: Any) -> Iterator[str]:
    """Every key and scalar in a JSON value, decoded (never ``json.dumps``: that would turn a
    line break before an identifier into the two characters ``\\n``)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield str(key)
            yield from _strings(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _strings(item)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        yield str(value)


def _json_text(value: Any) -> str:
    # One string a line, so that neighbouring strings (tags, list items) do not run together.
    return "\n".join(_strings(value))


def _multiline(value: Any) -> str:
    # nbformat's multi-line strings are a string or a list of pieces to concatenate: an ID split
    # over two pieces is one ID on screen.
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return "".join(value)
    return value if isinstance(value, str) else _json_text(value)


def _is_binary_image(mime: str) -> bool:
    return mime.startswith("image/") and not mime.endswith("+xml")


def _is_text_mime(mime: str) -> bool:
    return (mime.startswith("text/") or mime.endswith(("json", "+xml", "javascript", "/xml")))


def _output_text(output: Mapping[str, Any]) -> str:
    """The text an output shows: stream text, every non-image ``data`` value, error fields,
    metadata. Images (base64 pixels) are left out."""
    pieces: list[str] = []
    for key, value in output.items():
        pieces.append(str(key))
        if key == "data" and isinstance(value, Mapping):
            for mime, payload in value.items():
                pieces.append(str(mime))
                if not _is_binary_image(str(mime)):
                    pieces.append(_multiline(payload))
        elif key == "traceback" and isinstance(value, list):
            pieces.append("\n".join(str(line) for line in value))  # one line an entry
        elif key == "text":
            pieces.append(_multiline(value))
        else:
            pieces.append(_json_text(value))
    return "\n".join(pieces)


def _attachment_text(file: str, part: str, name: str, bundle: Any) -> str:
    if not isinstance(bundle, Mapping):
        raise _refused(file, part, "is not a MIME bundle", "contents_model")
    pieces = [name]
    for mime, payload in bundle.items():
        mime = str(mime)
        if _is_binary_image(mime):
            continue  # pixels: nothing to read
        if not _is_text_mime(mime):
            raise _refused(file, part, f"attachments may be images or text, not {mime}",
                           "upload_suffixes")
        try:
            data = base64.b64decode("".join(_multiline(payload).split()), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise _refused(file, part, f"{mime} is not valid base64 ({exc})",
                           "contents_model") from exc
        pieces.append(data.decode("utf-8", errors="replace"))
    return "\n".join(pieces)


def _cells(nb: Any, file: str) -> list[Mapping[str, Any]]:
    if not isinstance(nb, Mapping):
        raise _refused(file, "the notebook", "is not a JSON object", "contents_model")
    cells = nb.get("cells", [])
    if not isinstance(cells, list) or not all(isinstance(c, Mapping) for c in cells):
        raise _refused(file, "the notebook", "'cells' is not a list of cells", "contents_model")
    for number, cell in enumerate(cells, start=1):
        outputs = cell.get("outputs", [])
        if not isinstance(outputs, list) or not all(isinstance(o, Mapping) for o in outputs):
            raise _refused(file, f"cell {number}", "'outputs' is not a list of outputs",
                           "contents_model")
    return cells


def _notebook_parts(nb: Mapping[str, Any], file: str
                    ) -> Iterator[tuple[str, str, frozenset[str] | None]]:
    """(part, text, entities refused or ``None`` for all) for every part of a notebook."""
    yield "notebook metadata", _json_text({k: v for k, v in nb.items() if k != "cells"}), None
    for number, cell in enumerate(_cells(nb, file), start=1):
        yield f"cell {number} source", _multiline(cell.get("source", "")), None
        rest = {k: v for k, v in cell.items() if k not in {"source", "outputs", "attachments"}}
        yield f"cell {number} metadata", _json_text(rest), None
        attachments = cell.get("attachments") or {}
        if not isinstance(attachments, Mapping):
            raise _refused(file, f"cell {number} attachments", "is not a JSON object",
                           "contents_model")
        for name, bundle in attachments.items():
            part = f"cell {number} attachment {name!r}"
            yield part, _attachment_text(file, part, str(name), bundle), None
        for index, output in enumerate(cell.get("outputs", []), start=1):
            yield f"cell {number} output {index}", _output_text(output), STRONG_ENTITIES


def _check_identifiers(text: str, *, file: str, part: str,
                       entities: frozenset[str] | None = None) -> None:
    from disclosure_review.identifiers import scan_text  # presidio: load only when needed

    hits = [h for h in scan_text(_ANSI.sub("", text)) if entities is None or h.entity in entities]
    if hits:
        kinds = ", ".join(sorted({h.entity for h in hits}))
        raise _refused(file, part, f"holds what looks like identifiers ({kinds}; {len(hits)} "
                       "hit(s)); re-identifiable data may not be brought into the enclave",
                       "identifiers")


# -- notebooks, both ways --------------------------------------------------------------------
def _note(size: int, limit: int) -> Model:
    return {"output_type": "stream", "name": "stderr", "text": (
        f"[output removed by the enclave: {_kib(size)} KiB exceeds the {_kib(limit)} KiB "
        "limit per cell output (policies/quotas.yaml max_output_cell_kb); summarise before "
        "displaying]\n")}


def cap_outputs(nb: Mapping[str, Any], *, path: str, policy: WorkspacePolicy) -> Model:
    """Replace every output larger than ``max_output_cell_kb`` by a short note.

    Parameters
    ----------
    nb : mapping
        The notebook (nbformat 4 JSON, decoded).
    path : str
        Its contents-API path (for messages and the log).
    policy : WorkspacePolicy
        The workspace rules.

    Returns
    -------
    dict
        A new notebook (the input is not changed); outputs within the cap are kept as they are.

    Raises
    ------
    ScreeningRefused
        The notebook is not a notebook (no list of cells, outputs not a list).
    """
    limit = policy.max_output_cell_kb * 1024
    cells = []
    for number, cell in enumerate(_cells(nb, path), start=1):
        if cell.get("outputs"):
            outputs = []
            for output in cell["outputs"]:
                size = _json_size(output)
                if size > limit:
                    log.warning("%s: cell %d: output of %d KiB replaced by a note (limit %d KiB)",
                                path, number, _kib(size), _kib(limit))
                    output = _note(size, limit)
                outputs.append(output)
            cell = {**cell, "outputs": outputs}
        cells.append(cell)
    return {**nb, "cells": cells}


def _check_notebook_size(nb: Model, *, path: str, policy: WorkspacePolicy, hint: str) -> None:
    size = _json_size(nb)
    if size > policy.max_notebook_kb * 1024:
        raise _refused(path, "the notebook", f"{_kib(size)} KiB after capping outputs exceeds "
                       f"{policy.max_notebook_kb} KiB{hint}", "max_notebook_kb")


def screen_notebook_ingress(nb: Mapping[str, Any], *, path: str, policy: WorkspacePolicy,
                            scan: bool = True) -> Model:
    """Screen a notebook the browser saves: cap outputs, cap the size, look for identifiers.

    Parameters
    ----------
    nb : mapping
        The model's ``content`` (nbformat 4 JSON, decoded).
    path : str
        The contents-API path it is saved to.
    policy : WorkspacePolicy
        The workspace rules.
    scan : bool
        Look for identifiers (off only for tests of the other rules; security: off lets
        re-identifiable data in).

    Returns
    -------
    dict
        The notebook to save (outputs over the cap replaced by a note).

    Raises
    ------
    ScreeningRefused
        Too big after capping, malformed, or a part holds identifiers (sources, metadata and
        text attachments: any kind; outputs: :data:`STRONG_ENTITIES`).
    """
    nb = cap_outputs(nb, path=path, policy=policy)
    _check_notebook_size(nb, path=path, policy=policy,
                         hint="; clear large outputs and save again")
    if scan:
        for part, text, entities in _notebook_parts(nb, path):
            _check_identifiers(text, file=path, part=part, entities=entities)
    return nb


def screen_notebook_egress(nb: Mapping[str, Any], *, path: str, policy: WorkspacePolicy) -> Model:
    """Screen a notebook going to the browser (it may have been written by the kernel).

    Returns
    -------
    dict
        The notebook with outputs over ``max_output_cell_kb`` replaced by a note.

    Raises
    ------
    ScreeningRefused
        Still over ``max_notebook_kb`` after capping, or malformed.
    """
    nb = cap_outputs(nb, path=path, policy=policy)
    _check_notebook_size(nb, path=path, policy=policy,
                         hint="; in the kernel, clear outputs (nbformat) or split the notebook")
    return nb


# -- plain files -----------------------------------------------------------------------------
def _check_suffix(path: str, policy: WorkspacePolicy) -> None:
    suffix = PurePosixPath(path).suffix.lower()
    allowed = {s.strip().lower() for s in policy.upload_suffixes if s.strip()}
    if suffix not in allowed:
        raise _refused(path, "the file", "only code and text files may be uploaded or saved "
                       f"through the browser (allowed: {' '.join(sorted(allowed))})",
                       "upload_suffixes")


def screen_file_ingress(model: Mapping[str, Any], *, path: str, policy: WorkspacePolicy,
                        scan: bool = True) -> None:
    """Screen a plain file (``type`` file) the browser uploads or saves.

    Parameters
    ----------
    model : mapping
        The contents-API model: ``format`` ``text`` or ``base64`` and its ``content``.
    path : str
        The contents-API path it is saved to (its suffix is checked by :func:`screen_ingress`).
    policy : WorkspacePolicy
        The workspace rules.
    scan : bool
        Look for identifiers (see :func:`screen_notebook_ingress`).

    Raises
    ------
    ScreeningRefused
        Over ``max_upload_kb``, not base64 or text, not UTF-8, holds NUL, or holds identifiers
        of any kind (also in the decoded strings of a JSON file).
    """
    raw, fmt = model.get("content"), model.get("format")
    limit = policy.max_upload_kb * 1024
    if fmt == "base64" and isinstance(raw, str):
        if len(raw) * 3 // 4 > limit + 3:  # refuse before decoding it
            raise _refused(path, "the file", f"about {_kib(len(raw) * 3 // 4)} KiB exceeds the "
                           f"upload limit of {policy.max_upload_kb} KiB", "max_upload_kb")
        try:
            data = base64.b64decode("".join(raw.split()), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise _refused(path, "the file", f"is not valid base64 ({exc})",
                           "contents_model") from exc
    elif fmt == "text" and isinstance(raw, str):
        try:
            data = raw.encode("utf-8")
        except UnicodeEncodeError as exc:  # a lone surrogate from the JSON body
            raise _refused(path, "the file", f"is not UTF-8 text (character {exc.start}); only "
                           "code and text may be brought into the enclave",
                           "upload_suffixes") from exc
    else:
        raise _refused(path, "the file", "content must be a string in format 'text' or "
                       f"'base64', not {fmt!r}", "contents_model")
    if len(data) > limit:
        raise _refused(path, "the file", f"{_kib(len(data))} KiB exceeds the upload limit of "
                       f"{policy.max_upload_kb} KiB", "max_upload_kb")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _refused(path, "the file", f"is not UTF-8 text (byte {exc.start}); only code and "
                       "text may be brought into the enclave", "upload_suffixes") from exc
    if "\x00" in text:
        raise _refused(path, "the file", "contains NUL bytes; only code and text may be "
                       "uploaded", "upload_suffixes")
    if scan:
        _check_identifiers(text, file=path, part="the file")
        if text.lstrip()[:1] in ("{", "["):
            # A JSON file (a notebook saved as a plain file) also in its decoded strings.
            try:
                decoded = json.loads(text)
            except ValueError:
                return
            _check_identifiers(_json_text(decoded), file=path, part="the file's JSON strings")


def screen_text_egress(text: str, *, path: str, policy: WorkspacePolicy) -> None:
    """Refuse a text file larger than ``max_text_kb`` before it goes to the browser.

    Raises
    ------
    ScreeningRefused
        The file is over ``max_text_kb`` (or not a string).
    """
    if not isinstance(text, str):
        raise _refused(path, "the file", "text content is not a string", "contents_model")
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > policy.max_text_kb * 1024:
        raise _refused(path, "the file", f"text of {_kib(size)} KiB exceeds the "
                       f"{policy.max_text_kb} KiB the browser may show; read it in the kernel "
                       "and display a summary" + HOW_TO_EXPORT, "max_text_kb")


def screen_image_egress(data: bytes, *, path: str, policy: WorkspacePolicy) -> bytes:
    """Decode an image fully and re-encode it as PNG: the only bytes a browser gets.

    Parameters
    ----------
    data : bytes
        The file's bytes (base64-decoded).
    path : str
        Its contents-API path.
    policy : WorkspacePolicy
        The workspace rules (``max_image_kb``, ``max_image_megapixels``).

    Returns
    -------
    bytes
        A PNG of the (first frame's) pixels and nothing else: no metadata, no trailing bytes.

    Raises
    ------
    ScreeningRefused
        Not a PNG, JPEG or GIF that decodes fully; over ``max_image_megapixels``; the file or
        the PNG over ``max_image_kb``.
    """
    limit = policy.max_image_kb * 1024
    if len(data) > limit:
        raise _refused(path, "the file", f"image of {_kib(len(data))} KiB exceeds the "
                       f"{policy.max_image_kb} KiB limit", "max_image_kb")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=_IMAGE_FORMATS) as image:
                pixels = image.width * image.height
                if pixels > policy.max_image_megapixels * 1_000_000:
                    raise _refused(path, "the file", f"image of {pixels / 1e6:.1f} million pixels "
                                   f"exceeds {policy.max_image_megapixels} million",
                                   "max_image_megapixels")
                image.load()  # every pixel decoded: a file that only starts like an image fails
                alpha = image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info
                frame = image.convert("RGBA" if alpha else "RGB")
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError,
            Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise _refused(path, "the file", "binary files (Parquet, Excel, databases, archives...) "
                       "are not sent to the browser; only PNG, JPEG and GIF images that decode "
                       f"are ({type(exc).__name__})" + HOW_TO_EXPORT, "max_image_kb") from exc
    frame.info = {}  # convert() copies text chunks, ICC profile, EXIF, APNG frames: drop them
    out = io.BytesIO()
    frame.save(out, format="PNG")
    png = out.getvalue()
    if len(png) > limit:
        raise _refused(path, "the file", f"image re-encoded as PNG is {_kib(len(png))} KiB, over "
                       f"the {policy.max_image_kb} KiB limit; save the figure smaller or as PNG",
                       "max_image_kb")
    return png


# -- whole models ----------------------------------------------------------------------------
def screen_ingress(model: Mapping[str, Any], *, path: str, policy: WorkspacePolicy,
                   scan: bool = True) -> Model:
    """Screen a contents-API model the browser sends to be saved (``PUT``).

    Parameters
    ----------
    model : mapping
        The decoded request body.
    path : str
        The contents-API path (URL-decoded, relative to the server root).
    policy : WorkspacePolicy
        The workspace rules.
    scan : bool
        Look for identifiers (see :func:`screen_notebook_ingress`).

    Returns
    -------
    dict
        The model to save: notebooks with outputs capped, anything else unchanged.

    Raises
    ------
    ScreeningRefused
        Chunked uploads, suffixes not allowed, unknown types, and the refusals of
        :func:`screen_file_ingress` and :func:`screen_notebook_ingress`.
    """
    kind = model.get("type")
    if kind == "directory" or "content" not in model:
        return dict(model)  # no bytes come in (the contents manager refuses a file without)
    if "chunk" in model:
        # A chunked upload is screened nowhere whole: refuse it (JupyterLab chunks files over
        # 1 MiB, which max_upload_kb refuses anyway).
        raise _refused(path, "the upload", f"chunked uploads are refused; uploads are limited "
                       f"to {policy.max_upload_kb} KiB", "max_upload_kb")
    _check_suffix(path, policy)
    if kind == "notebook":
        return {**model, "content": screen_notebook_ingress(model["content"], path=path,
                                                            policy=policy, scan=scan)}
    if kind == "file":
        screen_file_ingress(model, path=path, policy=policy, scan=scan)
        return dict(model)
    raise _refused(path, "the file", f"unknown model type {kind!r}", "contents_model")


def screen_egress(model: Mapping[str, Any], *, path: str, policy: WorkspacePolicy) -> Model:
    """Screen a contents-API model about to be sent to the browser (``GET``).

    Parameters
    ----------
    model : mapping
        The model the contents manager returned.
    path : str
        The contents-API path asked for.
    policy : WorkspacePolicy
        The workspace rules.

    Returns
    -------
    dict
        The model to send, rebuilt from the contents-API keys only: notebooks with outputs
        capped, images as a re-encoded PNG (``mimetype`` ``image/png``), text and directories
        unchanged; a model without content passes.

    Raises
    ------
    ScreeningRefused
        Notebooks over ``max_notebook_kb`` after capping, text over ``max_text_kb``, base64
        that is not an image (:func:`screen_image_egress`), directory listings that carry
        contents, anything else with content.
    """
    out = {key: model[key] for key in _MODEL_KEYS if key in model}
    content, kind, fmt = model.get("content"), model.get("type"), model.get("format")
    if content is None:
        return out
    if kind == "directory":
        if not isinstance(content, list) or any(
                not isinstance(child, Mapping) or child.get("content") is not None
                for child in content):
            raise _refused(path, "the listing", "a directory listing may not carry file "
                           "contents", "contents_model")
        out["content"] = [{key: child[key] for key in _MODEL_KEYS if key in child}
                          for child in content]
        return out
    if kind == "notebook":
        out["content"] = screen_notebook_egress(content, path=path, policy=policy)
        return out
    if kind == "file" and fmt == "text":
        screen_text_egress(content, path=path, policy=policy)
        return out
    if kind == "file" and fmt == "base64" and isinstance(content, str):
        try:
            data = base64.b64decode(content, validate=False)
        except (binascii.Error, ValueError) as exc:
            raise _refused(path, "the file", f"is not valid base64 ({exc})",
                           "contents_model") from exc
        png = screen_image_egress(data, path=path, policy=policy)
        out.update(content=base64.b64encode(png).decode("ascii"), mimetype="image/png",
                   size=len(png))
        return out
    raise _refused(path, "the file", f"{kind!r} content in format {fmt!r} is not sent to the "
                   "browser" + HOW_TO_EXPORT, "contents_model")
