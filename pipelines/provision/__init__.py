"""Provisioning: from the vault to one approved project's read-only, pseudonymized extract.

Modules: :mod:`.select` (approved files/years/columns), :mod:`.pseudonymize` (stage 2),
:mod:`.coarsen`, :mod:`.extract` (DuckDB writer, atomic publish), :mod:`.dictionary`,
:mod:`.representativeness`, :mod:`.project` (the run), :mod:`.later_optouts`,
:mod:`.closure` (crypto-shredding hook), :mod:`.reidentify` (audited four-eyes procedure).
The package attributes load lazily, so importing the closure hook stays cheap.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ProvisionResult", "provision_project"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from pipelines.provision import project

        return getattr(project, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
