"""The canary registry: which canaries exist, where, and how to recognise them, without revealing them.

Locations (which row), contact points and credentials are stored AES-GCM encrypted and found by
HMAC blind index. Labels are deliberately coarse (``shop/public.customers``) so a stolen registry
tells an attacker which tables hold canaries (they can see the policies anyway) but not which rows.
"""

from __future__ import annotations

import enum
import json
import secrets
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from canary.crypto import Keyring
from canary.errors import CryptoError

LOCATION = "location"
MANIFEST = "manifest"
#: value kinds a retired canary keeps (in ``retired_values``): credentials that are still a signal when
#: presented after retirement; contact points are released for reuse
KEPT_WHEN_RETIRED = ("token", "aws_key_id", "aws_secret")


def location_key(datastore: str, target: str, pk: object) -> str:
    """Canonical lookup string of one row: ``datastore|schema.table|pk-as-text``."""
    return f"{datastore}|{target}|{pk}"


def value_purpose(kind: str) -> str:
    return f"value:{kind}"


def new_uid() -> str:
    return "cy_" + secrets.token_hex(8)


@dataclass(frozen=True, slots=True)
class CanaryRecord:
    id: int
    uid: str
    kind: str
    datastore: str
    label: str
    status: str
    deployment_id: int | None
    location: Mapping[str, Any]
    fingerprint: bytes | None


@dataclass(frozen=True, slots=True)
class NewCanary:
    """What a seeder hands the registry for each canary it wrote."""

    kind: str
    datastore: str
    label: str
    location: Mapping[str, Any]  # JSON-able; must hold "target" and "pk"
    lookup: str  # location_key(...) of the row
    fingerprint: bytes | None = None
    values: Sequence[tuple[str, str]] = ()  # (kind, plaintext) e.g. ("email", "a@b"), ("token", "ghp_…")


