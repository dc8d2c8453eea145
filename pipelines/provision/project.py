"""``provision_project``: one approved project's extract, from the vault to the project area.

Order of work: check who and which project; plan the selection from the steward's
decisions; create (or load) the project key; read the opt-out registry as of today; write the
extract, its indexes, data dictionary, representativeness report and manifest into a staging
folder; make it read-only; swap it in; then record it in the state store with an audit entry
in the same transaction. A failure anywhere before the swap removes the staging folder; a
killed run leaves one that the next run deletes. Re-running rebuilds the extract with the
same pseudonyms (same key) and a stable integer index.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import duckdb
import polars as pl
import pyarrow as pa
from sqlalchemy import select
from sqlalchemy.orm import Session

from catalog import Catalog, load_catalog
from enclave import audit, clock
from enclave.checksums import sha256_file
from enclave.config import Settings
from enclave.keys import KeyStore, SecretKey, create_project_key, project_key
from enclave.optout import opted_out_tokens
from enclave.roles import Role
from enclave.state.models import Project, ProjectExtract
from enclave.users import require
from pipelines import person_summary, vault
from pipelines.provision import dictionary, extract, people, representativeness
from pipelines.provision.errors import ProjectNotProvisionable
from pipelines.provision.policy import provisioning_policy
from pipelines.provision.pseudonymize import stage2_mapping
from pipelines.provision.select import FilePlan, plan_selection

PSEUDONYMS_FILE = "pseudonyms.parquet"
MANIFEST = "manifest.json"


@dataclass
class ProvisionResult:
    """What a provisioning run produced (no identifiers, no key material)."""

    project: str
    extract_dir: Path
    rows: int
    excluded_rows: int
    excluded_people: int
    files: dict[str, dict] = field(default_factory=dict)
    warnings: list[dict] = field(default_factory=list)
    manifest_sha256: str = ""

    def to_dict(self) -> dict:
        return {
            "project": self.project, "extract": str(self.extract_dir), "rows": self.rows,
            "optouts_excluded_rows": self.excluded_rows,
            "optouts_excluded_people": self.excluded_people,
            "files": {k: {kk: vv for kk, vv in v.items() if kk != "parts"} for k, v in self.files.items()},
            "representativeness_warnings": self.warnings, "manifest_sha256": self.manifest_sha256,
        }


def project_dir(settings: Settings, code: str) -> Path:
    return settings.projects_dir / code


def paths_in_batches(settings: Settings, batches: list[str]) -> extract.PathsFor:
    """``(file, year or None) -> Parquet paths`` restricted to ``batches`` (pinned per extract)."""

    def paths_for(file: str, year: int | None) -> list[Path]:
        out: list[Path] = []
        for batch in batches:
            root = vault.batch_dir(settings, batch) / f"file={file}"
            pattern = f"year={year}" if year is not None else "year=*"
            for year_dir in sorted(root.glob(pattern)):
                out.extend(sorted(year_dir.glob("*.parquet")))
        return out

    return paths_for


def project_plans(project: Project, catalog: Catalog) -> list[FilePlan]:
    """The approved selection of ``project`` as file plans."""
    from enclave.projects import service

    return plan_selection(catalog, service.approved_columns(project), service.approved_file_years(project))


def _ensure_project_area(root: Path) -> None:
    # Group ownership is left to the hub integration, which creates the Unix group.
    for path, mode in ((root, 0o750), (root / "scratch", 0o2770), (root / "differencing", 0o700)):
        if not path.exists():
            path.mkdir(parents=True, exist_ok=True)
            os.chmod(path, mode)


def read_index(extract_dir: Path) -> dict[str, pa.Table]:
    """The current extract's person/institution indexes (empty when there is none)."""
    out = {}
    for kind in extract.INDEX_KINDS:
        path = extract_dir / f"{kind}_index.parquet"
        if path.is_file():
            out[kind] = pl.read_parquet(path).to_arrow()
    return out


def optouts_digest(tokens: set[bytes]) -> str:
    """A digest of the opt-out set used (detects later changes without storing the tokens)."""
    digest = hashlib.sha256()
    for token in sorted(tokens):
        digest.update(token)
    return digest.hexdigest()


def _stage_pseudonyms(root: Path, mappings: dict[str, pa.Table]) -> Path:
    """Write the custodian-side pseudonym registry to a staged file in the project area (0600);
    the caller renames it into place once the extract is published."""
    columns = [mappings[kind].column("pseudonym") for kind in sorted(mappings)]
    names = pa.chunked_array([c for col in columns for c in col.chunks], pa.string())
    tmp = extract.new_staged_file(root, PSEUDONYMS_FILE)
    # Each kind's pseudonyms are distinct already (checked when hashed).
    extract.write_distinct_values(pa.table({"pseudonym": names}), tmp)
    return tmp


