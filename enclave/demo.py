"""The demo: an enclave built end to end on synthetic data, through the real code paths.

``build_demo`` runs every step a data centre would (initialise, generate source files, ingest,
import opt-out lists, create accounts, apply for, approve, sign and pay a project, provision it)
and is safe to run again: each step notices what is already done. Accounts get fixed demo
passwords that are printed; never use them outside a demo.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from enclave.config import SETTINGS_FILE, Settings, load_settings
from enclave.home import init_home
from enclave.state.db import session_scope
from enclave.yaml_text import parse_yaml

EXAMPLE_SPEC = Path(__file__).resolve().parent.parent / "docs" / "examples" / "project_spec.yaml"
CUSTODIAN = ("alice", "Alice Lin", "NHIA Information Integration Application Service Center")
# (username, full name, unit, roles); researchers and unit match docs/examples/project_spec.yaml.
PEOPLE = [
    (
        "chen.wei",
        "Chen Wei-Ting",
        "National Taiwan University, Institute of Epidemiology and Preventive Medicine",
        ["researcher"],
    ),
    (
        "lin.mei",
        "Lin Mei-Hua",
        "National Taiwan University, Institute of Epidemiology and Preventive Medicine",
        ["researcher"],
    ),
    ("wang.hao", "Wang Hao", "Taipei Medical University, School of Public Health", ["researcher"]),
    ("steve", "Steve Su", "NHIA", ["steward"]),
    ("rita", "Rita Kao", "NHIA", ["reviewer"]),
    ("audrey", "Audrey Ho", "NHIA Audit Office", ["auditor"]),
]


def demo_password(username: str) -> str:
    return f"demo-{username}-2026"


Step = Callable[[str], None]


# The demo's calendar: the workspace opens every day, round the clock, in two 12-hour slots,
# so whoever runs the quick start can log in at once. A deployment keeps policies/calendar.yaml.
DEMO_CALENDAR = """\
# DEMO ONLY (written by `enclave demo`): open every day, all day. The real service centre's
# hours are in the packaged policies/calendar.yaml.
timezone: Asia/Taipei
working_days: [mon, tue, wed, thu, fri, sat, sun]
slots:
  am: {start: "00:00", end: "12:00"}
  pm: {start: "12:00", end: "23:59"}
