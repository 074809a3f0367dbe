"""Canary login roles on a real PostgreSQL: login attempts (failed or successful) with a canary role
are detected from the server's jsonlog; ordinary roles logging in raise nothing and count nothing."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import pytest
from credential_support import register

from canary.credentials.values import CredentialFactory
from canary.drilltags import register_markers, register_run
from canary.postgres.jsonlog import JsonlogSource
from canary.postgres.login import login_detection
from canary.postgres.record import RecordContext
from canary.runtime import Runtime
from canary.store.embedded import PostgresServer


async def _try_login(dsn: str, user: str, password: str, app: str) -> str:
    u = urlsplit(dsn)
    try:
        conn = await asyncpg.connect(host=u.hostname, port=u.port, user=user, password=password, database=u.path.lstrip("/"),
                                     server_settings={"application_name": app}, ssl=False, timeout=10)
    except asyncpg.PostgresError as exc:
        return exc.sqlstate
    await conn.close()
    return "ok"


async def test_canary_role_login_attempts_are_detected_from_jsonlog(
    runtime: Runtime, pg_server: PostgresServer, target_dsn: str
) -> None:
    """On a real server with log_connections: a wrong password for a NOLOGIN canary role (28P01), the
    right password (authorized, then 28000) and a LOGIN canary DSN user logging in each raise a USED
    event for their canary via the jsonlog tail; an ordinary role logging in raises nothing."""
    f = CredentialFactory(runtime.keyring)
    role = f.pg_role()
    dsn_cred = f.pg_dsn("127.0.0.1", pg_server.port or 0, "postgres", prefix="svc_report")
    role_id, dsn_id = await register(runtime, role, dsn_cred, table="pg_catalog.pg_roles")
    normal = f"app_user_{role.cred_id[-6:]}"
    admin = await asyncpg.connect(target_dsn)
    try:
        await admin.execute(f"CREATE ROLE {role.fields['user']} NOLOGIN PASSWORD '{role.fields['verifier']}'")
        dsn_verifier = f.pg_role(name=dsn_cred.fields["user"]).fields["verifier"]
        await admin.execute(f"CREATE ROLE {dsn_cred.fields['user']} LOGIN PASSWORD '{dsn_verifier}'")
        await admin.execute(f"CREATE ROLE {normal} LOGIN PASSWORD 'ordinary-pw'")
        src = JsonlogSource("shop", "pg-a", pg_server.log_dir, poll=0.05)
        await src.start(runtime)
        await asyncio.wait_for(src.caught_up.wait(), 10)
        assert await _try_login(target_dsn, role.fields["user"], "guess", "recon") == "28P01"
        await register_run(runtime.pool, "dr-t1", "test", "configured", 1)  # only a registered drill tag counts
        await register_markers(runtime.pool, "dr-t1", 1, [("drill", "drill", "dr-t1/1")], 60)
        assert await _try_login(target_dsn, role.fields["user"], role.fields["password"], "canary-drill:dr-t1/1") == "28000"
        assert await _try_login(target_dsn, dsn_cred.fields["user"], dsn_cred.fields["password"], "etl") == "ok"
        assert await _try_login(target_dsn, normal, "ordinary-pw", "app") == "ok"
        deadline = asyncio.get_running_loop().time() + 15
        while asyncio.get_running_loop().time() < deadline:
            if await runtime.pool.fetchval("SELECT count(*) FROM events") >= 4:
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.3)  # let the ordinary login's lines through as well
        await src.stop()
    finally:
        for r in (role.fields["user"], dsn_cred.fields["user"], normal):
            await admin.execute(f"DROP ROLE IF EXISTS {r}")
        await admin.close()
    rows = await runtime.pool.fetch("SELECT * FROM events ORDER BY observed_at, id")
    by_canary: dict[int, list[str]] = {}
    for r in rows:
        by_canary.setdefault(r["canary_id"], []).append(r["evidence"]["outcome"])
    assert sorted(by_canary[role_id]) == ["connected", "login_not_permitted", "password_failed"]
    assert by_canary[dsn_id] == ["connected"]
    assert set(by_canary) == {role_id, dsn_id}
    failed = next(r for r in rows if r["evidence"]["outcome"] == "password_failed")
    assert failed["actor"]["user"] == role.fields["user"] and failed["origin"]["client_addr"] == "127.0.0.1"
    assert failed["kind"] == "used" and failed["origin"]["node"] == "pg-a"
    connected = next(r for r in rows if r["canary_id"] == dsn_id)
    assert connected["actor"]["application_name"] == "etl" and connected["origin"]["database"] == urlsplit(target_dsn).path[1:]
    assert any(r["drill"] == "dr-t1/1" for r in rows if r["canary_id"] == role_id)
    assert await runtime.pool.fetchval("SELECT count(*) FROM rejects") == 0


CTX = RecordContext("shop", "pg-a", "jsonlog:pg-a")
_TS = "2026-11-23 15:39:22.040 UTC"


@pytest.mark.parametrize(
    ("record", "outcome"),
    [
        ({"error_severity": "FATAL", "state_code": "28P01", "user": "u1",
          "message": 'password authentication failed for user "u1"'}, "password_failed"),
        ({"error_severity": "FATAL", "state_code": "28000", "user": "u1",
          "message": 'role "u1" is not permitted to log in'}, "login_not_permitted"),
        ({"error_severity": "FATAL", "state_code": "28000", "user": "u1",
          "message": 'no pg_hba.conf entry for host "10.0.0.9", user "u1", database "db", no encryption'}, "no_hba_entry"),
        ({"error_severity": "LOG", "user": "u1",
          "message": "connection authorized: user=u1 database=db application_name=x SSL enabled (protocol=TLSv1.3)"},
         "connected"),
        ({"error_severity": "LOG", "user": "u1", "message": 'connection authenticated: identity="u1" method=scram-sha-256'}, None),
        ({"error_severity": "ERROR", "state_code": "42P01", "user": "u1", "message": 'relation "x" does not exist'}, None),
    ],
)
def test_login_record_shapes(record: dict[str, Any], outcome: str | None) -> None:
    """Each login-related jsonlog line maps to its outcome and asks for a pg_role/dsn_user lookup;
    unrelated lines are not this handler's concern."""
    det = login_detection({**record, "timestamp": _TS, "remote_host": "10.0.0.9"}, CTX)
    if outcome is None:
        assert det is None
        return
    assert det is not None and det.evidence["outcome"] == outcome
    assert det.values == (("pg_role", "u1"), ("dsn_user", "u1"))
    assert det.observed_at == dt.datetime(2026, 11, 23, 15, 39, 22, 40000, tzinfo=dt.timezone.utc)
