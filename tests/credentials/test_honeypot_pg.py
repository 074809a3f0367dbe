"""The PostgreSQL wire-protocol honeypot: real clients (asyncpg, psql) see an authentication failure,
the alert has user/db/app, and hostile connections are bounded and counted."""

from __future__ import annotations

import asyncio
import os
import struct

import asyncpg
import pytest
from credential_support import register

from canary.credentials.pg_honeypot import PgHoneypot
from canary.credentials.values import Credential, CredentialFactory
from canary.runtime import Runtime

PSQL = "/usr/lib/postgresql/15/bin/psql"


async def _honeypot(rt: Runtime, **kw: object) -> PgHoneypot:
    hp = PgHoneypot("127.0.0.1", 0, **kw)  # type: ignore[arg-type]
    await hp.start(rt)
    return hp


async def _canary_dsn(rt: Runtime, hp: PgHoneypot, database: str = "billing") -> tuple[Credential, int]:
    cred = CredentialFactory(rt.keyring).pg_dsn("127.0.0.1", hp.port, database)
    [cid] = await register(rt, cred, table="public.settings")
    return cred, cid


async def _events(rt: Runtime) -> list[asyncpg.Record]:
    return await rt.pool.fetch("SELECT * FROM events ORDER BY id")


async def test_asyncpg_with_canary_dsn_fails_auth_and_alerts(runtime: Runtime) -> None:
    """asyncpg with the canary DSN gets InvalidPasswordError (28P01); the USED event names the canary
    and carries user, database, application_name and the fact that the canary password was used."""
    hp = await _honeypot(runtime)
    cred, cid = await _canary_dsn(runtime, hp)
    with pytest.raises(asyncpg.InvalidPasswordError, match=f'password authentication failed for user "{cred.fields["user"]}"'):
        await asyncpg.connect(cred.secret, server_settings={"application_name": "etl-nightly"}, timeout=5)
    await hp.stop()
    [ev] = await _events(runtime)
    assert (ev["kind"], ev["canary_id"], ev["severity"]) == ("used", cid, "critical")
    assert ev["actor"]["user"] == cred.fields["user"]
    assert ev["origin"]["database"] == "billing" and ev["origin"]["application_name"] == "etl-nightly"
    assert ev["origin"]["client_addr"] == "127.0.0.1"
    assert ev["evidence"]["auth_method"] == "scram-sha-256" and ev["evidence"]["password_matches_canary"] is True
    assert cred.fields["password"] not in str(dict(ev))


async def test_wrong_password_is_recorded_as_not_matching(runtime: Runtime) -> None:
    """A SCRAM attempt with another password for the canary user still alerts, marked as not matching."""
    hp = await _honeypot(runtime)
    cred, cid = await _canary_dsn(runtime, hp)
    with pytest.raises(asyncpg.InvalidPasswordError):
        await asyncpg.connect(host="127.0.0.1", port=hp.port, user=cred.fields["user"], password="guess1234",
                              database="billing", timeout=5)
    await hp.stop()
    [ev] = await _events(runtime)
    assert ev["canary_id"] == cid and ev["evidence"]["password_matches_canary"] is False


async def test_psql_cleartext_sees_auth_failure_and_alerts(runtime: Runtime) -> None:
    """psql (libpq) against the honeypot in cleartext-password mode prints the real server's FATAL
    28P01 message; the alert has user, database and application_name and a password fingerprint."""
    hp = await _honeypot(runtime, auth_method="password")
    cred, cid = await _canary_dsn(runtime, hp, database="ledger")
    env = {**os.environ, "PGPASSWORD": cred.fields["password"], "PGAPPNAME": "psql-recon", "PGCONNECT_TIMEOUT": "5"}
    proc = await asyncio.create_subprocess_exec(
        PSQL, "-w", "-h", "127.0.0.1", "-p", str(hp.port), "-U", cred.fields["user"], "-d", "ledger", "-c", "select 1",
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 2
    assert f'FATAL:  password authentication failed for user "{cred.fields["user"]}"' in err.decode()
    await hp.stop()
    [ev] = await _events(runtime)
    assert ev["canary_id"] == cid
    assert (ev["origin"]["database"], ev["origin"]["application_name"]) == ("ledger", "psql-recon")
    assert ev["evidence"]["password_matches_canary"] is True and len(ev["evidence"]["password_fingerprint"]) == 32


async def test_psql_scram_with_unknown_user_is_a_warning(runtime: Runtime) -> None:
    """psql speaking SCRAM as a user that is no canary gets the same failure; the event is a warning
    without a canary (someone probing the honeypot port)."""
    hp = await _honeypot(runtime)
    env = {**os.environ, "PGPASSWORD": "hunter2", "PGCONNECT_TIMEOUT": "5"}
    proc = await asyncio.create_subprocess_exec(
        PSQL, "-w", "-h", "127.0.0.1", "-p", str(hp.port), "-U", "admin", "-d", "postgres", "-c", "select 1",
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(proc.communicate(), 20)
    assert 'password authentication failed for user "admin"' in err.decode()
    await hp.stop()
    [ev] = await _events(runtime)
    assert (ev["canary_id"], ev["severity"], ev["actor"]["user"]) == (None, "warning", "admin")
    assert ev["evidence"]["stage"] == "scram_final"


async def _rejects(rt: Runtime) -> dict[str, int]:
    return {r["reason"]: r["n"] for r in await rt.pool.fetch("SELECT reason, count(*) AS n FROM rejects GROUP BY reason")}


async def _raw(port: int, payload: bytes, read: bool = True) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(payload)
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), 5) if read else b""
    writer.close()
    return data


