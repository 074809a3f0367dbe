"""The seeder contract (STYLE.md practice 1) and the value types it exchanges.

A seeder owns one datastore. ``plan`` is a dry run: it reads the datastore and reports exactly what
``apply`` would write, writing nothing. ``apply`` writes canaries (one transaction per datastore),
records them in the registry together with a deployment manifest, and installs read detection; it is
idempotent (a target that already holds its configured number of canaries gets none added).
``verify`` checks that every active canary is still present and unmodified. ``retire`` removes
exactly what was seeded and restores the detection state found before seeding.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, runtime_checkable


@dataclass(frozen=True, slots=True)
class PlannedRow:
    """One row a seeder will write: target ``schema.table``, its key as text and column values as text."""

    target: str
    pk: str
    values: Mapping[str, str | None]
    canary: bool = True  # False for child rows (orders, addresses) written for a canary


@dataclass(frozen=True, slots=True)
class TargetPlan:
    """What seeding one target table involves."""

    target: str
    present: int  # active canaries already in the table
    wanted: int  # configured count
    rows: Sequence[PlannedRow]  # new rows, canaries first, then child rows in dependency order
    statements: Sequence[str]  # DDL that installs / refreshes read detection
    warnings: Sequence[str] = ()
    locks: Sequence[str] = ()  # tables locked ACCESS EXCLUSIVE while applying
    traces: Sequence[str] = ()  # what writing the rows leaves that a reader of the table could see
    pools: Sequence[str] = ()  # how large the owned contact pools must be for the canaries to blend
    mode: str = "backdated"  # trickle: ``rows`` is what one sign-up now would write; ``schedule`` says when the rest come
    schedule: str = ""

    @property
    def to_add(self) -> int:
        """Canaries the next ``apply`` writes now (trickle targets' arrive later, on their schedule)."""
        return 0 if self.mode == "trickle" else sum(1 for r in self.rows if r.canary)


@dataclass(frozen=True, slots=True)
class ServerSetting:
    """A server-level setting detection relies on that is not as it must be. A managed admin role
    (``rds_superuser``, ``cloudsqlsuperuser``, ``azure_pg_admin``) cannot set it itself: ``where`` names
    the provider's place for it (parameter group, database flags, server parameters)."""

    setting: str  # "log_connections", "shared_preload_libraries", ...
    value: str  # what it must be ("on", "includes pgaudit")
    current: str  # what the server reports ("off", "unreadable by <role>")
    where: str  # where to set it
    why: str  # the detection lost without it (and what covers it meanwhile)
    required: bool = True  # False: advice (a path stays open or less precise), verify still passes


@dataclass(frozen=True, slots=True)
class Plan:
    datastore: str
    targets: Sequence[TargetPlan]
    settings: Sequence[ServerSetting] = ()  # server settings to set (in the provider's console) for full detection
    notes: Sequence[str] = ()  # detection that works differently under this role, and what covers it

    @property
    def to_add(self) -> int:
        return sum(t.to_add for t in self.targets)

    @property
    def warnings(self) -> list[str]:
        return [w for t in self.targets for w in t.warnings]


@dataclass(frozen=True, slots=True)
class ApplyResult:
    datastore: str
    added: Mapping[str, int]  # target -> canaries added
    child_rows: Mapping[str, int] = field(default_factory=dict)  # table -> child rows added
    deployment_ids: Sequence[int] = ()
    warnings: Sequence[str] = ()


@dataclass(frozen=True, slots=True)
class Finding:
    """A canary that is not as it was written."""

    canary_uid: str
    target: str
    problem: str  # "missing" | "modified" | "detection_missing" | ...


@dataclass(frozen=True, slots=True)
class VerifyReport:
    datastore: str
    checked: int
    findings: Sequence[Finding]
    settings: Sequence[ServerSetting] = ()  # server settings detection relies on that are not as they must be
    notes: Sequence[str] = ()

    @property
    def ok(self) -> bool:
        return not self.findings


@dataclass(frozen=True, slots=True)
class RetireResult:
    datastore: str
    removed: Mapping[str, int]  # target -> canary rows deleted
    kept_modified: Sequence[Finding] = ()  # modified canaries left in place (and still detected)
    child_rows: Mapping[str, int] = field(default_factory=dict)
    detection_removed: Sequence[str] = ()


@runtime_checkable
class Seeder(Protocol):
    """Places canaries in one datastore and removes them again."""

    kind: ClassVar[str]

    async def plan(self) -> Plan: ...

    async def apply(self) -> ApplyResult: ...

    async def verify(self) -> VerifyReport: ...

    async def retire(self, *, force: bool = False, targets: Sequence[str] | None = None) -> RetireResult:
        """Remove this seeder's canaries (only those in ``targets``, schema-qualified tables, when given)
        and its detection objects, leaving the tables as they were before seeding."""


@runtime_checkable
class Trickling(Protocol):
    """A seeder whose canaries can arrive over time (``mode = "trickle"`` targets): the scheduler calls
    ``trickle`` every ``seeding.trickle_interval`` to write what is due."""

    async def trickle(self, *, schedule: bool = False) -> Any: ...


def as_dict(obj: Any) -> Any:
    """JSON-able form of the value types above (for CLI output and manifests)."""

    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        out = {f.name: as_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
        for prop in ("to_add", "ok"):
            if hasattr(type(obj), prop):
                out[prop] = getattr(obj, prop)
        return out
    if isinstance(obj, Mapping):
        return {str(k): as_dict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [as_dict(v) for v in obj]
    return obj
