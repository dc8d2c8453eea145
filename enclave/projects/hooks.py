"""The closure-hook registry: what must happen when a project's period ends unextended.

At expiry without extension the project is marked for deletion and every registered hook
runs (in registration order) inside the same transaction. The provisioning pipeline
registers the hook that deletes the extract and destroys the project key; this module only
defines the contract.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy.orm import Session

from enclave.config import Settings
from enclave.state.models import Project

ClosureHook = Callable[[Session, Settings, Project], None]

_HOOKS: list[ClosureHook] = []


def register_closure_hook(fn: ClosureHook) -> ClosureHook:
    """Register ``fn(session, settings, project)`` to run when a project is marked for deletion.

    Usable as a decorator. Registering the same function twice has no effect. A hook that
    raises aborts the expiry transaction, so the project stays active and the job retries.
    """
    if fn not in _HOOKS:
        _HOOKS.append(fn)
    return fn


def unregister_closure_hook(fn: ClosureHook) -> None:
    """Remove a hook (tests, or a plug-in being unloaded)."""
    if fn in _HOOKS:
        _HOOKS.remove(fn)


def closure_hooks() -> tuple[ClosureHook, ...]:
    """The registered hooks, in order."""
    return tuple(_HOOKS)


def run_closure_hooks(session: Session, settings: Settings, project: Project) -> list[str]:
    """Run every hook for ``project``; return their names (for the audit entry)."""
    names = []
    for hook in _HOOKS:
        hook(session, settings, project)
        names.append(getattr(hook, "__qualname__", repr(hook)))
    return names


# Known hook modules register themselves on import; loading them here makes their hooks active
# wherever the expiry job runs (the provisioning hook deletes data and destroys the key).
import pipelines.provision.closure  # noqa: E402,F401  (circular-safe: the registry is defined above)
