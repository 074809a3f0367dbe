"""API tokens (table ``api_tokens``, migration 0080; this module is its only owner).

A token is ``cy_api_<id>_<secret>``: ``id`` (12 hex digits) is public and finds the row, ``secret`` (64
hex digits, 256 random bits) is known only to its holder. The store keeps SHA-256 of the whole token,
never the token: it is shown once, at creation. Checking a presented token compares digests in constant
time, and an unknown id is compared against a dummy digest, so the time taken tells nothing about which
part was wrong. A plain hash (not a slow KDF) is enough: the secret is random, not a password.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg

SCOPES = ("read", "operate", "admin", "reveal")
PREFIX = "cy_api_"
_TOKEN = re.compile(r"^cy_api_([0-9a-f]{12})_([0-9a-f]{64})$")
_DUMMY = hashlib.sha256(b"cy_api_000000000000_" + b"0" * 64).digest()
#: last_used_at is written at most this often per token (a busy client must not turn reads into writes)
TOUCH_EVERY = dt.timedelta(seconds=60)


@dataclass(frozen=True, slots=True)
class ApiToken:
    """A stored token: everything but the secret."""

    id: str
    name: str
    scopes: tuple[str, ...]
    created_by: str
    created_at: dt.datetime
    expires_at: dt.datetime
    last_used_at: dt.datetime | None
    revoked_at: dt.datetime | None

    def valid(self, now: dt.datetime) -> bool:
        return self.revoked_at is None and now < self.expires_at


def digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()


def _record(row: asyncpg.Record) -> ApiToken:
    return ApiToken(id=row["id"], name=row["name"], scopes=tuple(row["scopes"]), created_by=row["created_by"],
                    created_at=row["created_at"], expires_at=row["expires_at"], last_used_at=row["last_used_at"],
                    revoked_at=row["revoked_at"])


async def create(db: asyncpg.Pool | asyncpg.Connection, name: str, scopes: Sequence[str], expires_at: dt.datetime,
                 created_by: str) -> tuple[ApiToken, str]:
    """Store a new token; returns it and the token text (to be shown once, never stored)."""
    bad = [s for s in scopes if s not in SCOPES]
    if bad or not scopes:
        raise ValueError(f"scopes must be a non-empty subset of {', '.join(SCOPES)}")
    token_id, secret = secrets.token_hex(6), secrets.token_hex(32)
    text = f"{PREFIX}{token_id}_{secret}"
    row = await db.fetchrow(
        "INSERT INTO api_tokens (id, name, scopes, secret_hash, created_by, expires_at) VALUES ($1, $2, $3, $4, $5, $6)"
        " RETURNING *", token_id, name, sorted(set(scopes), key=SCOPES.index), digest(text), created_by, expires_at)
    return _record(row), text


async def listing(db: asyncpg.Pool | asyncpg.Connection) -> list[ApiToken]:
    return [_record(r) for r in await db.fetch("SELECT * FROM api_tokens ORDER BY created_at, id")]


async def get(db: asyncpg.Pool | asyncpg.Connection, token_id: str) -> ApiToken | None:
    row = await db.fetchrow("SELECT * FROM api_tokens WHERE id = $1", token_id)
    return _record(row) if row else None


async def revoke(db: asyncpg.Pool | asyncpg.Connection, token_id: str) -> ApiToken | None:
    """Revoke a token (idempotent: a revoked token keeps its first revocation time); None if unknown."""
    row = await db.fetchrow(
        "UPDATE api_tokens SET revoked_at = coalesce(revoked_at, clock_timestamp()) WHERE id = $1 RETURNING *", token_id)
    return _record(row) if row else None


async def verify(db: asyncpg.Pool | asyncpg.Connection, presented: str) -> ApiToken | None:
    """The valid (known, unexpired, unrevoked) token ``presented`` is, else None: the same answer for a
    malformed, unknown, wrong, expired or revoked token. Records last_used_at (at most every minute)."""
    m = _TOKEN.match(presented)
    row = await db.fetchrow("SELECT *, clock_timestamp() AS now FROM api_tokens WHERE id = $1", m.group(1)) if m else None
    stored = bytes(row["secret_hash"]) if row is not None else _DUMMY
    same = hmac.compare_digest(digest(presented), stored)
    if row is None or not same:
        return None
    token = _record(row)
    if not token.valid(row["now"]):
        return None
    if token.last_used_at is None or row["now"] - token.last_used_at >= TOUCH_EVERY:
        await db.execute("UPDATE api_tokens SET last_used_at = clock_timestamp() WHERE id = $1", token.id)
    return token
