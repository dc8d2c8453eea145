"""One ingest batch, end to end: stage, validate, pseudonymize, reconcile, publish, audit.

Nothing of a batch is visible until the end: rows are staged under ``tmp/ingest-<batch>``
and published with one rename per area (vault, quarantine, escrow), then recorded as
committed together with the batch's audit entry. A batch killed at any point leaves the
vault as it was; running it again starts the batch afresh. A batch whose files were all
ingested before (same content checksums) does nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import polars as pl
import psutil
from pydantic import Field
from sqlalchemy import select

from catalog import Catalog, load_catalog
from catalog.model import FileDef
from enclave import audit, clock
from enclave.config import Settings
from enclave.policies import PolicyModel, load_policy
from enclave.roles import Role
from enclave.state.db import session_scope
from enclave.state.models import IngestBatch, IngestFile
from enclave.users import require
from pipelines import person_summary, vault
from pipelines.ingest import crossrow, quarantine
from pipelines.ingest.crossrow import connect_duckdb, line_table
from pipelines.ingest.decode import split_spans
from pipelines.ingest.errors import IngestError, ValidatorDisagreement
from pipelines.ingest.expectations import validate_distinct, warm_up
from pipelines.ingest.report import write_report
from pipelines.ingest.sources import SourceFile, canonical_encoding, detect_encoding, discover, with_checksums
from pipelines.ingest.stage import Progress, SpanResult, fault_point, write_private_parquet
from pipelines.ingest.tokens import TOKEN_DTYPE
from pipelines.ingest.workers import Pending, SpanRunner, SpanTask, span_runner


class IngestPolicy(PolicyModel):
    encodings: list[str] = Field(default_factory=lambda: ["utf-8", "cp950"])
    chunk_bytes: int = 16 << 20
    workers: int = 2
    span_min_bytes: int = 32 << 20
    soft_reference_action: Literal["report", "quarantine"] = "report"


@dataclass
class FileOutcome:
    source_file: str
    file_type: str
    year: int
    sha256: str
    encoding: str = ""
    status: str = "ingested"
    rows_read: int = 0
    rows_accepted: int = 0
    rows_quarantined: int = 0
    quarantined_by_rule: dict[str, int] = field(default_factory=dict)
    warnings: list[dict[str, Any]] = field(default_factory=list)
    validation: list[dict[str, Any]] = field(default_factory=list)

    @property
    def reconciled(self) -> bool:
        return self.rows_read == self.rows_accepted + self.rows_quarantined


@dataclass
class BatchResult:
    batch: str
    status: str
    content_sha256: str
    files: list[FileOutcome]
    ignored: list[str]
    report: str | None = None
    tokens_hashed: int = 0

    @property
    def reconciled(self) -> bool:
        return all(f.reconciled for f in self.files)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["reconciled"] = self.reconciled
        for f, obj in zip(data["files"], self.files, strict=True):
            f["reconciled"] = obj.reconciled
        return data


def _content_checksum(sources: list[SourceFile]) -> str:
    digest = hashlib.sha256()
    for src in sorted(sources, key=lambda s: s.name):
        digest.update(f"{src.name}\0{src.sha256}\n".encode())
    return digest.hexdigest()


def _already_ingested(session, sha: str) -> str | None:
    row = session.execute(
        select(IngestBatch.name)
        .join(IngestFile)
        .where(
            IngestFile.sha256 == sha,
            IngestBatch.status == "committed",
            IngestFile.status == "ingested",
        )
    ).first()
    return row[0] if row else None


def _validate(src: SourceFile, order: int, catalog: Catalog, staging: Path, outcome: FileOutcome) -> None:
    """great-expectations over the file's distinct values (all spans), cross-checked against the
    compiled rules; a disagreement fails the batch before anything is published."""
    parts = sorted((staging / "distinct").glob(f"{order:03d}-*.parquet"))
    distinct: dict[str, pl.Series] = {}
    if parts:
        table = pl.concat([pl.read_parquet(p) for p in parts]).unique()
        for (column,), values in table.partition_by("column", as_dict=True).items():
            distinct[column] = values.get_column("value").rename(column)
    results = validate_distinct(src.definition, catalog, distinct)
    problems = [p for r in results for p in r.disagreements]
    outcome.validation = [
        {"column": r.column, "distinct_values": r.distinct_values, "expectations": r.results} for r in results
    ]
    if problems:
        raise ValidatorDisagreement(
            f"{src.name}: great-expectations and the compiled rules disagree "
            f"(nothing published): {'; '.join(problems[:5])}"
        )


def _staged_paths(staging: Path, file_type: str) -> list[Path]:
    return sorted((staging / "vault" / f"file={file_type}").glob("year=*/*.parquet"))


def _apply_crossrow(
    staging: Path,
    catalog: Catalog,
    sources: list[SourceFile],
    outcomes: dict[str, FileOutcome],
    settings: Settings,
    session,
    soft_reference_action: str = "report",
) -> None:
    types = []
    for src in sources:
        if src.definition.name not in [t.name for t in types]:
            types.append(src.definition)
    related = set(t.name for t in types)
    for t in types:
        if t.parent:
            related.add(t.parent.file)
        related.update(r.file for r in t.references)
    staged = {name: _staged_paths(staging, name) for name in related}
    committed = {name: vault.file_paths(settings, session, name) for name in related}
    results = crossrow.run(
        types, catalog, staged, committed, spill_dir=staging, soft_reference_action=soft_reference_action
    )
    encodings = {o.source_file: o.encoding for o in outcomes.values()}
    by_name = {s.name: s for s in sources}
    con = connect_duckdb(staging)
    for t in types:
        result = results[t.name]
        for outcome in outcomes.values():
            if outcome.file_type == t.name:
                outcome.warnings.extend(result.warnings)
        if not result.rejected:
            continue
        # A row both duplicated and orphaned is quarantined once, under its first rule.
        seen: set[tuple[str, int]] = set()
        result.rejected = [r for r in result.rejected if (r[0], r[1]) not in seen and not seen.add((r[0], r[1]))]
        wanted: dict[str, set[int]] = {}
        for src_name, line, *_ in result.rejected:
            wanted.setdefault(src_name, set()).add(line)
        raws = {
            name: quarantine.read_lines(by_name[name].path, encodings[name], lines) for name, lines in wanted.items()
        }
        qframe = quarantine.from_crossrow(result.rejected, t.name, raws, encodings)
        write_private_parquet(qframe, staging / "quarantine" / f"crossrow-{t.name}.parquet")
        # Rewrite this file type's staged rows without the rejected ones.
        paths = staged[t.name]
        con.register("rejects", line_table(result.rejected))
        for path in paths:
            kept = con.sql(
                f"SELECT * FROM read_parquet('{path}') p ANTI JOIN rejects r "
                "ON p._source = r._source AND p._line = r._line"
            ).pl()
            if kept.height:
                write_private_parquet(kept, path)
            else:
                path.unlink()
        con.unregister("rejects")
    con.close()


def _count_staged(staging: Path, outcomes: dict[str, FileOutcome]) -> None:
    paths = sorted((staging / "vault").glob("file=*/year=*/*.parquet"))
    qpaths = sorted((staging / "quarantine").glob("*.parquet"))
    con = connect_duckdb(staging)
    accepted: dict[str, int] = {}
    if paths:
        accepted = dict(
            con.execute(
                f"SELECT _source, count(*) FROM read_parquet({[str(p) for p in paths]}, union_by_name=true) GROUP BY 1"
            ).fetchall()
        )
    by_rule: dict[str, dict[str, int]] = {}
    if qpaths:
        for src, rule, n in con.execute(
            f"SELECT source_file, rule, count(*) FROM read_parquet({[str(p) for p in qpaths]}) GROUP BY 1, 2"
        ).fetchall():
            by_rule.setdefault(src, {})[rule] = int(n)
    con.close()
    for name, outcome in outcomes.items():
        outcome.rows_accepted = int(accepted.get(name, 0))
        outcome.quarantined_by_rule = dict(sorted(by_rule.get(name, {}).items()))
        outcome.rows_quarantined = sum(outcome.quarantined_by_rule.values())


def _summarise_people(staging: Path, catalog: Catalog) -> None:
    """The batch's person summaries (:mod:`pipelines.person_summary`), from its final rows."""
    con = connect_duckdb(staging)
    try:
        person_summary.write_summaries(con, staging / "vault", catalog)
    finally:
        con.close()


