"""The workspace rules as one validated object, read from ``policies/quotas.yaml`` (output
cell size, terminal) and ``policies/workspace.yaml`` (uploads, images).

The hub side resolves this once and passes the values to the single-user server on its
command line (:func:`enclave.workspace.singleuser.server_args`), so the researcher's server
never needs to find the enclave home.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from enclave.config import Settings
from enclave.errors import PolicyError
from enclave.policies import policy_path, read_yaml


class WorkspacePolicy(BaseModel):
    """What may enter and leave a workspace through the browser.

    Attributes
    ----------
    max_output_cell_kb : int
        Largest output of one notebook cell kept on save (KiB); also the IOPub data rate.
    terminal_enabled : bool
        Whether researchers get a terminal (a shell is one more way to move data around).
    max_upload_kb, max_notebook_kb, max_image_kb : int
        Size caps (KiB) for uploads/plain-file saves, notebooks (saved or shown), images shown.
    max_text_kb : int
        Largest text file (KiB) the browser may receive.
    max_image_megapixels : int
        Largest image (million pixels) decoded to be shown (decoding costs memory).
    upload_suffixes : tuple of str
        File types (code and text) that may be uploaded or saved through the browser.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_output_cell_kb: int = Field(gt=0)
    terminal_enabled: bool
    max_upload_kb: int = Field(gt=0)
    max_notebook_kb: int = Field(gt=0)
    max_image_kb: int = Field(ge=0)
    max_text_kb: int = Field(gt=0)
    max_image_megapixels: int = Field(gt=0)
    upload_suffixes: tuple[str, ...]


def load_workspace_policy(settings: Settings) -> WorkspacePolicy:
    """Read and validate the workspace rules of this deployment.

    Raises
    ------
    PolicyError
        A file is missing, a key is missing or a value is invalid (names file and key).
    """
    quotas_file = policy_path("quotas", settings)
    workspace_file = policy_path("workspace", settings)
    quotas = read_yaml(quotas_file)
    workspace = read_yaml(workspace_file)
    values: dict[str, object] = {}
    # quotas.yaml is shared with the hub (it holds more keys); take only ours.
    for key in ("max_output_cell_kb", "terminal_enabled"):
        if key not in quotas:
            raise PolicyError(f"{quotas_file}: missing key {key!r}")
        values[key] = quotas[key]
    values.update(workspace)
    try:
        return WorkspacePolicy.model_validate(values)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}"
            for err in exc.errors()
        )
        raise PolicyError(f"{quotas_file} / {workspace_file}: {problems}") from exc
