"""Playbooks: a drill as data (TOML), validated once into frozen pydantic models.

A playbook is a named sequence of steps, each an attack ``action`` with its parameters, the incident
kind it must raise (``expect``) and service-level objectives for time-to-detect and time-to-page
(playbook-wide, overridable per step). Shipped playbooks live in ``canary/playbooks/*.toml``;
``config/playbooks/`` and ``<data_dir>/playbooks/`` next to them (and any explicit path) are searched
too, later directories first, so an operator can override a shipped playbook by name.
"""

from __future__ import annotations

import enum
import importlib.resources
import re
import tomllib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from canary.config import _IDENT, _loc, parse_duration
from canary.errors import DrillError
from canary.events import EventKind


class Action(enum.StrEnum):
    """What a step does. Each action is implemented in :mod:`canary.drills.steps`."""

    PG_READ = "pg_read"  # one SELECT of the whole table as an ordinary role
    PG_READ_PAGES = "pg_read_pages"  # the table in pages over time (LIMIT/OFFSET), one session
    PG_COPY = "pg_copy"  # COPY table TO STDOUT
    PG_DUMP = "pg_dump"  # the pg_dump client as a privileged role (superuser / BYPASSRLS): pgaudit sees it
    REPLICA_READ = "replica_read"  # a read on a hot standby
    MAIL = "mail"  # a phishing e-mail to canary addresses through the canary SMTP server
    SMS = "sms"  # an SMS to canary numbers, delivered as a signed Twilio webhook
    TOKEN = "token"  # a canary API token presented to the HTTP token honeypot
    DSN = "dsn"  # a canary DSN used against the PostgreSQL wire honeypot


PG_ACTIONS = frozenset({Action.PG_READ, Action.PG_READ_PAGES, Action.PG_COPY, Action.PG_DUMP, Action.REPLICA_READ})


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Slo(_Model):
    """Seconds from the step's first statement/message to the incident commit (detect) and to the
    first page accepted by a sink (page)."""

    detect: float = 5.0
    page: float = 15.0

    @field_validator("detect", "page", mode="before")
    @classmethod
    def _dur(cls, v: object) -> float:
        d = parse_duration(v)
        if d <= 0:
            raise ValueError("must be positive")
        return d


class Step(_Model):
    name: str = Field(min_length=1, max_length=120)
    action: Action
    expect: EventKind
    #: which role runs a datastore step: "insider" (an ordinary login role with SELECT, like a
    #: leftover service token) or "privileged" (the datastore's configured, privileged DSN)
    role: str = Field(default="insider", pattern=r"^(insider|privileged)$")
    table: str = "public.customers"
    page_size: int = Field(default=500, ge=1, le=1_000_000)
    pages: int = Field(default=5, ge=1, le=10_000)
    interval: float = 0.2  # pause between pages
    count: int = Field(default=1, ge=1, le=100)  # mail/SMS recipients, token/DSN attempts
    subject: str = "Action required: verify your account"
    body: str = "Your account is on hold. Confirm your details at https://account-verify.example/login"
    slo: Slo | None = None  # overrides the playbook's
    timeout: float = 30.0  # how long to wait for the incident and the page

    @field_validator("interval", "timeout", mode="before")
    @classmethod
    def _dur(cls, v: object) -> float:
        return parse_duration(v)

    @field_validator("table")
    @classmethod
    def _table(cls, v: str) -> str:
        parts = v.split(".")
        if len(parts) > 2 or not all(_IDENT.match(p) for p in parts):
            raise ValueError("must be a plain identifier 'table' or 'schema.table'")
        return v if len(parts) == 2 else f"public.{v}"


class Playbook(_Model):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")
    description: str = ""
    slo: Slo = Slo()
    steps: tuple[Step, ...] = Field(min_length=1)
    source: str = ""  # where it was loaded from

    @model_validator(mode="after")
    def _unique_steps(self) -> Playbook:
        names = [s.name for s in self.steps]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"duplicate step names: {', '.join(dup)}")
        return self

    def slo_for(self, step: Step) -> Slo:
        return step.slo or self.slo


_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


def parse_playbook(data: dict[str, Any], source: str) -> Playbook:
    """Validate a parsed playbook; one :class:`DrillError` lists every problem with its key path."""
    try:
        return Playbook.model_validate({**data, "source": source})
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            msg = "unknown key" if err["type"] == "extra_forbidden" else str(err["msg"]).removeprefix("Value error, ")
            key = _loc(err["loc"])
            problems.append(f"{key}: {msg}" if key else msg)
        raise DrillError(f"playbook {source}: " + "; ".join(problems), source=source) from None


def load_file(path: Path) -> Playbook:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise DrillError(f"playbook {path}: not valid TOML: {exc}", source=str(path)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DrillError(f"cannot read playbook {path}: {exc}", source=str(path)) from None
    return parse_playbook(data, str(path))


def shipped_dir() -> Path:
    return Path(str(importlib.resources.files("canary").joinpath("playbooks")))


def search_dirs(extra: Iterable[Path] = ()) -> list[Path]:
    """Playbook directories, highest precedence first."""
    return [*extra, Path("config/playbooks"), shipped_dir()]


def available(extra: Iterable[Path] = ()) -> dict[str, Path]:
    """Playbook name -> file, the first directory that has a name wins."""
    out: dict[str, Path] = {}
    for d in search_dirs(extra):
        if d.is_dir():
            for p in sorted(d.glob("*.toml")):
                out.setdefault(p.stem, p)
    return out


def load(name_or_path: str, extra: Iterable[Path] = ()) -> Playbook:
    """A playbook by name (searched in :func:`search_dirs`) or by path to a TOML file."""
    if name_or_path.endswith(".toml") or "/" in name_or_path:
        path = Path(name_or_path).expanduser()
        if not path.is_file():
            raise DrillError(f"playbook file {path} does not exist", source=str(path))
        return load_file(path)
    if not _NAME.match(name_or_path):
        raise DrillError(f"{name_or_path!r} is not a playbook name (lower-case letters, digits, - and _)")
    found = available(extra)
    if name_or_path not in found:
        names = ", ".join(sorted(found)) or "none"
        raise DrillError(f"no playbook named {name_or_path!r} (available: {names})", source=name_or_path)
    return load_file(found[name_or_path])
