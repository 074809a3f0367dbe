"""Same answers for every credential, and probes as signals: both honeypots answer a canary
credential byte for byte (apart from per-request ids and the user name echoed in PostgreSQL's error)
and in the same time as any other; a canary credential checked without being used (a PostgreSQL
login abandoned before its password, a token shown to a who-am-I endpoint) is a lower-severity
USED event grouped per peer."""

from __future__ import annotations

import asyncio
import base64
import re
import statistics
import time

import asyncpg
import pytest
from credential_support import PgTranscript, pg_login, read_message, register, startup_packet

from canary.config import HttpHoneypotConfig
from canary.credentials.pg_honeypot import PgHoneypot
from canary.credentials.token_honeypot import TokenHoneypot
from canary.credentials.values import CredentialFactory, new_cred_id
from canary.runtime import Runtime

ROUNDS = 100


def _close_enough(a: list[float], b: list[float]) -> tuple[bool, float, float]:
    """Medians within max(2 ms, 10% of the larger): the noise of a loaded loopback, far below any
    lookup or commit a canary could cost."""
    m_a, m_b = statistics.median(a), statistics.median(b)
    return abs(m_a - m_b) < max(0.002, 0.1 * max(m_a, m_b)), m_a, m_b


async def _events(rt: Runtime) -> list[asyncpg.Record]:
    return await rt.pool.fetch("SELECT * FROM events ORDER BY id")


def _server_first(t: PgTranscript) -> dict[str, str]:
    body = t.messages[1][1]
    assert body[:4] == b"\x00\x00\x00\x0b"  # AuthenticationSASLContinue
    return dict(a.split("=", 1) for a in body[4:].decode().split(","))


@pytest.mark.parametrize("auth", ["scram-sha-256", "password"])
async def test_pg_answers_are_identical_for_canary_and_other_users(runtime: Runtime, auth: str) -> None:
    """Over 100 interleaved logins each, a canary user and a user that is no canary get the same
    messages: the same authentication request, for SCRAM a server-first message with a salt of the
    same length (stable per user, different between users), the same iteration count and a nonce of
    the same length, and the same FATAL 28P01 apart from the user name; the time from the last
    client message to the verdict has the same median."""
    hp = PgHoneypot("127.0.0.1", 0, auth_method=auth)
    await hp.start(runtime)
    factory = CredentialFactory(runtime.keyring)
    cred = factory.pg_dsn("127.0.0.1", hp.port, "billing")
    await register(runtime, cred, table="public.settings")
    users = {"canary": cred.fields["user"], "other": factory.pg_role_name(new_cred_id())}
    transcripts: dict[str, list[PgTranscript]] = {"canary": [], "other": []}
    for i in range(ROUNDS):
        for label in ("canary", "other") if i % 2 else ("other", "canary"):  # no position bias
            transcripts[label].append(await pg_login(hp.port, users[label], factory.pg_password(users[label])))
    await hp.stop()

    def shape(t: PgTranscript, user: str) -> list[tuple[bytes, bytes]]:
        out = [(tag, body.replace(user.encode(), b"<user>")) for tag, body in t.messages]
        if auth == "scram-sha-256":  # the server-first message: its values compared below
            out[1] = (out[1][0], re.sub(rb"r=[^,]*,s=[^,]*,", b"r=<nonce>,s=<salt>,", out[1][1]))
        return out

    shapes = {shape(t, users[label])[i] for label, ts in transcripts.items() for t in ts for i in range(len(t.messages))}
    assert len(shapes) == len(transcripts["canary"][0].messages)  # one distinct message per step
    assert transcripts["canary"][0].messages[-1][0] == b"E" and b"28P01" in transcripts["canary"][0].messages[-1][1]
    if auth == "scram-sha-256":
        first = {label: [_server_first(t) for t in ts] for label, ts in transcripts.items()}
        salts = {label: {f["s"] for f in fs} for label, fs in first.items()}
        assert all(len(s) == 1 for s in salts.values()) and salts["canary"] != salts["other"]
        assert {len(base64.b64decode(next(iter(s)))) for s in salts.values()} == {16}
        assert {f["i"] for fs in first.values() for f in fs} == {"4096"}
        assert len({len(f["r"]) for fs in first.values() for f in fs}) == 1
    same, m_canary, m_other = _close_enough(*(
        [t.verdict_after for t in transcripts[label]] for label in ("canary", "other")))
    print(f"pg {auth}: verdict median canary {m_canary * 1000:.2f} ms, other {m_other * 1000:.2f} ms")
    assert same, (m_canary, m_other)


async def _http(port: int, path: str, token: str, source: str | None = None) -> tuple[bytes, float]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0) if source else None)
    started = time.perf_counter()
    writer.write(f"GET {path} HTTP/1.1\r\nHost: api.internal\r\nAuthorization: Bearer {token}\r\n"
                 "User-Agent: curl/8.5.0\r\nConnection: close\r\n\r\n".encode())
    answer = await asyncio.wait_for(reader.read(), 10)
    took = time.perf_counter() - started
    writer.close()
    return answer, took


