"""Project context for a check: the hook through which project data reaches the rules.

:class:`StoreProjectContext` implements :class:`ProjectContext` from the project store; the
CLI calls :func:`resolve_project_context` for ``--project ID``. An unknown project raises
:class:`UnknownProjectError`, so a check never silently runs without the project's
pseudonym rule.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from disclosure_review.errors import UnknownProjectError

if TYPE_CHECKING:
    from enclave.config import Settings

# Stage-2 pseudonyms: 16 bytes of HMAC output in url-safe base64 without padding.
PSEUDONYM_TOKEN = re.compile(r"(?<![A-Za-z0-9_-])[A-Za-z0-9_-]{22}(?![A-Za-z0-9_-])")


@runtime_checkable
class ProjectContext(Protocol):
    """What the checker needs to know about the project an output comes from."""

    @property
    def project_id(self) -> str:
        """The project's identifier."""
        ...

    @property
    def pseudonym_pattern(self) -> re.Pattern[str]:
        """Candidate tokens to test with :meth:`is_pseudonym` (e.g. :data:`PSEUDONYM_TOKEN`)."""
        ...

    def is_pseudonym(self, token: str) -> bool:
        """True when ``token`` is a stage-2 pseudonym of this project."""
        ...

    @property
    def differencing_store(self) -> Path | None:
        """Folder of the project's :class:`~disclosure_review.differencing.DifferencingHistory`."""
        ...


# Provisioning writes the project's stage-2 pseudonyms here (one Parquet column
# ``pseudonym``) when it builds the extract; the checker reads it to decide membership.
PSEUDONYM_REGISTRY = "pseudonyms.parquet"
DIFFERENCING_FOLDER = "differencing"


@dataclass(frozen=True)
class StoreProjectContext:
    """:class:`ProjectContext` backed by the project store and the project folder.

    Parameters
    ----------
    project_id : str
        The project's code.
    project_dir : Path
        ``settings.projects_dir / project_id``.
    """

    project_id: str
    project_dir: Path
    pseudonym_pattern: re.Pattern[str] = PSEUDONYM_TOKEN

    @property
    def differencing_store(self) -> Path:
        """``<project folder>/differencing``."""
        return self.project_dir / DIFFERENCING_FOLDER

    @cached_property
    def _registry(self) -> frozenset[str] | None:
        path = self.project_dir / PSEUDONYM_REGISTRY
        if not path.is_file():
            return None
        import polars as pl

        return frozenset(pl.read_parquet(path, columns=["pseudonym"])["pseudonym"].to_list())

    def is_pseudonym(self, token: str) -> bool:
        """Membership in the project's pseudonym registry when provisioning wrote one.

        Without a registry (no extract built yet) a token counts when it has the shape of a
        stage-2 pseudonym (22 base64url characters) and mixes upper case, lower case and
        digits, as random HMAC output almost always does and identifiers in code rarely do:
        erring towards a review finding is safer than letting a pseudonym out.
        """
        if not _PSEUDONYM_SHAPE.match(token):
            return False
        registry = self._registry
        if registry is not None:
            return token in registry
        return (any(c.isupper() for c in token) and any(c.islower() for c in token)
                and any(c.isdigit() for c in token))


_PSEUDONYM_SHAPE = re.compile(r"^[A-Za-z0-9_-]{22}$")


def resolve_project_context(project_id: str, *, settings: Settings | None = None
                            ) -> ProjectContext:
    """Return the :class:`ProjectContext` of ``project_id`` from the project store.

    Parameters
    ----------
    project_id : str
        Project code (e.g. ``P2026-001``).
    settings : Settings, optional
        Default: :func:`enclave.config.load_settings`.

    Raises
    ------
    UnknownProjectError
        No project with this code exists in the state store.
    """
    from sqlalchemy import select

    from enclave.config import load_settings
    from enclave.state.db import session_scope
    from enclave.state.models import Project

    settings = settings or load_settings()
    with session_scope(settings) as session:
        found = session.execute(
            select(Project.code).where(Project.code == project_id)
        ).scalar_one_or_none()
    if found is None:
        raise UnknownProjectError(
            f"project {project_id!r}: no such project in the state store; "
            "check the code with `enclave project list`"
        )
    return StoreProjectContext(project_id=found, project_dir=settings.projects_dir / found)