class Registry:
    def __init__(self, pool: asyncpg.Pool, keyring: Keyring) -> None:
        self.pool = pool
        self.keyring = keyring

    # -- writing (inside the caller's transaction) -----------------------------------------
    async def create_deployment(
        self, conn: asyncpg.Connection, datastore: str, target: str, manifest: Mapping[str, Any]
    ) -> int:
        blob = self.keyring.encrypt(json.dumps(manifest, default=str), MANIFEST)
        dep_id: int = await conn.fetchval(
            "INSERT INTO deployments (datastore, target, manifest_enc, key_id) VALUES ($1, $2, $3, $4) RETURNING id",
            datastore, target, blob, self.keyring.key_id,
        )
        return dep_id

    async def add(self, conn: asyncpg.Connection, canaries: Sequence[NewCanary], deployment_id: int | None) -> list[tuple[int, str]]:
        """Register canaries (one round trip per table); returns (id, uid) in input order."""
        if not canaries:
            return []
        k = self.keyring
        uids = [new_uid() for _ in canaries]
        rows = await conn.fetch(
            """
            INSERT INTO canaries (uid, kind, datastore, label, deployment_id, location_enc, location_idx, fingerprint, key_id)
            SELECT u, kd, ds, lb, $5, le, li, fp, $9
            FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $6::bytea[], $7::bytea[], $8::bytea[])
                 AS t(u, kd, ds, lb, le, li, fp)
            RETURNING id, uid
            """,
            uids, [c.kind for c in canaries], [c.datastore for c in canaries], [c.label for c in canaries],
            deployment_id,
            [k.encrypt(json.dumps(c.location, default=str), LOCATION) for c in canaries],
            [k.blind_index(c.lookup, LOCATION) for c in canaries],
            [c.fingerprint for c in canaries], k.key_id,
        )
        ids = {r["uid"]: r["id"] for r in rows}
        value_rows = [
            (ids[uid], kind, k.encrypt(value, value_purpose(kind)), k.blind_index(value, value_purpose(kind)), k.key_id)
            for uid, c in zip(uids, canaries)
            for kind, value in c.values
        ]
        if value_rows:
            await conn.executemany(
                "INSERT INTO canary_values (canary_id, kind, value_enc, value_idx, key_id) VALUES ($1, $2, $3, $4, $5)",
                value_rows,
            )
        return [(ids[u], u) for u in uids]

    async def add_values(self, conn: asyncpg.Connection, values: Sequence[tuple[int, str, str]]) -> int:
        """Give existing canaries more (canary id, kind, value) values, e.g. the rows of an enrolled copy
        (``child_row`` location keys); a value already registered is left as it is. Returns how many
        were added."""
        k = self.keyring
        rows = [(cid, kind, k.encrypt(value, value_purpose(kind)), k.blind_index(value, value_purpose(kind)), k.key_id)
                for cid, kind, value in values]
        if not rows:
            return 0
        status = await conn.execute(
            "INSERT INTO canary_values (canary_id, kind, value_enc, value_idx, key_id)"
            " SELECT * FROM unnest($1::bigint[], $2::text[], $3::bytea[], $4::bytea[], $5::text[])"
            " ON CONFLICT (kind, value_idx) DO NOTHING",
            [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows], [r[3] for r in rows], [r[4] for r in rows])
        return int(status.split()[-1])

    async def remove_values(self, conn: asyncpg.Connection, canary_id: int, values: Sequence[tuple[str, str]]) -> None:
        """Take (kind, value) values from a canary again (rows written for it that never committed)."""
        k = self.keyring
        for kind, value in values:
            await conn.execute("DELETE FROM canary_values WHERE canary_id = $1 AND kind = $2 AND value_idx = $3",
                               canary_id, kind, k.blind_index(value, value_purpose(kind)))

    async def update_manifest(self, conn: asyncpg.Connection, deployment_id: int, manifest: Mapping[str, Any]) -> None:
        """Replace a deployment's manifest (a trickle canary's rows written later join it)."""
        await conn.execute("UPDATE deployments SET manifest_enc = $2 WHERE id = $1", deployment_id,
                           self.keyring.encrypt(json.dumps(manifest, default=str), MANIFEST))

    async def set_fingerprint(self, conn: asyncpg.Connection, canary_id: int, fingerprint: bytes) -> None:
        """The canary's row was changed by canary itself (a trickle canary's later update)."""
        await conn.execute("UPDATE canaries SET fingerprint = $2 WHERE id = $1", canary_id, fingerprint)

    async def retire(self, conn: asyncpg.Connection, canary_ids: Iterable[int], deployment_id: int | None = None) -> None:
        await conn.execute(
            "UPDATE canaries SET status = 'retired', retired_at = now() WHERE id = ANY($1::bigint[])", list(canary_ids)
        )
        await conn.execute(
            "INSERT INTO retired_values (canary_id, kind, value_enc, value_idx, key_id)"
            " SELECT canary_id, kind, value_enc, value_idx, key_id FROM canary_values"
            " WHERE canary_id = ANY($1::bigint[]) AND kind = ANY($2::text[])", list(canary_ids), list(KEPT_WHEN_RETIRED))
        await conn.execute(
            "DELETE FROM canary_values WHERE canary_id = ANY($1::bigint[])", list(canary_ids)
        )
        if deployment_id is not None:
            await conn.execute("UPDATE deployments SET status = 'retired', retired_at = now() WHERE id = $1", deployment_id)

    async def relocate(self, conn: asyncpg.Connection, canary_id: int, canary: NewCanary, deployment_id: int | None,
                       *, from_label: str) -> bool:
        """Move an active canary still labelled ``from_label`` (a pooled credential not yet placed) to
        where ``canary`` says, keeping its uid and values. False when it is no longer there to move
        (placed or retired by someone else meanwhile)."""
        k = self.keyring
        status = await conn.execute(
            "UPDATE canaries SET datastore = $2, label = $3, location_enc = $4, location_idx = $5, fingerprint = $6,"
            " deployment_id = $7, key_id = $8 WHERE id = $1 AND status = 'active' AND label = $9",
            canary_id, canary.datastore, canary.label, k.encrypt(json.dumps(canary.location, default=str), LOCATION),
            k.blind_index(canary.lookup, LOCATION), canary.fingerprint, deployment_id, k.key_id, from_label,
        )
        return str(status).split()[-1] == "1"

    async def set_location(self, conn: asyncpg.Connection, canary_id: int, location: Mapping[str, Any]) -> None:
        """Replace a canary's location with one naming the same target and pk (its index stays valid),
        e.g. to note that a credential was deleted where it was issued."""
        await conn.execute("UPDATE canaries SET location_enc = $2, key_id = $3 WHERE id = $1", canary_id,
                           self.keyring.encrypt(json.dumps(location, default=str), LOCATION), self.keyring.key_id)

    async def retire_emptied_deployments(self, conn: asyncpg.Connection, deployment_ids: Iterable[int]) -> None:
        """Mark retired each of these deployments that has no active canary left."""
        for dep in deployment_ids:
            left = await conn.fetchval("SELECT count(*) FROM canaries WHERE deployment_id = $1 AND status = 'active'", dep)
            if not left:
                await conn.execute("UPDATE deployments SET status = 'retired', retired_at = now() WHERE id = $1", dep)

    async def withdraw_deployments(self, conn: asyncpg.Connection, deployment_ids: Sequence[int]) -> None:
        """Delete these deployments with their canaries and values, as if never registered (a seed
        whose datastore transaction failed after the registry committed)."""
        await conn.execute(
            "DELETE FROM canary_values WHERE canary_id IN (SELECT id FROM canaries WHERE deployment_id = ANY($1::bigint[]))",
            list(deployment_ids),
        )
        await conn.execute("DELETE FROM canaries WHERE deployment_id = ANY($1::bigint[])", list(deployment_ids))
        await conn.execute("DELETE FROM deployments WHERE id = ANY($1::bigint[])", list(deployment_ids))

    async def rekey(
        self, conn: asyncpg.Connection, new: Keyring, fingerprints: Mapping[int, bytes], *, lock_also: Sequence[str] = ()
    ) -> dict[str, int]:
        """Re-encrypt and re-index deployments, canaries and canary values from ``self.keyring`` to
        ``new`` inside the caller's transaction, after locking those tables (and ``lock_also``) against
        concurrent writers. ``fingerprints`` replaces row fingerprints by canary id. Every blind index
        is checked against the old key first: one that does not reproduce raises CryptoError (the
        caller's transaction then rolls back). Returns rows rewritten per table."""
        old = self.keyring
        counts: dict[str, int] = {}
        await conn.execute(
            f"LOCK TABLE {', '.join(['deployments', 'canaries', 'canary_values', 'retired_values', *lock_also])} IN EXCLUSIVE MODE")
        rows = await conn.fetch("SELECT id, manifest_enc FROM deployments")
        await conn.executemany(
            "UPDATE deployments SET manifest_enc = $2, key_id = $3 WHERE id = $1",
            [(r["id"], new.encrypt(old.decrypt(r["manifest_enc"], MANIFEST), MANIFEST), new.key_id) for r in rows],
        )
        counts["deployments"] = len(rows)
        rows = await conn.fetch("SELECT id, uid, datastore, location_enc, location_idx, fingerprint FROM canaries")
        updates = []
        for r in rows:
            plain = old.decrypt(r["location_enc"], LOCATION)
            loc = json.loads(plain)
            lookup = location_key(r["datastore"], loc.get("target"), loc.get("pk"))
            if old.blind_index(lookup, LOCATION) != bytes(r["location_idx"]):
                raise CryptoError(
                    f"canary {r['uid']}: its location index cannot be reproduced from its location; rotation aborted, nothing changed"
                )
            fp = fingerprints.get(r["id"], r["fingerprint"])
            updates.append((r["id"], new.encrypt(plain, LOCATION), new.blind_index(lookup, LOCATION), fp, new.key_id))
        await conn.executemany(
            "UPDATE canaries SET location_enc = $2, location_idx = $3, fingerprint = $4, key_id = $5 WHERE id = $1", updates
        )
        counts["canaries"] = len(rows)
        rows = await conn.fetch("SELECT id, kind, value_enc, value_idx FROM canary_values")
        value_updates: list[tuple[Any, bytes, bytes, str]] = []
        for r in rows:
            purpose = value_purpose(r["kind"])
            value = old.decrypt_text(r["value_enc"], purpose)
            if old.blind_index(value, purpose) != bytes(r["value_idx"]):
                raise CryptoError(f"canary value {r['id']}: stored index does not match its value; rotation aborted, nothing changed")
            value_updates.append((r["id"], new.encrypt(value, purpose), new.blind_index(value, purpose), new.key_id))
        # indexes are unique per kind: move every row aside first so old and new indexes never collide
        await conn.execute("UPDATE canary_values SET value_idx = '\\x00'::bytea || int8send(id)")
        await conn.executemany("UPDATE canary_values SET value_enc = $2, value_idx = $3, key_id = $4 WHERE id = $1", value_updates)
        counts["canary_values"] = len(rows)
        rows = await conn.fetch("SELECT id, kind, value_enc, value_idx FROM retired_values")
        retired: list[tuple[Any, bytes, bytes, str]] = []
        for r in rows:
            purpose = value_purpose(r["kind"])
            value = old.decrypt_text(r["value_enc"], purpose)
            if old.blind_index(value, purpose) != bytes(r["value_idx"]):
                raise CryptoError(f"retired value {r['id']}: stored index does not match its value; rotation aborted, nothing changed")
            retired.append((r["id"], new.encrypt(value, purpose), new.blind_index(value, purpose), new.key_id))
        await conn.executemany("UPDATE retired_values SET value_enc = $2, value_idx = $3, key_id = $4 WHERE id = $1", retired)
        counts["retired_values"] = len(rows)
        return counts

    # -- reading -------------------------------------------------------------------------------
    def _record(self, row: asyncpg.Record) -> CanaryRecord:
        return CanaryRecord(
            id=row["id"], uid=row["uid"], kind=row["kind"], datastore=row["datastore"], label=row["label"],
            status=row["status"], deployment_id=row["deployment_id"],
            location=json.loads(self.keyring.decrypt_text(row["location_enc"], LOCATION)),
            fingerprint=row["fingerprint"],
        )

    async def by_location(self, lookups: Sequence[str], conn: asyncpg.Connection | None = None) -> dict[str, int]:
        """Active canary ids for location keys, of canary rows or of the rows written for them in other
        tables (unknown keys are absent from the result)."""
        if not lookups:
            return {}
        idx = {self.keyring.blind_index(key, LOCATION): key for key in lookups}
        q = "SELECT id, location_idx FROM canaries WHERE location_idx = ANY($1::bytea[]) AND status = 'active'"
        rows = await (conn.fetch(q, list(idx)) if conn else self.pool.fetch(q, list(idx)))
        out = {idx[bytes(r["location_idx"])]: r["id"] for r in rows}
        rest = [key for key in lookups if key not in out]  # rows written for a canary: its orders, addresses
        if rest:
            found = await recognise(self, [(ValueKind.CHILD_ROW.value, key) for key in rest], conn=conn)
            out.update({value: m.canary_id for (_, value), m in found.items()})
        return out

    async def by_value(self, kind: str, value: str) -> CanaryRecord | None:
        """The active canary that owns a contact point or credential, by blind index."""
        idx = self.keyring.blind_index(value, value_purpose(kind))
        row = await self.pool.fetchrow(
            """
            SELECT c.* FROM canary_values v JOIN canaries c ON c.id = v.canary_id
            WHERE v.kind = $1 AND v.value_idx = $2 AND c.status = 'active'
            """,
            kind, idx,
        )
        return self._record(row) if row else None

    async def values_of(self, canary_id: int) -> list[tuple[str, str]]:
        rows = await self.pool.fetch("SELECT kind, value_enc FROM canary_values WHERE canary_id = $1 ORDER BY id", canary_id)
        return [(r["kind"], self.keyring.decrypt_text(r["value_enc"], value_purpose(r["kind"]))) for r in rows]

    async def active(self, datastore: str | None = None, label: str | None = None, conn: asyncpg.Connection | None = None) -> list[CanaryRecord]:
        q = "SELECT * FROM canaries WHERE status = 'active' AND ($1::text IS NULL OR datastore = $1) AND ($2::text IS NULL OR label = $2) ORDER BY id"
        rows = await (conn.fetch(q, datastore, label) if conn else self.pool.fetch(q, datastore, label))
        return [self._record(r) for r in rows]

    async def of_kind(self, kind: str, conn: asyncpg.Connection | None = None) -> list[CanaryRecord]:
        """Every canary of ``kind``, active or retired, oldest first."""
        q = "SELECT * FROM canaries WHERE kind = $1 ORDER BY id"
        rows = await (conn.fetch(q, kind) if conn else self.pool.fetch(q, kind))
        return [self._record(r) for r in rows]

    async def reveal(self, ids: Sequence[int]) -> dict[int, tuple[Mapping[str, Any], list[tuple[str, str]]]]:
        """Canary id -> (location, values as (kind, plaintext)): what the API shows only to a ``reveal``
        token that asks (and audits). Unknown ids are absent."""
        rows = await self.pool.fetch("SELECT * FROM canaries WHERE id = ANY($1::bigint[]) ORDER BY id", list(ids))
        values = await self.pool.fetch(
            "SELECT canary_id, kind, value_enc FROM canary_values WHERE canary_id = ANY($1::bigint[]) ORDER BY id", list(ids))
        out: dict[int, tuple[Mapping[str, Any], list[tuple[str, str]]]] = {r["id"]: (self._record(r).location, []) for r in rows}
        for v in values:
            out[v["canary_id"]][1].append((v["kind"], self.keyring.decrypt_text(v["value_enc"], value_purpose(v["kind"]))))
        return out

    async def manifest(self, deployment_id: int, conn: asyncpg.Connection | None = None) -> dict[str, Any]:
        blob = await (conn or self.pool).fetchval("SELECT manifest_enc FROM deployments WHERE id = $1", deployment_id)
        return json.loads(self.keyring.decrypt_text(blob, MANIFEST)) if blob else {}


