"""Readers: turn each output file into evidence (tables, texts, code, figures).

Supported: CSV/TSV (UTF-8, else Big5/CP950), Parquet, XLSX, Markdown/plain text, code
(.py, .R, .sql), Jupyter notebooks (code cells, text outputs, image outputs), PNG/JPEG.
Tables from text formats are read with every column as text so that masks such as ``<6``
or ``*`` survive for the masked-cell rule; :mod:`disclosure_review.infer` converts numbers.
"""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import polars as pl

from disclosure_review.errors import EmptyTableError, UnreadableOutputError
from disclosure_review.evidence import Evidence, FigureInfo

TABLE_SUFFIXES = {".csv", ".tsv", ".parquet", ".xlsx"}
TEXT_SUFFIXES = {".md", ".markdown", ".txt", ".log", ".html", ".htm"}
CODE_SUFFIXES = {".py", ".r", ".sql", ".do", ".sas"}
FIGURE_SUFFIXES = {".png", ".jpg", ".jpeg"}
NOTEBOOK_SUFFIXES = {".ipynb"}
SUPPORTED_SUFFIXES = (
    TABLE_SUFFIXES | TEXT_SUFFIXES | CODE_SUFFIXES | FIGURE_SUFFIXES | NOTEBOOK_SUFFIXES
)


def decode_text(data: bytes, *, file: str) -> str:
    """Decode bytes as UTF-8 (with or without BOM), else Big5 (CP950).

    Raises
    ------
    UnreadableOutputError
        Neither encoding decodes the bytes.
    """
    for encoding in ("utf-8-sig", "cp950"):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise UnreadableOutputError(f"{file}: not UTF-8 or Big5 text; re-save the file as UTF-8")


def _require_rows(frame: pl.DataFrame, *, file: str, part: str = "") -> pl.DataFrame:
    if frame.height == 0 or frame.width == 0:
        where = f" ({part})" if part else ""
        raise EmptyTableError(f"{file}{where}: the table has no data rows; nothing to check")
    return frame


def _read_csv(path: Path, label: str) -> list[Evidence]:
    text = decode_text(path.read_bytes(), file=label)
    separator = "\t" if path.suffix.lower() == ".tsv" else ","
    try:
        frame = pl.read_csv(
            text.encode("utf-8"),
            separator=separator,
            infer_schema=False,
            truncate_ragged_lines=False,
        )
    except Exception as exc:  # polars raises several ComputeError/NoDataError kinds
        raise UnreadableOutputError(f"{label}: not a readable CSV table: {exc}") from exc
    return [Evidence(file=label, part="", kind="table", table=_require_rows(frame, file=label))]


def _read_parquet(path: Path, label: str) -> list[Evidence]:
    try:
        frame = pl.read_parquet(path)
    except Exception as exc:
        raise UnreadableOutputError(f"{label}: not a readable Parquet file: {exc}") from exc
    return [Evidence(file=label, part="", kind="table", table=_require_rows(frame, file=label))]


def _read_xlsx(path: Path, label: str) -> list[Evidence]:
    from openpyxl import load_workbook

    try:
        book = load_workbook(path, read_only=True, data_only=True)
    except Exception as exc:
        raise UnreadableOutputError(f"{label}: not a readable XLSX workbook: {exc}") from exc
    found: list[Evidence] = []
    try:
        for sheet in book.worksheets:
            rows = [r for r in sheet.iter_rows(values_only=True) if any(v is not None for v in r)]
            if len(rows) < 2:
                continue
            header = [
                str(h) if h is not None else f"column_{i + 1}" for i, h in enumerate(rows[0])
            ]
            columns = {
                name: [None if r[i] is None else str(r[i]) for r in rows[1:]]
                for i, name in enumerate(header)
            }
            frame = pl.DataFrame(columns, schema=dict.fromkeys(header, pl.String))
            found.append(Evidence(file=label, part=f"sheet '{sheet.title}'", kind="table",
                                  table=frame))
    finally:
        book.close()
    if not found:
        raise EmptyTableError(f"{label}: no sheet has a header and data rows; nothing to check")
    return found


