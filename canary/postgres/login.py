"""Canary login roles on real datastores: login attempts seen in the server's jsonlog.

A record handler for :mod:`canary.sources.pglog`. It recognises, for any role:

* ``LOG connection authorized: user=… database=… application_name=…`` (``log_connections``): the
  role logged in (or authenticated before ``FATAL 28000 … not permitted to log in``);
* ``FATAL 28P01 password authentication failed for user "…"``: a wrong password;
* ``FATAL 28000 role "…" is not permitted to log in``: the right password for a NOLOGIN role;
* ``FATAL 28000 no pg_hba.conf entry for host …, user "…"``: refused by host-based authentication.

The role name is resolved by blind index (``pg_role`` or ``dsn_user`` values) in the processor's
batch; ordinary roles match nothing and are dropped without a trace, canary roles raise
``EventKind.USED``. A canary role is best created NOLOGIN with the derived SCRAM verifier
(:meth:`canary.credentials.CredentialFactory.pg_role`): every attempt fails, and whether the
attempt used the right password is still visible (28000 after ``connection authorized`` vs 28P01).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from canary.events import EventKind, Severity, event_key
from canary.postgres.record import Detection, RecordContext, drill_tag, entry_parts, parse_pg_timestamp
from canary.store.registry import ValueKind

_AUTHORIZED = re.compile(
    r"^connection authorized: user=(?P<user>\S+)(?: database=(?P<db>\S+))?"
    r"(?: application_name=(?P<app>.*?))?(?: (?:SSL|GSS) .*)?$"
)
_NO_HBA = re.compile(r'^no pg_hba\.conf entry for host "[^"]*", user "(?P<user>[^"]*)"')
_PASSWORD_FAILED = re.compile(r'^password authentication failed for user "(?P<user>[^"]*)"')
_NOT_PERMITTED = re.compile(r'^role "(?P<user>[^"]*)" is not permitted to log in')


def _outcome(record: Mapping[str, Any]) -> tuple[str, str, str | None, str | None] | None:
    """(outcome, user, database, application_name) of a login-related record, or None."""
    message = record.get("message")
    if not isinstance(message, str):
        return None
    severity, code = record.get("error_severity"), record.get("state_code")
    if severity == "LOG" and message.startswith("connection authorized: "):
        m = _AUTHORIZED.match(message)
        if m is None:
            raise ValueError("unrecognised 'connection authorized' line")
        return "connected", m.group("user"), m.group("db"), m.group("app")
    if severity != "FATAL" or code not in ("28P01", "28000", None):  # None: a format without SQLSTATEs
        return None
    for outcome, pattern in (("password_failed", _PASSWORD_FAILED), ("login_not_permitted", _NOT_PERMITTED),
                             ("no_hba_entry", _NO_HBA)):
        m = pattern.match(message)
        if m:
            return outcome, m.group("user"), None, None
    return None


def login_detection(record: Mapping[str, Any], ctx: RecordContext) -> Detection | None:
    """A login attempt (successful or not) by any role; the processor keeps canary roles only."""
    found = _outcome(record)
    if found is None:
        return None
    outcome, user_from_message, db, app = found
    user = record.get("user") if isinstance(record.get("user"), str) and record.get("user") else user_from_message
    if user != user_from_message:
        # both are the name the client sent; a stderr prefix holding another was forged by one
        raise ValueError("the role in the log line prefix is not the role in its message")
    dbname = db or record.get("dbname")
    remote = record.get("remote_host")
    session = record.get("session_id") or record.get("pid")
    return Detection(
        kind=EventKind.USED,
        key=event_key("pg-login", ctx.node, session, record.get("line_num"), outcome, *entry_parts(record)),
        group=f"pg-login:{ctx.node}:{user}:{remote or ''}",
        observed_at=parse_pg_timestamp(record.get("timestamp")),
        actor={"user": user, "application_name": app or record.get("application_name")},
        origin={"client_addr": remote, "client_port": record.get("remote_port"), "node": ctx.node,
                "datastore": ctx.datastore, "database": dbname, "pid": record.get("pid")},
        evidence={"credential": "postgres_login", "outcome": outcome, "sqlstate": record.get("state_code"),
                  "message": str(record.get("message"))[:300], "session_id": record.get("session_id")},
        severity=Severity.CRITICAL,
        drill=drill_tag(app),
        require_canary=True,
        values=((ValueKind.PG_ROLE, str(user)), (ValueKind.DSN_USER, str(user))) if user else (),
    )