def _normalised(answer: bytes) -> bytes:
    """The answer without what differs per request: the Date header and the request id."""
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = [ln for ln in head.split(b"\r\n") if not ln.lower().startswith(b"date:")]
    rid = next(ln.split(b": ", 1)[1] for ln in lines if ln.lower().startswith(b"x-request-id:"))
    assert len(rid) == 32
    return b"\r\n".join(lines).replace(rid, b"<rid>") + b"\r\n\r\n" + body.replace(rid, b"<rid>")


@pytest.mark.parametrize("path", ["/api/v1/orders", "/api/v1/me", "/nothing"])
async def test_http_answers_are_identical_for_canary_and_other_tokens(runtime: Runtime, path: str) -> None:
    """Over 100 interleaved requests each (a used path, a check-only path, an unknown path), a canary
    token and an unknown token of the same shape get byte-identical answers apart from Date and the
    request id (status, every header, body), and the same median answer time."""
    tok = CredentialFactory(runtime.keyring).github_token()
    await register(runtime, tok)
    hp = TokenHoneypot(HttpHoneypotConfig(enabled=True, port=0, probe_limit=100_000, min_response_time=0.01))
    await hp.start(runtime)
    answers: dict[str, set[bytes]] = {"canary": set(), "other": set()}
    times: dict[str, list[float]] = {"canary": [], "other": []}
    for i in range(ROUNDS):
        tokens = [("canary", tok.secret), ("other", f"{tok.secret[:-6]}{i:06d}")]
        for label, token in tokens if i % 2 else tokens[::-1]:  # no position bias
            answer, took = await _http(hp.port, path, token)
            answers[label].add(_normalised(answer))
            times[label].append(took)
    await hp.stop()
    assert len(answers["canary"]) == 1 and answers["canary"] == answers["other"]
    assert next(iter(answers["canary"])).startswith(b"HTTP/1.1 401" if path != "/nothing" else b"HTTP/1.1 404")
    same, m_canary, m_other = _close_enough(times["canary"], times["other"])
    print(f"http {path}: median canary {m_canary * 1000:.2f} ms, other {m_other * 1000:.2f} ms")
    assert same, (m_canary, m_other)
    assert await runtime.pool.fetchval("SELECT count(*) FROM events WHERE canary_id IS NOT NULL") == ROUNDS