# -- reading without the key (labels, counts, ciphertext) ------------------------------------
async def summaries(db: asyncpg.Pool | asyncpg.Connection, ids: Sequence[int]) -> list[asyncpg.Record]:
    """(id, uid, kind, datastore, label) of these canaries, whatever their status: never locations."""
    if not ids:
        return []
    return list(await db.fetch("SELECT id, uid, kind, datastore, label FROM canaries WHERE id = ANY($1::bigint[])", list(ids)))


async def labels(db: asyncpg.Pool | asyncpg.Connection, ids: Sequence[int]) -> dict[int, str]:
    """Canary id -> label."""
    return {r["id"]: r["label"] for r in await summaries(db, ids)}


async def ids_by_uid(db: asyncpg.Pool | asyncpg.Connection, uids: Sequence[str]) -> dict[str, int]:
    """Public uid -> registry id (unknown uids are absent)."""
    if not uids:
        return {}
    return {r["uid"]: r["id"] for r in await db.fetch("SELECT id, uid FROM canaries WHERE uid = ANY($1::text[])", list(uids))}


async def incident_labels(db: asyncpg.Pool | asyncpg.Connection, incident_ids: Sequence[int]) -> dict[int, list[dict[str, Any]]]:
    """Per incident, its canaries by label and kind (most-hit first, at most 20): never locations."""
    rows = await db.fetch(
        """
        SELECT i.id AS incident_id, c.label, c.kind, count(*) AS n
        FROM incidents i CROSS JOIN LATERAL unnest(i.canary_ids) AS cid JOIN canaries c ON c.id = cid
        WHERE i.id = ANY($1::bigint[])
        GROUP BY 1, 2, 3 ORDER BY 1, 4 DESC, 2
        """,
        list(incident_ids),
    )
    out: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        if len(out[r["incident_id"]]) < 20:
            out[r["incident_id"]].append({"label": r["label"], "kind": r["kind"], "count": r["n"]})
    return out