def _new_escrow(settings: Settings, staging: Path) -> tuple[pl.DataFrame, int]:
    """The batch's escrow records not already in the vault's escrow, and how many distinct
    identifiers the batch hashed (spans hash independently; duplicates collapse here)."""
    parts = sorted((staging / "escrow-parts").glob("*.parquet"))
    if not parts:
        return pl.DataFrame(schema={"kind": pl.String, "token": TOKEN_DTYPE, "sealed": pl.Binary}), 0
    fresh = pl.concat([pl.read_parquet(p) for p in parts]).unique(subset=["kind", "token"], keep="first")
    hashed = fresh.height
    existing = sorted(vault.escrow_dir(settings).glob("batch=*/*.parquet"))
    if existing:
        con = connect_duckdb(staging)
        con.register("fresh", fresh.to_arrow())
        fresh = con.sql(
            f"SELECT f.* FROM fresh f ANTI JOIN read_parquet({[str(p) for p in existing]}) e "
            "ON f.kind = e.kind AND f.token = e.token"
        ).pl()
        con.close()
    return fresh, hashed


def _new_staging(settings: Settings) -> Path:
    """A fresh custodian-only staging folder for this process; folders left by ingests whose
    process is gone (killed midway) are removed first."""
    settings.tmp_dir.mkdir(parents=True, exist_ok=True)
    for old in settings.tmp_dir.glob("ingest-*"):
        owner = old.name.split("-")[1]
        if not (owner.isdigit() and psutil.pid_exists(int(owner))):
            shutil.rmtree(old, ignore_errors=True)
    staging = settings.tmp_dir / f"ingest-{os.getpid()}-{secrets.token_hex(4)}"
    staging.mkdir(mode=0o700)
    return staging


