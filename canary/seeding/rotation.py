"""Master-key rotation: re-encrypt and re-index everything the registry keeps under a new key.

Covered: deployment manifests, trickle sign-ups' prepared rows, canary locations (ciphertext + blind index), row fingerprints
(re-derived from the rows themselves, read from each datastore without firing detection), contact
points / credentials (ciphertext + blind index) and mail evidence. Everything in the control store
changes in ONE transaction (tables locked against concurrent writers), so a failure leaves the old
key fully valid. Every blind index is checked against the old key before it is replaced: a value
that does not reproduce its stored index aborts the rotation instead of silently orphaning a canary.

Not re-derivable: credential canaries derived from the old key (tokens, PostgreSQL passwords) keep
their placed values and stay recognisable by blind index, but the PostgreSQL honeypot derives
passwords from the current key; re-seed credential canaries after a rotation. The touch function's
line key (derived from the master key) is replaced in every reachable datastore after the commit.
Running listeners hold the old key in memory: restart them with the new key right after rotating
(until then they take genuine detection lines for forgeries: loud, but as TAMPER, not READ).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import asyncpg
import structlog

from canary.config import Config
from canary.crypto import Keyring
from canary.errors import CryptoError, DatastoreError
from canary.seeding import trickle
from canary.seeding.postgres import PostgresSeeder
from canary.store.registry import Registry, location_key

log = structlog.get_logger("canary.rotation")

MAIL_EVIDENCE = "evidence:mail"
MODIFIED_BEFORE_ROTATION = b"canary: row differed from its fingerprint when the key was rotated"


async def rotate(config: Config, registry: Registry, new: Keyring) -> dict[str, Any]:
    """Re-key the registry from ``registry.keyring`` to ``new``; returns counts per table."""
    old = registry.keyring
    if old.key_id == new.key_id:
        raise CryptoError("the new master key is the current one")
    fingerprints = await _refingerprint(config, registry, new)
    async with registry.pool.acquire() as conn, conn.transaction():
        has_mail = await conn.fetchval("SELECT to_regclass('contact_messages') IS NOT NULL")
        counts = await registry.rekey(conn, new, fingerprints, lock_also=["contact_messages"] if has_mail else [])
        counts["trickle_slots"] = await trickle.rekey(conn, old, new)
        if has_mail:
            rows = await conn.fetch("SELECT id, raw_enc FROM contact_messages")
            await conn.executemany(
                "UPDATE contact_messages SET raw_enc = $2, key_id = $3 WHERE id = $1",
                [(r["id"], new.encrypt(old.decrypt(r["raw_enc"], MAIL_EVIDENCE), MAIL_EVIDENCE), new.key_id) for r in rows],
            )
            counts["contact_messages"] = len(rows)
    log.info("master_key.rotated", key_id=new.key_id, counts=counts)
    # the touch functions sign their lines with a key derived from the master key: re-key them now
    # (a datastore that cannot be reached keeps the old one; verify says so and `canary seed` fixes it)
    rekeyed: list[str] = []
    stale: list[str] = []
    for ds in config.datastores:
        try:
            done = await PostgresSeeder(ds, registry).rekey_detection(new)
        except (DatastoreError, OSError, asyncpg.PostgresError) as exc:
            log.warning("master_key.detection_not_rekeyed", datastore=ds.name, error=type(exc).__name__)
            done = False
        (rekeyed if done else stale).append(ds.name)
    return {"key_id": new.key_id, "counts": counts, "detection_rekeyed": rekeyed, "detection_not_rekeyed": stale}


async def _refingerprint(config: Config, registry: Registry, new: Keyring) -> dict[int, bytes]:
    """New fingerprints of active customer canaries, computed from the rows as they are now. A row
    that no longer matches its old fingerprint gets a fingerprint that can never match (so verify
    keeps reporting it); a missing row keeps none. Raises if a datastore cannot be read."""

    by_ds: dict[str, list[Any]] = defaultdict(list)
    for rec in await registry.active():
        if rec.kind == "customer" and rec.fingerprint is not None:
            by_ds[rec.datastore].append(rec)
    out: dict[int, bytes] = {}
    for ds_name, records in by_ds.items():
        seeder = PostgresSeeder(config.datastore(ds_name), registry)
        texts = await seeder.current_rows(records)
        for rec in records:
            target, pk = str(rec.location["target"]), str(rec.location["pk"])
            purpose = "fingerprint:" + location_key(ds_name, target, pk)
            text = texts.get((target, pk))
            if text is None:
                continue
            unchanged = registry.keyring.mac(text.encode(), purpose) == bytes(rec.fingerprint or b"")
            out[rec.id] = new.mac(text.encode() if unchanged else MODIFIED_BEFORE_ROTATION, purpose)
    return out