async def test_malformed_packets_are_counted_and_do_not_stop_the_listener(runtime: Runtime) -> None:
    """Oversized and garbage startup packets, an unsupported protocol and a bad SCRAM message close
    only their own connection and are counted; a real client afterwards still gets the usual answer."""
    hp = await _honeypot(runtime)
    assert await _raw(hp.port, struct.pack("!II", 20000, 196608)) == b""
    assert await _raw(hp.port, struct.pack("!I", 3)) == b""
    assert await _raw(hp.port, struct.pack("!II", 12, 196608) + b"usr\x00") == b""  # unterminated list
    unsupported = await _raw(hp.port, struct.pack("!II", 8, 2 << 16))
    assert unsupported.startswith(b"E") and b"0A000" in unsupported
    start = b"user\x00bob\x00\x00"
    bad_sasl = struct.pack("!II", 8 + len(start), 196608) + start + b"p" + struct.pack("!I", 12) + b"MD5\x00" + b"\x00" * 4
    answer = await _raw(hp.port, bad_sasl)
    assert answer.startswith(b"R")  # the SASL request, then the connection is closed
    with pytest.raises(asyncpg.InvalidPasswordError):
        await asyncpg.connect(host="127.0.0.1", port=hp.port, user="bob", password="x", timeout=5)
    await hp.stop()
    rejects = await _rejects(runtime)
    assert rejects["bad_startup_length"] == 2 and rejects["bad_startup_packet"] == 1
    assert rejects["unsupported_protocol"] == 1 and rejects["bad_scram"] == 1
    assert b'canary_rejects_total{reason="bad_startup_length",source="pg_honeypot"} 2.0' in runtime.metrics.render()


async def test_slow_loris_is_timed_out_and_held_connections_are_shed(runtime: Runtime) -> None:
    """A client that trickles its startup packet is cut off after startup_timeout; beyond
    max_connections the connection idle the longest is closed to admit a new client, which gets the
    usual answer; the timeout and the shed are counted and the honeypot keeps serving."""
    hp = await _honeypot(runtime, startup_timeout=0.3, max_connections=2)
    r1, w1 = await asyncio.open_connection("127.0.0.1", hp.port)
    r2, w2 = await asyncio.open_connection("127.0.0.1", hp.port)
    w2.write(b"\x00\x00")  # two bytes of a length, then nothing
    await w2.drain()
    await asyncio.sleep(0.05)
    with pytest.raises(asyncpg.InvalidPasswordError):  # a third client: the oldest idle one makes room
        await asyncpg.connect(host="127.0.0.1", port=hp.port, user="bob", password="x", timeout=5)
    assert await asyncio.wait_for(r1.read(), 0.2) == b""  # shed at once
    assert await asyncio.wait_for(r2.read(), 3) == b""  # closed by the honeypot after the startup timeout
    w1.close()
    w2.close()
    await hp.stop()
    rejects = await _rejects(runtime)
    assert rejects["startup_timeout"] == 1 and rejects["shed_global_cap"] == 1
    assert not hp.connections


async def test_ssl_and_cancel_requests_are_answered_like_postgresql(runtime: Runtime) -> None:
    """SSLRequest and GSSENCRequest get 'N' and the handshake continues; a CancelRequest is closed
    silently."""
    hp = await _honeypot(runtime)
    start = b"user\x00eve\x00database\x00hr\x00\x00"
    reader, writer = await asyncio.open_connection("127.0.0.1", hp.port)
    writer.write(struct.pack("!II", 8, 80877104) + struct.pack("!II", 8, 80877103)
                 + struct.pack("!II", 8 + len(start), 196608) + start)
    data = await asyncio.wait_for(reader.readexactly(2 + 9 + len(b"SCRAM-SHA-256\x00\x00")), 5)
    writer.close()  # give up before sending a password: still reported
    assert data[:2] == b"NN" and data[2:3] == b"R" and struct.unpack("!I", data[7:11])[0] == 10
    assert await _raw(hp.port, struct.pack("!IIII", 16, 80877102, 1234, 5678)) == b""
    await hp.stop()
    [ev] = await _events(runtime)
    assert ev["actor"]["user"] == "eve" and ev["origin"]["database"] == "hr"
    assert ev["evidence"]["ssl_requested"] is True and ev["evidence"]["gssenc_requested"] is True