async def _probe(port: int, user: str, local_host: str) -> None:
    """Connect as ``user``, wait for the authentication request, and leave without answering it."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(local_host, 0))
    writer.write(startup_packet(user, "billing"))
    tag, _ = await read_message(reader)
    assert tag == b"R"
    writer.close()
    await writer.wait_closed()


async def test_pg_probes_are_lower_severity_and_grouped_per_peer(runtime: Runtime) -> None:
    """Connections that name a canary user and leave at the SASL step are probes: USED events at
    ERROR (not CRITICAL) marked as probes; five probes of two canary users from one peer are one
    incident, a probe from another peer is another, a full login by the same peer stays a separate
    CRITICAL USED incident, and a probe by a user that is no canary is INFO."""
    hp = PgHoneypot("127.0.0.1", 0)
    await hp.start(runtime)
    factory = CredentialFactory(runtime.keyring)
    creds = [factory.pg_dsn("127.0.0.1", hp.port, "billing") for _ in range(2)]
    a_id, b_id = await register(runtime, *creds, table="public.settings")
    user_a, user_b = (c.fields["user"] for c in creds)
    for user in (user_a, user_b, user_a, user_b, user_a):
        await _probe(hp.port, user, "127.0.0.1")
    await _probe(hp.port, user_a, "127.0.0.2")
    await _probe(hp.port, "postgres", "127.0.0.3")
    await pg_login(hp.port, user_a, factory.pg_password(user_a))
    await hp.stop()

    events = await _events(runtime)
    probes = [e for e in events if e["evidence"]["signal"] == "probe"]
    [used] = [e for e in events if e["evidence"]["signal"] == "used"]
    assert (used["severity"], used["canary_id"], used["evidence"]["password_matches_canary"]) == ("critical", a_id, True)
    canary_probes = [e for e in probes if e["canary_id"] is not None]
    assert len(canary_probes) == 6 and {e["kind"] for e in probes} == {"used"}
    assert {e["severity"] for e in canary_probes} == {"error"}
    assert {(e["evidence"]["stage"], e["evidence"]["ended_by"]) for e in canary_probes} == {("startup", "client")}
    by_peer = {addr: {e["incident_id"] for e in canary_probes if e["origin"]["client_addr"] == addr}
               for addr in ("127.0.0.1", "127.0.0.2")}
    assert all(len(ids) == 1 for ids in by_peer.values()) and by_peer["127.0.0.1"] != by_peer["127.0.0.2"]
    assert used["incident_id"] not in by_peer["127.0.0.1"]
    [incident] = await runtime.pool.fetch("SELECT * FROM incidents WHERE id = ANY($1)", list(by_peer["127.0.0.1"]))
    assert incident["event_count"] == 5 and sorted(incident["canary_ids"]) == sorted([a_id, b_id])
    [other] = [e for e in probes if e["canary_id"] is None]
    assert (other["severity"], other["actor"]["user"]) == ("info", "postgres")


async def test_token_shown_to_a_check_only_endpoint_is_a_probe(runtime: Runtime) -> None:
    """A canary token sent to who-am-I / introspection paths (trailing slash or not) is a probe: USED
    at ERROR, one incident per peer; the same token on an API path is a CRITICAL USED of its own."""
    tok = CredentialFactory(runtime.keyring).github_token()
    [cid] = await register(runtime, tok)
    hp = TokenHoneypot(HttpHoneypotConfig(enabled=True, port=0, probe_limit=100_000, min_response_time=0.01))
    await hp.start(runtime)
    for path in ("/api/v1/me", "/api/v1/me/", "/v1/auth/verify", "/api/v1/me"):
        answer, _ = await _http(hp.port, path, tok.secret)
        assert answer.startswith(b"HTTP/1.1 401")
    answer, _ = await _http(hp.port, "/api/v1/repos", tok.secret)
    assert answer.startswith(b"HTTP/1.1 401")
    await hp.stop()
    events = await _events(runtime)
    probes = [e for e in events if e["evidence"]["signal"] == "probe"]
    [used] = [e for e in events if e["evidence"]["signal"] == "used"]
    assert len(probes) == 4 and {(e["severity"], e["canary_id"]) for e in probes} == {("error", cid)}
    assert len({e["incident_id"] for e in probes}) == 1 and used["incident_id"] != probes[0]["incident_id"]
    assert (used["severity"], used["canary_id"]) == ("critical", cid)


async def test_token_event_survives_a_client_that_leaves_before_the_answer(runtime: Runtime) -> None:
    """A client that presents a canary token and disconnects before the response floor has passed
    still raises its USED event, and so does one whose request is cut short by the honeypot
    stopping (the lookup starts when the answer is due or abandoned, whatever happened)."""
    tok = CredentialFactory(runtime.keyring).github_token()
    [cid] = await register(runtime, tok)
    hp = TokenHoneypot(HttpHoneypotConfig(enabled=True, port=0, probe_limit=100_000, min_response_time=1.0))
    await hp.start(runtime)
    request = f"GET /api/v1/repos HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {tok.secret}\r\n\r\n".encode()
    writers = []
    for _ in range(2):
        _, writer = await asyncio.open_connection("127.0.0.1", hp.port)
        writer.write(request)
        await writer.drain()
        writers.append(writer)
    await asyncio.sleep(0.1)
    writers[0].transport.abort()  # the first leaves; the second is still waiting when the honeypot stops
    await asyncio.sleep(0.05)
    await hp.stop()
    writers[1].close()
    events = await _events(runtime)
    assert len(events) == 2 and {(e["canary_id"], e["severity"]) for e in events} == {(cid, "critical")}


async def test_a_peer_walking_a_list_of_tokens_is_tarpitted_and_reported_once(runtime: Runtime) -> None:
    """Beyond probe_limit credentials per window one peer's answers wait tarpit_step longer each (at
    most tarpit_max), canary or not, while another peer is answered at once; the flood is one warning
    USED event (counts only, no canary) in the peer's probe incident, and the canary token presented
    during the flood still raises its own event."""
    factory = CredentialFactory(runtime.keyring)
    tok = factory.github_token()
    [cid] = await register(runtime, tok)
    hp = TokenHoneypot(HttpHoneypotConfig(enabled=True, port=0, min_response_time=0.01, probe_limit=4, tarpit_step=0.2,
                                          tarpit_max=0.6))
    await hp.start(runtime)
    took = []
    for i in range(9):
        _, t = await _http(hp.port, "/api/v1/orders", tok.secret if i == 7 else factory.github_token().secret)
        took.append(t)
    _, other = await _http(hp.port, "/api/v1/orders", factory.github_token().secret, source="127.0.0.2")
    await hp.stop()
    assert max(took[:4]) < 0.15 and other < 0.15, (took, other)
    assert all(want <= t < want + 0.15 for t, want in zip(took[4:], (0.2, 0.4, 0.6, 0.6, 0.6), strict=True)), took
    events = await _events(runtime)
    [flood] = [e for e in events if e["evidence"]["signal"] == "probe_flood"]
    assert (flood["kind"], flood["severity"], flood["canary_id"], flood["group_key"]) == (
        "used", "warning", None, "token-honeypot-probe:127.0.0.1")
    assert flood["evidence"]["counts"] == {"credential": 5} and flood["evidence"]["limit"] == 4
    assert [e["canary_id"] for e in events if e["evidence"]["signal"] == "used"] == [cid]