async def inventory(db: asyncpg.Pool | asyncpg.Connection) -> list[asyncpg.Record]:
    """(datastore, label, kind, n, newest) of active canaries, in that order."""
    return list(await db.fetch(
        "SELECT datastore, label, kind, count(*) AS n, max(created_at) AS newest FROM canaries"
        " WHERE status = 'active' GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"))


async def page(db: asyncpg.Pool | asyncpg.Connection, *, after: int | None, limit: int, datastore: str | None = None,
               label: str | None = None, status: str | None = None) -> list[asyncpg.Record]:
    """(id, uid, kind, datastore, label, status, created_at, retired_at) of canaries with ids above ``after``
    (keyset), at most ``limit``, optionally of one datastore / label / status: never locations or values."""
    return list(await db.fetch(
        "SELECT id, uid, kind, datastore, label, status, created_at, retired_at FROM canaries"
        " WHERE ($1::bigint IS NULL OR id > $1) AND ($2::text IS NULL OR datastore = $2) AND ($3::text IS NULL OR label = $3)"
        " AND ($4::text IS NULL OR status = $4) ORDER BY id LIMIT $5", after, datastore, label, status, limit))


async def retired_count(db: asyncpg.Pool | asyncpg.Connection) -> int:
    n: int = await db.fetchval("SELECT count(*) FROM canaries WHERE status = 'retired'")
    return n


