"""Project context for a check: the hook through which project data reaches the rules.

The lead engineer implements :class:`ProjectContext` from the project store; the CLI calls
:func:`resolve_project_context` for ``--project ID``. Until the store exists the resolver
raises :class:`UnknownProjectError`, so a check never silently runs without the project's
pseudonym rule.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Protocol, runtime_checkable

from disclosure_review.errors import UnknownProjectError

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


def resolve_project_context(project_id: str) -> ProjectContext:
    """Return the :class:`ProjectContext` of ``project_id``.

    Raises
    ------
    UnknownProjectError
        Always, for now: the project store that implements the context is not wired yet.
    """
    raise UnknownProjectError(
        f"project {project_id!r}: unknown to the checker (the project store is not connected "
        "yet); run the check without --project or ask the lead to wire resolve_project_context"
    )