def _span_tasks(
    to_process: list[SourceFile],
    encoding: str | None,
    policy: IngestPolicy,
    workers: int,
    staging: Path,
    keys_dir: Path,
) -> tuple[list[SpanTask], dict[str, str]]:
    """Check every header, then cut each file into spans (large files into one per worker)."""
    tasks: list[SpanTask] = []
    encodings: dict[str, str] = {}
    for order, src in enumerate(to_process):
        enc = canonical_encoding(encoding) if encoding else detect_encoding(src.path, policy.encodings)
        encodings[src.name] = enc
        spans = split_spans(
            src.path,
            expected_columns=[c.name for c in src.definition.columns],
            encoding=enc,
            parts=workers,
            min_bytes=policy.span_min_bytes,
        )
        tasks += [
            SpanTask(src.path, src.definition.name, order, i, span, enc, policy.chunk_bytes, staging, keys_dir)
            for i, span in enumerate(spans)
        ]
    return tasks, encodings


def _workers(src_dir: Path, catalog: Catalog, policy: IngestPolicy, custom_catalog: bool) -> int:
    """Worker processes for this batch: 1 (in-process) for small batches or a custom catalog."""
    if custom_catalog or policy.workers <= 1 or not src_dir.is_dir():
        return 1
    size = sum(p.stat().st_size for p in src_dir.iterdir() if p.is_file() and catalog.match_source(p.name))
    return policy.workers if size >= 2 * policy.span_min_bytes else 1


def _add_span(outcome: FileOutcome, span: SpanResult, definition: FileDef) -> None:
    outcome.rows_read += span.rows_read
    for name, count in span.invariant_fail.items():
        inv = next(i for i in definition.invariants if i.name == name)
        existing = next((w for w in outcome.warnings if w["rule"] == f"invariant:{name}"), None)
        if existing:
            existing["rows"] += count
            continue
        outcome.warnings.append(
            {
                "rule": f"invariant:{name}",
                "severity": inv.severity,
                "detail": inv.description.en,
                "rows": count,
                "sample_lines": [],
            }
        )


