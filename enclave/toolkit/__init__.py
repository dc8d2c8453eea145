"""The researcher toolkit, imported in the notebook kernel (issue 7).

Open the project's tables (:func:`open_project`: DuckDB views, Polars lazy frames, SQL, the
data dictionary), build safe outputs that remember their cell membership (:func:`crosstab`,
:func:`summarise`, :func:`collapse_small`, :func:`round_to`, :func:`save_output`), preview
the automated check and request an export (:func:`preview_check`, :func:`request_export`).

It knows only ``ENCLAVE_EXTRACT``, ``ENCLAVE_SCRATCH``, ``ENCLAVE_PROJECT`` and the export
socket; it has no code path to the state database, the keys, the vault or other projects.
"""

from enclave.toolkit.export import ExportServiceError, preview_check, request_export, whoami
from enclave.toolkit.project import Project, UnknownTableError, open_project
from enclave.toolkit.tables import (
    SafeOutputError,
    SafeTable,
    collapse_small,
    crosstab,
    outputs_dir,
    round_to,
    save_output,
    summarise,
)

__all__ = [
    "ExportServiceError",
    "Project",
    "SafeOutputError",
    "SafeTable",
    "UnknownTableError",
    "collapse_small",
    "crosstab",
    "open_project",
    "outputs_dir",
    "preview_check",
    "request_export",
    "round_to",
    "save_output",
    "summarise",
    "whoami",
]
