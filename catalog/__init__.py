"""The NHI source-file catalog: every file and column as the custodian holds them.

Definitions are data (``catalog/files/*.yaml``, ``catalog/codes/*.yaml``); this package
loads and validates them and offers identifier/code checks (:mod:`catalog.checks`) that the
synthetic-data generator and the ingest pipeline share.
"""

from __future__ import annotations

from catalog.loader import PACKAGED_ROOT, load_catalog
from catalog.model import (
    Catalog,
    CatalogError,
    CatalogNotFound,
    CodeSet,
    Column,
    FileDef,
    Label,
)

__all__ = [
    "PACKAGED_ROOT",
    "Catalog",
    "CatalogError",
    "CatalogNotFound",
    "CodeSet",
    "Column",
    "FileDef",
    "Label",
    "load_catalog",
]