async def active_values(
    db: asyncpg.Pool | asyncpg.Connection, kind: str | None = None, limit: int | None = None
) -> list[asyncpg.Record]:
    """(canary_id, kind, value_enc) of active canaries' values (of one ``kind``, when given), oldest
    first, at most ``limit``. Ciphertext: decrypt with ``value_purpose(kind)``."""
    return list(await db.fetch(
        "SELECT v.canary_id, v.kind, v.value_enc FROM canary_values v JOIN canaries c ON c.id = v.canary_id"
        " WHERE c.status = 'active' AND ($1::text IS NULL OR v.kind = $1) ORDER BY v.id LIMIT $2", kind, limit,
    ))


#: notified (migration 0130) when a transaction that changed which values are canaries commits
VALUES_CHANNEL = "canary_values"


async def value_indexes(db: asyncpg.Pool | asyncpg.Connection, kinds: Sequence[str]) -> dict[bytes, tuple[int, str]]:
    """Blind index -> (canary id, kind) of active canaries' values of these kinds: no key and no
    plaintext needed; hash a candidate with ``Keyring.blind_index(value, value_purpose(kind))`` and
    look it up (indexes of different kinds never collide: the purpose is part of the HMAC)."""
    rows = await db.fetch(
        "SELECT v.value_idx, v.canary_id, v.kind FROM canary_values v JOIN canaries c ON c.id = v.canary_id"
        " WHERE c.status = 'active' AND v.kind = ANY($1::text[]) ORDER BY v.id", list(kinds),
    )
    return {bytes(r["value_idx"]): (int(r["canary_id"]), str(r["kind"])) for r in rows}