def _figure_info(data: bytes, label: str, part: str = "") -> FigureInfo:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:
            keys = tuple(sorted(str(k) for k in image.info))
            exif = image.getexif()
            if len(exif):
                keys = (*keys, "exif")
            return FigureInfo(format=str(image.format), width=image.width,
                              height=image.height, metadata_keys=keys)
    except (UnidentifiedImageError, OSError) as exc:
        where = f" ({part})" if part else ""
        raise UnreadableOutputError(f"{label}{where}: not a readable PNG/JPEG image") from exc


def _read_notebook(path: Path, label: str) -> list[Evidence]:
    try:
        nb = json.loads(decode_text(path.read_bytes(), file=label))
        cells = nb["cells"]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise UnreadableOutputError(f"{label}: not a Jupyter notebook (.ipynb JSON)") from exc
    found: list[Evidence] = []
    for number, cell in enumerate(cells, start=1):
        source = cell.get("source", "")
        source = "".join(source) if isinstance(source, list) else str(source)
        cell_type = cell.get("cell_type", "code")
        if source.strip():
            kind = "code" if cell_type == "code" else "text"
            found.append(Evidence(file=label, part=f"cell {number}", kind=kind, text=source))
        for out_no, output in enumerate(cell.get("outputs", []) or [], start=1):
            part = f"cell {number} output {out_no}"
            texts: list[str] = []
            if "text" in output:
                t = output["text"]
                texts.append("".join(t) if isinstance(t, list) else str(t))
            data = output.get("data", {}) or {}
            for mime, payload in data.items():
                body = "".join(payload) if isinstance(payload, list) else payload
                if mime in ("image/png", "image/jpeg"):
                    raw = base64.b64decode(body)
                    found.append(Evidence(file=label, part=part, kind="figure",
                                          figure=_figure_info(raw, label, part)))
                elif mime.startswith("text/") or mime == "application/json":
                    texts.append(body if isinstance(body, str) else json.dumps(body))
            if output.get("traceback"):
                texts.append("\n".join(output["traceback"]))
            if any(t.strip() for t in texts):
                found.append(Evidence(file=label, part=part, kind="text", text="\n".join(texts)))
    return found


def read_output(path: Path, *, label: str | None = None) -> list[Evidence]:
    """Read one output file into evidence items.

    Parameters
    ----------
    path : Path
        The file to read.
    label : str, optional
        How the file is named in findings (default: ``str(path)``).

    Returns
    -------
    list[Evidence]
        One item per table, sheet, text, code cell, output or figure.

    Raises
    ------
    UnreadableOutputError
        The file is missing, unsupported, or cannot be parsed.
    EmptyTableError
        A table has no data rows.
    """
    label = label or str(path)
    if not path.is_file():
        raise UnreadableOutputError(f"{label}: no such file")
    suffix = path.suffix.lower()
    if suffix in (".csv", ".tsv"):
        return _read_csv(path, label)
    if suffix == ".parquet":
        return _read_parquet(path, label)
    if suffix == ".xlsx":
        return _read_xlsx(path, label)
    if suffix in NOTEBOOK_SUFFIXES:
        return _read_notebook(path, label)
    if suffix in FIGURE_SUFFIXES:
        return [Evidence(file=label, part="", kind="figure",
                         figure=_figure_info(path.read_bytes(), label))]
    if suffix in TEXT_SUFFIXES or suffix in CODE_SUFFIXES:
        text = decode_text(path.read_bytes(), file=label)
        kind = "code" if suffix in CODE_SUFFIXES else "text"
        return [Evidence(file=label, part="", kind=kind, text=text)]
    raise UnreadableOutputError(
        f"{label}: unsupported file type {suffix or '(none)'}; "
        f"supported: {', '.join(sorted(SUPPORTED_SUFFIXES))}"
    )