def _pseudonymize(
    con: duckdb.DuckDBPyConnection, key: SecretKey, first: Future, rest: Future, *, rest_people: bool
) -> dict[str, pa.Table]:
    """Hash pass 1's tokens (``first``: the people's, ``rest``: the other identifiers') into
    (token, pseudonym) tables, people first, opted-out people never.

    While this thread hashes, DuckDB keeps to one thread (the calling one of each query), so
    the hashing, which the copy waits for, has a core of its own (DuckDB releases the GIL;
    the hashing holds it).
    """
    found = first.result()
    if rest_people:  # person columns in order files too (rare): wait for them
        found = extract.merge_tokens(found, {"person": rest.result()["person"]})
    people_tokens = extract.drop_opted_out(con, found["person"]) if "person" in found else None
    threads = int(con.sql("SELECT current_setting('threads')").fetchall()[0][0])
    con.execute("SET threads = 1")
    try:
        mappings: dict[str, pa.Table] = {}
        if people_tokens is not None:
            mappings["person"] = stage2_mapping(key, "person", people_tokens)
        for kind, tokens in sorted(rest.result().items()):
            if kind != "person":
                mappings[kind] = stage2_mapping(key, kind, tokens)
        return mappings
    finally:
        con.execute(f"SET threads = {threads}")


