"""Browser sessions of the console (table ``browser_sessions``, migration 0100; this module is its only
owner).

Signing in with an API token makes a session: a random 256-bit cookie value of which the store keeps
only SHA-256 (the row is found by that digest, so a stolen database yields no usable cookie). A session
belongs to its token and is valid only while the token is (known, unexpired, unrevoked: revoking a token
ends its sessions at their next request), while it is younger than its absolute lifetime (never beyond
the token's expiry) and while it was used within the idle timeout. The session's CSRF token is derived
from the cookie value (HMAC), so it needs no storage and cannot be computed without the cookie.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

import asyncpg

from canary.store import api_tokens

PREFIX = "cy_ses_"
_VALUE = re.compile(r"^cy_ses_[0-9a-f]{64}$")
#: last_seen_at is written at most this often per session (reading pages must not turn into writes)
TOUCH_EVERY = dt.timedelta(seconds=15)


@dataclass(frozen=True, slots=True)
class BrowserSession:
    """A valid session and the token it speaks for."""

    token: api_tokens.ApiToken
    csrf: str
    expires_at: dt.datetime


def digest(value: str) -> bytes:
    return hashlib.sha256(value.encode("utf-8", "surrogateescape")).digest()


def csrf_token(value: str) -> str:
    """The synchronizer token of the session whose cookie is ``value``."""
    return hmac.new(value.encode(), b"canary console csrf", hashlib.sha256).hexdigest()


async def create(db: asyncpg.Pool | asyncpg.Connection, token: api_tokens.ApiToken, *, lifetime: float,
                 client: str | None) -> tuple[str, BrowserSession]:
    """A new session for ``token`` (lasting ``lifetime`` seconds, never past the token's expiry); returns the
    cookie value (to be set once, never stored) and the session. Expired sessions are pruned on the way."""
    value = PREFIX + secrets.token_hex(32)
    await db.execute("DELETE FROM browser_sessions WHERE expires_at < clock_timestamp()")
    expires_at: dt.datetime = await db.fetchval(
        "INSERT INTO browser_sessions (hash, token_id, client, expires_at)"
        " VALUES ($1, $2, $3, least(clock_timestamp() + make_interval(secs => $4), $5)) RETURNING expires_at",
        digest(value), token.id, client, lifetime, token.expires_at)
    return value, BrowserSession(token, csrf_token(value), expires_at)


async def verify(db: asyncpg.Pool | asyncpg.Connection, value: str, *, idle: float) -> BrowserSession | None:
    """The valid session whose cookie is ``value``, else None (malformed, unknown, expired, idle past
    ``idle`` seconds, or its token expired or revoked). Records last_seen_at (at most every 15 s)."""
    if not _VALUE.match(value):
        return None
    row = await db.fetchrow(
        "SELECT s.last_seen_at, s.expires_at AS session_expires_at, clock_timestamp() AS now, t.*"
        " FROM browser_sessions s JOIN api_tokens t ON t.id = s.token_id WHERE s.hash = $1", digest(value))
    if row is None:
        return None
    now = row["now"]
    token = api_tokens.ApiToken(id=row["id"], name=row["name"], scopes=tuple(row["scopes"]), created_by=row["created_by"],
                                created_at=row["created_at"], expires_at=row["expires_at"],
                                last_used_at=row["last_used_at"], revoked_at=row["revoked_at"])
    if (not token.valid(now) or now >= row["session_expires_at"]
            or (now - row["last_seen_at"]).total_seconds() > idle):
        await db.execute("DELETE FROM browser_sessions WHERE hash = $1", digest(value))
        return None
    if now - row["last_seen_at"] >= TOUCH_EVERY:
        await db.execute("UPDATE browser_sessions SET last_seen_at = clock_timestamp() WHERE hash = $1", digest(value))
    return BrowserSession(token, csrf_token(value), row["session_expires_at"])


async def end(db: asyncpg.Pool | asyncpg.Connection, value: str) -> bool:
    """Sign out: delete the session whose cookie is ``value``; whether there was one."""
    return await db.fetchval("DELETE FROM browser_sessions WHERE hash = $1 RETURNING true", digest(value)) is True


async def count(db: asyncpg.Pool | asyncpg.Connection, token_id: str) -> int:
    """Sessions stored for a token (tests, `canary token list`)."""
    n: int = await db.fetchval("SELECT count(*) FROM browser_sessions WHERE token_id = $1", token_id)
    return n