def ingest_directory(
    settings: Settings,
    src_dir: Path,
    *,
    actor: str,
    batch_name: str | None = None,
    encoding: str | None = None,
    progress: Progress | None = None,
    catalog: Catalog | None = None,
) -> BatchResult:
    """Ingest every recognised source file of ``src_dir`` as one batch.

    Raises
    ------
    IngestError
        No recognised file, a file that cannot be parsed at all (bad header, empty), a batch
        name reused for other content.
    ValidatorDisagreement
        great-expectations and the compiled rules judged a value differently.
    """
    custom_catalog = catalog is not None
    catalog = catalog or load_catalog()
    policy = load_policy("ingest", IngestPolicy, settings)
    src_dir = Path(src_dir)
    with session_scope(settings) as session:
        who = require(session, actor, Role.CUSTODIAN)
        removed = vault.remove_uncommitted(settings, session)
    workers = _workers(src_dir, catalog, policy, custom_catalog)
    # Workers start (and import) while the files are hashed.
    with span_runner(workers, progress, catalog) as runner:
        return _ingest(settings, src_dir, who.username, removed, batch_name, encoding, catalog, policy, workers, runner)


def _ingest(
    settings: Settings,
    src_dir: Path,
    actor: str,
    removed: list[str],
    batch_name: str | None,
    encoding: str | None,
    catalog: Catalog,
    policy: IngestPolicy,
    workers: int,
    runner: SpanRunner,
) -> BatchResult:
    sources, ignored = discover(src_dir, catalog)
    if not sources:
        raise IngestError(
            f"{src_dir}: no source file recognised by the catalog (expected names such as H_NHI_OPDTE_2023.csv)"
        )
    staging = _new_staging(settings)
    pending: Pending | None = None
    try:
        # Spans start at once (in worker processes) while the files are hashed here; if the
        # checksums show that a file was ingested before, the spans are stopped and only
        # the new files are processed.
        tasks, encodings = _span_tasks(sources, encoding, policy, workers, staging, settings.keys_dir)
        pending = runner.start(tasks)
        # great-expectations takes seconds to import: load it while the spans run. Started only
        # now, so its Python-bound import does not hold up cutting the spans.
        threading.Thread(target=warm_up, name="gx-import", daemon=True).start()
        sources = with_checksums(sources)
        content = _content_checksum(sources)
        name = batch_name or f"b{content[:12]}"
        outcomes: dict[str, FileOutcome] = {}
        to_process: list[SourceFile] = []
        with session_scope(settings) as session:
            existing = session.execute(select(IngestBatch).where(IngestBatch.name == name)).scalar_one_or_none()
            if existing is not None and existing.status == "committed":
                pending.abort()
                if existing.content_sha256 == content:
                    files = [
                        FileOutcome(
                            f.file_name,
                            f.file_type,
                            f.data_year,
                            f.sha256,
                            f.encoding,
                            "already_ingested",
                            f.rows_read,
                            f.rows_accepted,
                            f.rows_quarantined,
                        )
                        for f in existing.files
                    ]
                    return BatchResult(name, "already_ingested", content, files, ignored)
                raise IngestError(f"batch name {name!r} was used for different files; choose another --batch")
            for src in sources:
                earlier = _already_ingested(session, src.sha256)
                if earlier:
                    outcomes[src.name] = FileOutcome(
                        src.name,
                        src.definition.name,
                        src.year,
                        src.sha256,
                        status=f"already_ingested:{earlier}",
                    )
                else:
                    to_process.append(src)
            audit.record(
                session,
                settings,
                actor=actor,
                role=Role.CUSTODIAN.value,
                action="ingest.start",
                obj=name,
                details={
                    "source_dir": str(src_dir),
                    "files": [s.name for s in sources],
                    "cleaned_up": removed,
                },
            )
        if len(to_process) < len(sources):
            pending.abort()
            shutil.rmtree(staging)
            staging.mkdir(mode=0o700)
            tasks, encodings = _span_tasks(to_process, encoding, policy, workers, staging, settings.keys_dir)
            pending = runner.start(tasks)
        runner.confirm()  # these spans stand: their progress may be shown
        for src in to_process:
            outcomes[src.name] = FileOutcome(
                src.name, src.definition.name, src.year, src.sha256, encoding=encodings[src.name]
            )
        for task, span_result in zip(tasks, pending.results(), strict=True):
            _add_span(outcomes[task.path.name], span_result, catalog.file(task.file_type))
        runner.close()
        processing = {k: v for k, v in outcomes.items() if v.status == "ingested"}
        # great-expectations (Python-bound) runs while DuckDB (native threads) does the
        # cross-row rules, the counts and the escrow merge; a disagreement still stops the batch
        # before anything is published.
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="ingest-gx") as pool:
            validations = pool.submit(
                lambda: [
                    _validate(src, order, catalog, staging, outcomes[src.name]) for order, src in enumerate(to_process)
                ]
            )
            with session_scope(settings) as session:
                _apply_crossrow(
                    staging, catalog, to_process, processing, settings, session, policy.soft_reference_action
                )
            _count_staged(staging, processing)
            escrow, hashed = _new_escrow(settings, staging)
            _summarise_people(staging, catalog)
            validations.result()
        unreconciled = [o.source_file for o in processing.values() if not o.reconciled]
        if unreconciled:
            raise IngestError(f"counts do not reconcile for {unreconciled}; nothing published")
        if escrow.height:
            write_private_parquet(escrow, staging / "escrow" / "escrow.parquet")
        result = BatchResult(
            name,
            "committed",
            content,
            [outcomes[s.name] for s in sources],
            ignored,
            tokens_hashed=hashed,
        )
        report_dir = staging / "report"
        write_report(result, report_dir)
        fault_point("before_publish")
        for area, root in (
            ("quarantine", settings.quarantine_dir),
            ("escrow", vault.escrow_dir(settings)),
            ("vault", settings.vault_dir),
        ):
            if (staging / area).is_dir():
                root.mkdir(parents=True, exist_ok=True, mode=0o700)
                vault.publish(staging / area, root / f"batch={name}")
        fault_point("after_publish")
        reports = settings.batches_dir / name
        if reports.exists():
            shutil.rmtree(reports)
        vault.publish(report_dir, reports)
        result.report = str(reports / "report.html")
        with session_scope(settings) as session:
            batch = IngestBatch(
                name=name,
                source_dir=str(src_dir.resolve()),
                content_sha256=content,
                status="committed",
                started_at=clock.now(),
                finished_at=clock.now(),
                actor=actor,
                summary=json.dumps({"files": len(sources), "ignored": ignored, "tokens_hashed": hashed}),
            )
            batch.files = [
                IngestFile(
                    file_name=o.source_file,
                    file_type=o.file_type,
                    data_year=o.year,
                    sha256=o.sha256,
                    encoding=o.encoding or "-",
                    rows_read=o.rows_read,
                    rows_accepted=o.rows_accepted,
                    rows_quarantined=o.rows_quarantined,
                    status="ingested" if o.status == "ingested" else "skipped",
                )
                for o in result.files
            ]
            session.add(batch)
            audit.record(
                session,
                settings,
                actor=actor,
                role=Role.CUSTODIAN.value,
                action="ingest.batch",
                obj=name,
                details={
                    "content_sha256": content,
                    "files": [
                        {
                            "file": o.source_file,
                            "read": o.rows_read,
                            "accepted": o.rows_accepted,
                            "quarantined": o.rows_quarantined,
                            "status": o.status,
                        }
                        for o in result.files
                    ],
                },
            )
        return result
    finally:
        if pending is not None:
            pending.abort()  # spans still writing (the batch failed elsewhere) stop first
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