def provision_project(
    session: Session,
    settings: Settings,
    *,
    code: str,
    actor: str,
    batches: list[str] | None = None,
    on_step: Callable[[str], None] | None = None,
    action: str = "project.provision",
) -> ProvisionResult:
    """Build (or rebuild) the extract of project ``code``; custodian only.

    Parameters
    ----------
    batches : vault batches to read; default every committed batch (a rebuild for later
        opt-outs passes the batches of the current extract, so no new data slips in).
    on_step : called with a short progress message after each step.

    Raises
    ------
    PermissionDenied
        ``actor`` is not an active custodian.
    ProjectNotProvisionable
        The project's status is not in ``provisionable_statuses`` of the policy.
    SelectionError
        The approved selection is empty or names columns the catalog lacks.
    KeyDestroyedError
        The project was closed and its key destroyed.
    """
    from enclave.projects import service

    who = require(session, actor, Role.CUSTODIAN)
    policy = provisioning_policy(settings)
    project = service.get_project(session, code)
    if project.status not in policy.provisionable_statuses:
        raise ProjectNotProvisionable(
            f"project {code} is {project.status}; an extract is built only for "
            f"{policy.provisionable_statuses} (policies/provisioning.yaml)"
        )
    catalog = load_catalog()
    plans = project_plans(project, catalog)
    keys = KeyStore.for_home(settings.keys_dir)
    create_project_key(keys, code)
    key = project_key(keys, code)
    batches = list(batches) if batches is not None else vault.committed_batches(session)
    paths_for = paths_in_batches(settings, batches)
    root = project_dir(settings, code)
    _ensure_project_area(root)
    extract.remove_leftovers(root)
    stage = extract.new_stage(root)
    temp = settings.tmp_dir / f"duckdb-{code}-{secrets.token_hex(4)}"
    con = extract.connect(memory_limit=policy.duckdb_memory_limit, threads=policy.duckdb_threads,
                          temp_dir=temp)
    moment = clock.now()
    registry: Path | None = None
    # DuckDB work off this thread, one query at a time on a cursor of its own (GIL released):
    # first the people's tokens, which the hashing waits for; then the other identifiers; then
    # the people table and the report's counts, which nothing waits for until the copy.
    background = ThreadPoolExecutor(max_workers=1, thread_name_prefix="provision-duckdb")
    side = ThreadPoolExecutor(max_workers=1, thread_name_prefix="provision-side")
    cursor = con.cursor()
    people_for = person_summary.people_in_batches([vault.batch_dir(settings, b) for b in batches])
    first = background.submit(extract.find_tokens, cursor, extract.token_queries(
        plans, paths_for, people_first=True, catalog=catalog, people_for=people_for))
    try:
        at: date = service.today()
        opted = opted_out_tokens(session, at)
        extract.register_optouts(con, opted)
        rest_queries = extract.token_queries(plans, paths_for, people_first=False, catalog=catalog,
                                             people_for=people_for)

        def rest_tokens() -> dict[str, pa.Array]:
            extract.prepare_exclusions(cursor, plans, catalog, paths_for)
            return extract.find_tokens(cursor, rest_queries)

        def count() -> tuple[tuple[pl.DataFrame, int, int], dict[str, int]]:
            people.gather(cursor, plans=plans, catalog=catalog, people_for=people_for)
            people.flag_opted_out(cursor)
            return (representativeness.compute_counts(cursor, plans=plans, catalog=catalog, paths_for=paths_for,
                                                      policy=policy.representativeness),
                    people.excluded_people(cursor, plans))

        rest = background.submit(rest_tokens)
        tally = background.submit(count)
        prepared = extract.load_mappings(con, _pseudonymize(con, key, first, rest,
                                                            rest_people="person" in rest_queries))
        stamp = moment.isoformat(timespec="seconds")

        # Everything but the rows is Python, Polars and pyarrow work; DuckDB's COPY releases
        # the GIL, so it is written meanwhile.
        def side_files() -> tuple[dict, dict[str, int]]:
            nonlocal registry
            extract.write_indexes(prepared, stage, read_index(root / extract.EXTRACT))
            (stage / "data_dictionary.md").write_text(
                dictionary.render_markdown(plans, catalog, project=code, provisioned_at=stamp), encoding="utf-8")
            (stage / "data_dictionary.html").write_text(
                dictionary.render_html(plans, catalog, project=code, provisioned_at=stamp), encoding="utf-8")
            registry = _stage_pseudonyms(root, prepared.mappings)
            (counts, people_all, people_kept), excluded = tally.result()
            return representativeness.write_report(
                stage / "representativeness", project=code, counts=counts, people_all=people_all,
                people_kept=people_kept, policy=policy.representativeness), excluded

        report = side.submit(side_files)
        outcome = extract.copy_files(con, prepared, plans=plans, catalog=catalog,
                                     paths_for=paths_for, stage=stage, on_step=on_step)
        summary, excluded = report.result()
        for f in outcome.files:
            f.excluded_people = excluded.get(f.file, 0)
        for f in outcome.files:
            for part in f.parts:
                part["sha256"] = sha256_file(stage / part["path"])
        others = sorted(p for p in stage.rglob("*") if p.is_file() and "year=" not in str(p.relative_to(stage)))
        manifest = {
            "project": code,
            "provisioned_at": stamp,
            "provisioned_by": who.username,
            "optouts_as_of": at.isoformat(),
            "optouts_registry_size": len(opted),
            "optouts_sha256": optouts_digest(opted),
            "batches": batches,
            "rows": outcome.rows,
            "optouts_excluded_rows": outcome.excluded_rows,
            "files": {f.file: f.as_dict() for f in outcome.files},
            "other_files": {str(p.relative_to(stage)): sha256_file(p) for p in others},
            "representativeness_warnings": len(summary["warnings"]),
        }
        text = json.dumps(manifest, indent=2, ensure_ascii=False, sort_keys=True)
        (stage / MANIFEST).write_text(text, encoding="utf-8")
        extract.make_read_only(stage)
        extract.publish(stage, root)
    except BaseException:
        # Never delete the stage or close DuckDB under a thread still using them.
        side.shutdown(wait=True)
        background.shutdown(wait=True, cancel_futures=True)
        extract.force_remove(stage)
        if registry is not None:
            registry.unlink(missing_ok=True)
        raise
    finally:
        side.shutdown(wait=True)
        background.shutdown(wait=True)
        cursor.close()
        con.close()
        shutil.rmtree(temp, ignore_errors=True)
    os.replace(registry, root / PSEUDONYMS_FILE)
    manifest_sha = hashlib.sha256(text.encode()).hexdigest()
    excluded_people = sum(f.excluded_people for f in outcome.files)
    record = session.execute(select(ProjectExtract).where(ProjectExtract.project_code == code)).scalar_one_or_none()
    if record is None:
        record = ProjectExtract(project_code=code)
        session.add(record)
    record.status = "present"
    record.provisioned_at = moment
    record.provisioned_by = who.username
    record.optouts_as_of = at
    record.batches_json = json.dumps(batches)
    record.rows = outcome.rows
    record.excluded_rows = outcome.excluded_rows
    record.manifest_sha256 = manifest_sha
    record.deleted_at = None
    audit.record(
        session, settings, actor=who.username, role=Role.CUSTODIAN.value, action=action,
        obj=code, project=code,
        details={"rows": outcome.rows, "optouts_excluded_rows": outcome.excluded_rows,
                 "optouts_excluded_people": excluded_people,
                 "per_file": {f.file: {"rows": f.rows, "excluded_rows": f.excluded_rows,
                                       "excluded_people": f.excluded_people} for f in outcome.files},
                 "batches": len(batches), "manifest_sha256": manifest_sha,
                 "representativeness_warnings": len(summary["warnings"])},
    )
    return ProvisionResult(code, root / extract.EXTRACT, outcome.rows, outcome.excluded_rows,
                           excluded_people, manifest["files"], summary["warnings"], manifest_sha)
