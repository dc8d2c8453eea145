"""Later opt-outs: remove people who opted out after provisioning from every active extract.

Switched by ``apply_to_active_extracts`` in ``policies/optout.yaml``. Each active project
whose extract was built with a different opt-out set is rebuilt from the same vault batches
(so no new data slips in) with today's registry, through the same atomic path as
provisioning: the same key gives the same pseudonyms and the integer index stays stable.
One audit entry per project carries the counts, and one for the whole run.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from enclave import audit
from enclave.config import Settings
from enclave.optout import opted_out_tokens, optout_policy
from enclave.roles import Role
from enclave.state.models import Project, ProjectExtract
from enclave.users import require
from pipelines.provision.policy import provisioning_policy
from pipelines.provision.project import MANIFEST, optouts_digest, project_dir, provision_project


@dataclass
class ApplyResult:
    """Per project: rows and people newly removed (or why it was skipped)."""

    enabled: bool
    projects: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"enabled": self.enabled, "projects": self.projects}


def _manifest(settings: Settings, code: str) -> dict:
    path = project_dir(settings, code) / "extract" / MANIFEST
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def apply_later_optouts(session: Session, settings: Settings, *, actor: str) -> ApplyResult:
    """Rebuild every active extract whose opt-out set changed; custodian only."""
    from enclave.projects import service

    who = require(session, actor, Role.CUSTODIAN)
    if not optout_policy(settings).apply_to_active_extracts:
        audit.record(session, settings, actor=who.username, role=Role.CUSTODIAN.value,
                     action="optout.apply", obj="active extracts",
                     details={"enabled": False})
        return ApplyResult(enabled=False)
    active = set(provisioning_policy(settings).active_statuses)
    digest = optouts_digest(opted_out_tokens(session, service.today()))
    result = ApplyResult(enabled=True)
    extracts = session.execute(
        select(ProjectExtract, Project).join(Project, Project.code == ProjectExtract.project_code)
        .where(ProjectExtract.status == "present").order_by(ProjectExtract.project_code)
    ).all()
    for record, project in extracts:
        if project.status not in active:
            result.projects.append({"project": project.code, "skipped": f"status {project.status}"})
            continue
        before = _manifest(settings, project.code)
        if before.get("optouts_sha256") == digest:
            result.projects.append({"project": project.code, "removed_rows": 0, "removed_people": 0,
                                    "skipped": "opt-out set unchanged"})
            continue
        old_files = before.get("files", {})
        rebuilt = provision_project(session, settings, code=project.code, actor=who.username,
                                    batches=json.loads(record.batches_json),
                                    action="optout.apply_to_extract")
        per_file = {
            name: {
                "removed_rows": old_files.get(name, {}).get("rows", info["rows"]) - info["rows"],
                "removed_people": info["optouts_excluded_people"]
                - old_files.get(name, {}).get("optouts_excluded_people", 0),
            }
            for name, info in rebuilt.files.items()
        }
        result.projects.append({
            "project": project.code,
            "removed_rows": sum(v["removed_rows"] for v in per_file.values()),
            "removed_people": rebuilt.excluded_people - sum(
                f.get("optouts_excluded_people", 0) for f in old_files.values()),
            "per_file": per_file,
        })
    audit.record(session, settings, actor=who.username, role=Role.CUSTODIAN.value,
                 action="optout.apply", obj="active extracts",
                 details={"enabled": True, "projects": result.projects})
    return result
