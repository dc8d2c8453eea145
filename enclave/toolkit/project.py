"""The project extract as tables: DuckDB views, Polars lazy frames, SQL, the data dictionary.

Only the extract folder is opened (``ENCLAVE_EXTRACT``), read-only; DuckDB gets an explicit
read-only connection whose views point at the extract's Parquet files.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import weakref
from functools import cached_property
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from enclave.errors import InputError, NotFound
from enclave.toolkit._env import env_path

PERSON_INDEX = "person_index"
INSTITUTION_INDEX = "institution_index"
DICTIONARY = "data_dictionary.md"
MANIFEST = "manifest.json"


class UnknownTableError(NotFound):
    """The extract has no table of that name (the message lists those it has)."""


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class Project:
    """One project's extract, opened read-only.

    Parameters
    ----------
    extract : Path
        The extract folder (``<FILE>/year=<YYYY>/part-<n>.parquet``, index files,
        dictionary, manifest).
    code : str, optional
        The project code, for display.
    """

    def __init__(self, extract: Path, *, code: str | None = None) -> None:
        if not extract.is_dir():
            raise NotFound(f"extract folder {extract} does not exist or is not readable")
        self.extract = extract
        self.code = code
        self._connection: duckdb.DuckDBPyConnection | None = None

    def __repr__(self) -> str:
        return f"Project({self.code or '?'}: {', '.join(self.tables)})"

    @cached_property
    def tables(self) -> list[str]:
        """Names of the extract's data tables (file types), sorted."""
        return sorted(p.name for p in self.extract.iterdir()
                      if p.is_dir() and any(p.rglob("*.parquet")))

    def _files(self, name: str) -> str:
        if name not in self.tables:
            raise UnknownTableError(
                f"no table {name!r} in the extract of {self.code or self.extract}; "
                f"tables: {', '.join(self.tables) or '(none)'}"
            )
        return str(self.extract / name / "**" / "*.parquet")

    # -- Polars ---------------------------------------------------------------------------
    def lazy(self, name: str) -> pl.LazyFrame:
        """Scan table ``name`` lazily (``year`` comes from the partition folders)."""
        return pl.scan_parquet(self._files(name), hive_partitioning=True)

    def person_index(self) -> pl.LazyFrame:
        """``pseudonym`` → ``idx`` (dense per-project integer) of the people."""
        return pl.scan_parquet(self.extract / f"{PERSON_INDEX}.parquet")

    def institution_index(self) -> pl.LazyFrame:
        """``pseudonym`` → ``idx`` of the institutions."""
        return pl.scan_parquet(self.extract / f"{INSTITUTION_INDEX}.parquet")

    # -- DuckDB ---------------------------------------------------------------------------
    def duckdb(self) -> duckdb.DuckDBPyConnection:
        """A new read-only DuckDB connection with one view per table and index.

        The views live in a small database file in the kernel's temporary folder, built once
        per :class:`Project`; the connection to it is opened ``read_only=True``.
        """
        path = self._views_database
        return duckdb.connect(str(path), read_only=True)

    @cached_property
    def _views_database(self) -> Path:
        folder = Path(tempfile.mkdtemp(prefix="enclave-toolkit-"))
        # The folder goes with this object (or at interpreter exit): a kernel that opens
        # projects again and again must not fill its temporary space with view databases.
        weakref.finalize(self, shutil.rmtree, folder, ignore_errors=True)
        path = folder / "views.duckdb"
        with duckdb.connect(str(path)) as con:
            for name in self.tables:
                glob = self._files(name).replace("'", "''")
                con.execute(f"CREATE VIEW {_quote(name)} AS SELECT * FROM "
                            f"read_parquet('{glob}', hive_partitioning = true)")
            for name in (PERSON_INDEX, INSTITUTION_INDEX):
                file = self.extract / f"{name}.parquet"
                if file.is_file():
                    literal = str(file).replace("'", "''")
                    con.execute(f"CREATE VIEW {name} AS SELECT * FROM read_parquet('{literal}')")
        return path

    def sql(self, query: str) -> pl.DataFrame:
        """Run SQL over the tables (DuckDB dialect) and return a Polars DataFrame."""
        if not query.strip():
            raise InputError("empty SQL query")
        if self._connection is None:
            self._connection = self.duckdb()
        return self._connection.sql(query).pl()

    # -- documentation --------------------------------------------------------------------
    def dictionary(self) -> str:
        """The data dictionary (Markdown) for exactly the columns provided."""
        path = self.extract / DICTIONARY
        if not path.is_file():
            raise NotFound(f"{path}: the extract has no data dictionary")
        return path.read_text(encoding="utf-8")

    def manifest(self) -> dict[str, Any]:
        """The extract manifest (files, rows, checksums, provisioning time)."""
        return json.loads((self.extract / MANIFEST).read_text(encoding="utf-8"))

    def close(self) -> None:
        """Close the cached SQL connection."""
        if self._connection is not None:
            self._connection.close()
            self._connection = None


def open_project(extract: Path | str | None = None) -> Project:
    """Open the workspace's project (``ENCLAVE_EXTRACT``) or an explicit extract folder."""
    import os

    folder = Path(extract) if extract is not None else env_path("ENCLAVE_EXTRACT")
    return Project(folder, code=os.environ.get("ENCLAVE_PROJECT"))
