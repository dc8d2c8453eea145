"""The closure hook: at a project's end, delete its data and destroy its key (crypto-shredding).

Registered with :func:`enclave.projects.hooks.register_closure_hook` when this module is
imported (``enclave.projects.hooks`` imports it, so the hook is active wherever the expiry
job runs). Deletes ``extract/``, ``scratch/``, the pseudonym registry and the differencing
history, then destroys the wrapped project key: afterwards no stored material can map the
project's pseudonyms back to stage-1 tokens. Released outputs in ``outbox/`` stay (aggregate,
already reviewed). Idempotent, so the expiry job may retry.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from enclave.config import Settings
from enclave.projects.hooks import register_closure_hook
from enclave.state.models import Project

DELETED = ("extract", "scratch", "differencing", "pseudonyms.parquet")


@register_closure_hook
def delete_project_data(session: Session, settings: Settings, project: Project) -> None:
    """Delete the extract and scratch area, and destroy the project key (closure hook)."""
    from sqlalchemy import select

    from enclave import audit, clock
    from enclave.keys import KeyStore, destroy_project_key, project_key_path
    from enclave.state.models import ProjectExtract
    from pipelines.provision.extract import force_remove, remove_leftovers

    root = settings.projects_dir / project.code
    removed = []
    if root.is_dir():
        remove_leftovers(root)
        for name in DELETED:
            path = root / name
            if path.is_dir():
                force_remove(path)
                removed.append(name)
            elif path.exists():
                path.unlink()
                removed.append(name)
    keys = KeyStore.for_home(settings.keys_dir)
    wrapped = project_key_path(keys, project.code)
    had_key = wrapped.is_file()
    wrapped.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    moment = clock.now()
    destroy_project_key(keys, project.code, when=moment.isoformat(timespec="seconds"))
    record = session.execute(
        select(ProjectExtract).where(ProjectExtract.project_code == project.code)
    ).scalar_one_or_none()
    if record is not None:
        record.status = "deleted"
        record.deleted_at = moment
    audit.record(session, settings, actor="system", role="system", action="provision.closure",
                 obj=project.code, project=project.code,
                 details={"deleted": removed, "key_destroyed": had_key})