holidays: {}
makeup_working_days: {}
"""


def demo_policies(settings: Settings) -> Settings:
    """Give a new demo home its own copy of the policies with an always-open calendar."""
    if (settings.home / SETTINGS_FILE).is_file():
        return settings
    folder = settings.home / "policies"
    settings.home.mkdir(parents=True, exist_ok=True)
    shutil.copytree(settings.policies_dir, folder, dirs_exist_ok=True)
    (folder / "calendar.yaml").write_text(DEMO_CALENDAR, encoding="utf-8")
    (settings.home / SETTINGS_FILE).write_text(
        f'# demo enclave\n[enclave]\npolicies_dir = "{folder}"\n', encoding="utf-8"
    )
    return load_settings(settings.home)


@dataclass
class DemoResult:
    home: Path
    source: Path
    batch: str = ""
    project: str = ""
    steps: list[str] = field(default_factory=list)
    accounts: list[tuple[str, str, str]] = field(default_factory=list)
    settings: Settings | None = None


def build_demo(
    settings: Settings,
    *,
    people: int = 3000,
    years: tuple[int, int] = (2022, 2023),
    seed: int = 2026,
    defect_rate: float = 0.002,
    progress: Step | None = None,
    open_all_hours: bool = True,
) -> DemoResult:
    """Bring a demo enclave up to a provisioned, active project. Idempotent.

    With ``open_all_hours`` a new demo home gets its own policies whose calendar opens the
    workspace every day, all day (see :data:`DEMO_CALENDAR`).
    """
    say = progress or (lambda _msg: None)
    if open_all_hours:
        settings = demo_policies(settings)
    result = DemoResult(home=settings.home, source=settings.home / "demo-source", settings=settings)
    init_home(
        settings,
        admin_username=CUSTODIAN[0],
        admin_full_name=CUSTODIAN[1],
        admin_unit=CUSTODIAN[2],
        admin_password=demo_password(CUSTODIAN[0]),
    )
    result.steps.append("home initialised")
    result.accounts.append((CUSTODIAN[0], "custodian", demo_password(CUSTODIAN[0])))

    source = result.source
    if not (source / "ground_truth").exists() and not any(source.glob("*.csv")):
        from pipelines.synth import generate_source

        say(f"generating synthetic source files for {people} people, {years[0]}–{years[1]}")
        generate_source(
            source, people=people, years=list(range(years[0], years[1] + 1)), seed=seed, defect_rate=defect_rate
        )
    result.steps.append(f"source files in {source}")

    from pipelines.ingest import ingest_directory

    say("ingesting (validate, quarantine, stage-1 pseudonymize)")
    batch = ingest_directory(settings, source, actor=CUSTODIAN[0])
    result.batch = batch.batch
    result.steps.append(f"ingest batch {batch.batch}: {batch.status}")

    from enclave.optout import import_list

    with session_scope(settings) as session:
        for path in sorted((source / "optout").glob("*.csv")):
            import_list(session, settings, path, actor=CUSTODIAN[0])
    result.steps.append("opt-out lists merged")

    from enclave.users import add_user, list_users

    with session_scope(settings) as session:
        existing = {u.username for u in list_users(session)}
        for username, full_name, unit, roles in PEOPLE:
            if username not in existing:
                add_user(
                    session,
                    settings,
                    actor=CUSTODIAN[0],
                    username=username,
                    full_name=full_name,
                    unit=unit,
                    roles=roles,
                    password=demo_password(username),
                )
            result.accounts.append((username, ", ".join(roles), demo_password(username)))

    result.project = _active_project(settings, say)
    result.steps.append(f"project {result.project} active")
    _provision(settings, result.project, say, result)
    return result


def _active_project(settings: Settings, say: Step) -> str:
    from enclave.projects import service
    from enclave.projects.spec import parse_spec

    with session_scope(settings) as session:
        for project in service.list_projects(session):
            if project.applicant == "chen.wei" and project.status == "active":
                return project.code
    say("applying for the example project, steward approval, declarations, payment")
    spec = parse_spec(parse_yaml(EXAMPLE_SPEC.read_text(encoding="utf-8")))
    with session_scope(settings) as session:
        code = service.apply(session, settings, actor="chen.wei", spec=spec, spec_dir=EXAMPLE_SPEC.parent).code
    with session_scope(settings) as session:
        notice = service.approve(
            session, settings, actor="steve", code=code, reason="demo: all columns necessary for the stated purpose"
        )
        number = notice.number
    with session_scope(settings) as session:
        for name in sorted(service.member_names(service.get_project(session, code))):
            for kind in ("contract", "confidentiality"):
                service.record_declaration(session, settings, actor=CUSTODIAN[0], code=code, username=name, kind=kind)
    with session_scope(settings) as session:
        service.record_payment(
            session,
            settings,
            actor=CUSTODIAN[0],
            notice_number=number,
            paid_on=service.today(),
            reference=f"DEMO-{number}",
        )
    return code


def _provision(settings: Settings, code: str, say: Step, result: DemoResult) -> None:
    try:
        from pipelines.provision import provision_project
    except ImportError:  # provisioning not installed in this build
        result.steps.append("provisioning not available")
        return
    if (settings.projects_dir / code / "extract" / "manifest.json").is_file():
        result.steps.append(f"extract of {code} already provisioned")
        return
    say(f"provisioning the extract of {code}")
    with session_scope(settings) as session:
        provision_project(session, settings, code=code, actor=CUSTODIAN[0], on_step=say)
    result.steps.append(f"extract of {code} provisioned")
