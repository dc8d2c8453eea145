"""Roles and the separation-of-duties rules, enforced here and nowhere else.

Who may do what to which object is decided by the ``check_*`` functions below; each raises
:class:`SeparationOfDutiesError` or :class:`PermissionDenied` with a message naming the rule,
and has a boolean twin (``may_*``) for user interfaces.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from enum import StrEnum
from itertools import combinations

from pydantic import Field

from enclave.config import Settings
from enclave.errors import PermissionDenied, PolicyError, SeparationOfDutiesError
from enclave.policies import PolicyModel, load_policy


class Role(StrEnum):
    CUSTODIAN = "custodian"
    STEWARD = "steward"
    REVIEWER = "reviewer"
    RESEARCHER = "researcher"
    AUDITOR = "auditor"


class AccountsPolicy(PolicyModel):
    roles: dict[str, dict[str, str]]
    forbidden_combinations: list[tuple[str, str]] = Field(default_factory=list)
    grant_review_months: int = 6
    idle_disable_days: int = 90
    min_password_length: int = 12


def accounts_policy(settings: Settings | None = None) -> AccountsPolicy:
    policy = load_policy("accounts", AccountsPolicy, settings)
    known = {r.value for r in Role}
    for pair in policy.forbidden_combinations:
        unknown = set(pair) - known
        if unknown:
            raise PolicyError(
                f"accounts.yaml: forbidden_combinations names unknown role(s) {unknown}"
            )
    return policy


def parse_roles(names: Iterable[str]) -> frozenset[Role]:
    """Turn role names into :class:`Role` values, refusing unknown names."""
    roles = set()
    for name in names:
        try:
            roles.add(Role(name.strip().lower()))
        except ValueError:
            raise PermissionDenied(
                f"unknown role {name!r}; roles are {', '.join(r.value for r in Role)}"
            ) from None
    return frozenset(roles)


def check_role_combination(roles: Collection[Role], policy: AccountsPolicy) -> None:
    """Refuse role sets that one person may not hold (e.g. custodian + researcher)."""
    forbidden = {frozenset(pair) for pair in policy.forbidden_combinations}
    for pair in combinations(sorted(roles), 2):
        if frozenset(pair) in forbidden:
            raise SeparationOfDutiesError(
                f"one person may not be both {pair[0]} and {pair[1]} "
                "(separation of duties, policies/accounts.yaml)"
            )


def check_has_role(username: str, roles: Collection[str], needed: Role | Collection[Role]) -> None:
    """Refuse unless the user holds ``needed`` (or one of several roles)."""
    wanted = {needed} if isinstance(needed, Role) else set(needed)
    if not wanted & {Role(r) for r in roles}:
        names = " or ".join(sorted(r.value for r in wanted))
        raise PermissionDenied(f"{username} is not a {names}")


def check_may_review_output(reviewer: str, project_members: Collection[str]) -> None:
    """A reviewer never clears output of a project they work on."""
    if reviewer in project_members:
        raise SeparationOfDutiesError(
            f"{reviewer} is a member of this project and may not review its outputs"
        )


def may_review_output(reviewer: str, project_members: Collection[str]) -> bool:
    return reviewer not in project_members


def check_may_audit(auditor: str, subject: str) -> None:
    """An auditor never audits their own activity."""
    if auditor == subject:
        raise SeparationOfDutiesError(f"{auditor} may not audit their own activity")


def may_audit(auditor: str, subject: str) -> bool:
    return auditor != subject


def check_may_join_project(username: str, roles: Collection[str]) -> None:
    """An administrator of the data is never also a user of it."""
    if Role.CUSTODIAN.value in roles:
        raise SeparationOfDutiesError(
            f"{username} administers the data (custodian) and may not work on a project"
        )


def check_distinct_persons(first: str, second: str, what: str) -> None:
    """Four-eyes rules: the second person must differ from the first."""
    if first == second:
        raise SeparationOfDutiesError(f"{what} needs a second person; {first} cannot do both")


def check_may_review_application(steward: str, project_members: Collection[str]) -> None:
    """A steward never decides an application or change of a project they work on."""
    if steward in project_members:
        raise SeparationOfDutiesError(
            f"{steward} is a member of this project and may not decide its application or changes"
        )


def may_review_application(steward: str, project_members: Collection[str]) -> bool:
    return steward not in project_members


def check_is_project_member(username: str, project_members: Collection[str], project: str) -> None:
    """Only a current member of a project may submit or withdraw its outputs."""
    if username not in project_members:
        raise PermissionDenied(f"{username} is not a member of project {project}")


def may_act_for_project(username: str, project_members: Collection[str]) -> bool:
    return username in project_members