async def retired_value_indexes(db: asyncpg.Pool | asyncpg.Connection, kinds: Sequence[str]) -> dict[bytes, tuple[int, str]]:
    """Blind index -> (canary id, kind) of retired canaries' kept credentials (``KEPT_WHEN_RETIRED``)
    of these kinds, as :func:`value_indexes` gives them for active canaries: a retired credential
    presented again is still a signal."""
    rows = await db.fetch(
        "SELECT v.value_idx, v.canary_id, v.kind FROM retired_values v JOIN canaries c ON c.id = v.canary_id"
        " WHERE c.status = 'retired' AND v.kind = ANY($1::text[]) ORDER BY v.id", list(kinds),
    )
    return {bytes(r["value_idx"]): (int(r["canary_id"]), str(r["kind"])) for r in rows}


# -- values presented to canary: which canary holds them -------------------------------------
class ValueKind(enum.StrEnum):
    """What a stored blind index identifies (persisted in ``canary_values.kind``)."""

    AWS_KEY_ID = "aws_key_id"
    AWS_SECRET = "aws_secret"
    TOKEN = "token"
    DSN_USER = "dsn_user"
    PG_ROLE = "pg_role"
    #: a row written for a canary in another table (an order, an address): its location key
    CHILD_ROW = "child_row"


@dataclass(frozen=True, slots=True)
class Match:
    """A presented value that belongs to an active canary (no secret inside)."""

    value_kind: str
    canary_id: int
    uid: str
    label: str
    datastore: str


async def recognise(
    registry: Registry, candidates: Sequence[tuple[str, str]], *, conn: asyncpg.Connection | None = None
) -> dict[tuple[str, str], Match]:
    """Which (kind, value) candidates are active canary values: one query whatever the answer, the
    same blind-index work for canaries and non-canaries."""
    if not candidates:
        return {}
    k = registry.keyring
    idx = [(kind, k.blind_index(value, value_purpose(kind))) for kind, value in candidates]
    q = """
        SELECT t.ord, v.kind, c.id, c.uid, c.label, c.datastore
        FROM unnest($1::text[], $2::bytea[]) WITH ORDINALITY AS t(kind, idx, ord)
        JOIN canary_values v ON v.kind = t.kind AND v.value_idx = t.idx
        JOIN canaries c ON c.id = v.canary_id AND c.status = 'active'
    """
    args = ([kd for kd, _ in idx], [i for _, i in idx])
    rows = await (conn.fetch(q, *args) if conn is not None else registry.pool.fetch(q, *args))
    out: dict[tuple[str, str], Match] = {}
    for r in rows:
        cand = candidates[int(r["ord"]) - 1]
        out[cand] = Match(r["kind"], r["id"], r["uid"], r["label"], r["datastore"])
    return out
