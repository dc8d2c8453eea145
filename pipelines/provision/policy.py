"""The provisioning policy (``policies/provisioning.yaml``), validated on load."""

from __future__ import annotations

from pydantic import Field

from enclave.config import Settings
from enclave.policies import PolicyModel, load_policy


class RepresentativenessPolicy(PolicyModel):
    age_edges: list[int] = Field(default_factory=lambda: [0, 15, 25, 45, 65, 75], min_length=1)
    max_abs_shift_pp: float = Field(0.5, gt=0)
    max_rel_shift: float = Field(0.10, gt=0)
    min_category_people: int = Field(50, ge=0)


class ProvisioningPolicy(PolicyModel):
    provisionable_statuses: list[str] = Field(default_factory=lambda: ["approved", "active"])
    active_statuses: list[str] = Field(default_factory=lambda: ["approved", "active"])
    duckdb_memory_limit: str = Field("2GB", pattern=r"^\d+(\.\d+)?\s*(MB|GB|MiB|GiB)$")
    duckdb_threads: int = Field(2, ge=1)
    representativeness: RepresentativenessPolicy = Field(default_factory=RepresentativenessPolicy)


def provisioning_policy(settings: Settings) -> ProvisioningPolicy:
    """Read and validate ``provisioning.yaml`` from the settings' policy folder."""
    return load_policy("provisioning", ProvisioningPolicy, settings)
