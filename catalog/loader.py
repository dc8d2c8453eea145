"""Reading catalog YAML folders into a validated :class:`~catalog.model.Catalog`.

A catalog folder holds ``files/<NAME>.yaml`` (one per source file) and
``codes/<name>.yaml`` (one per code set). Every problem becomes a :class:`CatalogError`
naming the YAML file and the field, so an operator can fix the definition directly.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import ValidationError

from catalog.model import Catalog, CatalogError, CodeSet, FileDef
from enclave.yaml_text import parse_yaml

PACKAGED_ROOT = Path(__file__).resolve().parent
M = TypeVar("M", FileDef, CodeSet)


def load_catalog(root: Path | None = None) -> Catalog:
    """Load and validate a catalog folder.

    Parameters
    ----------
    root
        Folder holding ``files/`` and ``codes/``; default: the catalog shipped with the code
        (loaded once and cached).

    Returns
    -------
    Catalog
        The validated catalog.

    Raises
    ------
    CatalogError
        If a YAML file is unreadable or a definition is invalid; the message names the file
        and the field.
    """
    if root is None:
        return _load_packaged()
    return _load(Path(root))


@functools.lru_cache(maxsize=1)
def _load_packaged() -> Catalog:
    return _load(PACKAGED_ROOT)


def _load(root: Path) -> Catalog:
    files_dir, codes_dir = root / "files", root / "codes"
    for d in (files_dir, codes_dir):
        if not d.is_dir():
            raise CatalogError(f"{d}: catalog folder is missing (expected files/ and codes/)")
    codesets: dict[str, CodeSet] = {}
    for path in sorted(codes_dir.glob("*.yaml")):
        cs = _parse(path, CodeSet)
        codesets[cs.name] = cs
    files: dict[str, FileDef] = {}
    for path in sorted(files_dir.glob("*.yaml")):
        fd = _parse(path, FileDef)
        files[fd.name] = fd
    if not files:
        raise CatalogError(f"{files_dir}: no file definitions (*.yaml)")
    try:
        return Catalog(files_by_name=files, codesets=codesets, root=str(root))
    except ValidationError as exc:  # pragma: no cover - cross-checks raise CatalogError
        raise CatalogError(f"{root}: {_describe(exc)}") from None


def _parse(path: Path, model: type[M]) -> M:
    data = _read_yaml(path)
    try:
        obj = model.model_validate(data)
    except ValidationError as exc:
        raise CatalogError(f"{path}: {_describe(exc, data)}") from None
    if obj.name != path.stem:
        raise CatalogError(
            f"{path}: field 'name': {obj.name!r} must equal the file name {path.stem!r}"
        )
    return obj


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = parse_yaml(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise CatalogError(f"{path}: cannot read YAML: {exc}") from None
    if not isinstance(data, dict):
        raise CatalogError(f"{path}: expected a mapping at the top level")
    return data


def _describe(exc: ValidationError, data: Any = None) -> str:
    """One line per problem: the field path (with column names, not indexes) and the reason."""
    lines = []
    for err in exc.errors():
        loc = _readable_loc(err["loc"], data)
        msg = err["msg"].removeprefix("Value error, ")
        lines.append(f"field '{loc}': {msg}" if loc else msg)
    return "; ".join(lines)


def _readable_loc(loc: tuple[Any, ...], data: Any) -> str:
    parts: list[str] = []
    node = data
    for item in loc:
        if isinstance(item, int):
            name = None
            if isinstance(node, list) and item < len(node) and isinstance(node[item], dict):
                name = node[item].get("name")
            parts[-1] = f"{parts[-1]}[{name or item}]" if parts else f"[{item}]"
        else:
            parts.append(str(item))
        try:
            node = node[item] if node is not None else None
        except (KeyError, IndexError, TypeError):
            node = None
    return ".".join(parts)
