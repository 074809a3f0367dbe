"""Credential canaries in datastore tables (api_keys, service_tokens, config rows).

A credential target is a table whose rows hold secrets. The seeder writes rows like the real ones
(other columns synthesised from the table's profile) whose secret column carries a credential
derived from the master key (:class:`canary.credentials.CredentialFactory`), in the format the
table's existing secrets use (``credential = "auto"``) or the configured one. Companion columns
are filled consistently: ``*_prefix`` with the token's first characters, ``last4`` / ``last_four``
with its last four, and for AWS key pairs the access-key-id column.

AWS key pairs are real: each comes from the AWS canary key pool (:mod:`canary.credentials.aws`, IAM
users without permissions whose use CloudTrail records). With too few unplaced keys the seed is
refused, unless the target says ``honeypot_only = true``: then the key is a derived shape that exists
nowhere in AWS and fires only when presented to canary's own honeypot, and ``plan`` says so.

Token stores (session tokens, refresh tokens, API keys) often keep only a hash of the token. With
``stored_as`` (or ``auto``: the form most of the column's existing values have: 64 or 128 hex digits,
base64 of 32 bytes) the row gets the token's hash in that form, as the identity system would have
written it, and the presentable token stays encrypted in the registry: a token taken from a backup, a
log or the identity system's memory fires when presented at the gateway check or the honeypot, and so
does the stored hash presented as if it were a token.

``pg_dsn`` credentials point at the datastore itself with a login role created for the canary: it
has no privileges and its password is already expired (``VALID UNTIL`` in the past), so it looks
dormant and can never log in, but every attempt is logged by the server with the role's name.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import enum
import hashlib
import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from canary.config import TableTarget
from canary.credentials.aws import PooledKey, take_unplaced
from canary.credentials.values import Credential, CredentialFactory, CredentialType, scram_verifier
from canary.errors import SeedError
from canary.postgres.sql import ident, literal
from canary.seeding.catalog import TableInfo
from canary.store.registry import Registry, ValueKind

EXPIRED = "2000-01-01 00:00:00+00"
_SECRET_NAME = re.compile(r"token|secret|api_?key|^key$|_key$|password|passwd|dsn|connection|conn_?str|credential|^value$", re.I)
_KEY_ID_NAME = re.compile(r"access_?key(_?id)?$|key_?id$", re.I)
_PREFIX_NAME = re.compile(r"prefix", re.I)
_LAST4_NAME = re.compile(r"last_?(4|four)", re.I)


class Storage(enum.StrEnum):
    """How a table keeps its tokens: as presented, or a hash of them (hex or base64 of the digest)."""

    PLAIN = "plain"
    SHA256_HEX = "sha256_hex"
    SHA256_BASE64 = "sha256_base64"
    SHA512_HEX = "sha512_hex"


@dataclass(frozen=True, slots=True)
class SecretColumns:
    secret: str
    key_id: str | None = None  # AWS access key id
    prefix: str | None = None
    last4: str | None = None
    storage: Storage = Storage.PLAIN  # what the secret column holds of the token


def _storage_of(value: str) -> Storage:
    if re.fullmatch(r"[0-9a-f]{64}|[0-9A-F]{64}", value):
        return Storage.SHA256_HEX
    if re.fullmatch(r"[0-9a-f]{128}|[0-9A-F]{128}", value):
        return Storage.SHA512_HEX
    if re.fullmatch(r"[A-Za-z0-9+/]{43}=", value):
        try:
            if len(base64.b64decode(value, validate=True)) == 32:
                return Storage.SHA256_BASE64
        except (binascii.Error, ValueError):
            pass
    return Storage.PLAIN


def infer_storage(values: Sequence[str]) -> Storage:
    """The form most of a column's existing secrets have (plain when most are none of the hashes)."""
    votes = Counter(_storage_of(v) for v in values)
    if not votes:
        return Storage.PLAIN
    form, n = votes.most_common(1)[0]
    return form if n * 2 > len(values) else Storage.PLAIN


def stored_form(token: str, storage: Storage) -> str:
    """What a table that keeps ``storage`` holds for ``token`` (its UTF-8 bytes hashed)."""
    data = token.encode("utf-8")
    if storage is Storage.SHA256_HEX:
        return hashlib.sha256(data).hexdigest()
    if storage is Storage.SHA512_HEX:
        return hashlib.sha512(data).hexdigest()
    if storage is Storage.SHA256_BASE64:
        return base64.b64encode(hashlib.sha256(data).digest()).decode("ascii")
    return token


def stored_credential(cred: Credential, storage: Storage) -> Credential:
    """``cred`` as a table that keeps ``storage`` holds it: the row gets ``fields["stored"]``, and the
    registry knows both the presentable token and the stored hash (presented as if it were a token, it
    is the hash stolen from the table). Plain storage and AWS keys / DSNs are as they are."""
    if storage is Storage.PLAIN or cred.type in (CredentialType.AWS_KEY, CredentialType.PG_DSN, CredentialType.PG_ROLE):
        return cred
    stored = stored_form(cred.secret, storage)
    return dataclasses.replace(cred, fields={**cred.fields, "stored": stored},
                               values=(*cred.values, (ValueKind.TOKEN, stored)))


def infer_type(values: Sequence[str]) -> CredentialType:
    """The credential format most existing secrets use (bearer when nothing is recognisable)."""
    votes: Counter[CredentialType] = Counter()
    for v in values:
        if re.fullmatch(r"gh[pousr]_[A-Za-z0-9]{36}", v):
            votes[CredentialType.GITHUB_TOKEN] += 1
        elif re.fullmatch(r"sk_(live|test)_[A-Za-z0-9]{20,}", v):
            votes[CredentialType.STRIPE_KEY] += 1
        elif re.fullmatch(r"eyJ[\w-]+\.[\w-]+\.[\w-]+", v):
            votes[CredentialType.JWT] += 1
        elif re.fullmatch(r"[A-Za-z0-9/+]{40}", v) or re.fullmatch(r"(AKIA|ASIA)[A-Z0-9]{16}", v):
            votes[CredentialType.AWS_KEY] += 1
        elif v.startswith(("postgres://", "postgresql://")):
            votes[CredentialType.PG_DSN] += 1
        else:
            votes[CredentialType.BEARER] += 1
    return votes.most_common(1)[0][0] if votes else CredentialType.BEARER


def secret_columns(info: TableInfo, cred_type: CredentialType, column: str | None) -> SecretColumns:
    pk = set(info.primary_key)
    text_cols = [c.name for c in info.columns if c.category == "S" and c.name not in pk and not c.generated]
    key_id = next((c for c in text_cols if _KEY_ID_NAME.search(c)), None) if cred_type == CredentialType.AWS_KEY else None
    if column is not None:
        if column not in text_cols:
            raise SeedError(f"{info.target}: column {column!r} is not a text column that can hold a secret", target=info.target)
        secret = column
    else:
        candidates = [c for c in text_cols if _SECRET_NAME.search(c) and c != key_id and not _PREFIX_NAME.search(c)
                      and not _LAST4_NAME.search(c)]
        if cred_type == CredentialType.AWS_KEY:
            candidates = [c for c in candidates if "secret" in c.lower()] or candidates
        if not candidates:
            raise SeedError(
                f"{info.target}: no column looks like it holds a secret (token, secret, api_key, password, dsn...); "
                "set `column` on the table target", target=info.target,
            )
        secret = candidates[0]
    length = info.column(secret).max_length
    if length is not None and length < 40:
        raise SeedError(f"{info.target}.{secret} holds at most {length} characters: too short for a credential", target=info.target)
    return SecretColumns(
        secret, key_id,
        next((c for c in text_cols if _PREFIX_NAME.search(c) and c != secret), None),
        next((c for c in text_cols if _LAST4_NAME.search(c) and c != secret), None),
    )


def make_credential(factory: CredentialFactory, cred_type: CredentialType, datastore_dsn: str, cred_id: str) -> Credential:
    """A credential of ``cred_type`` derived for ``cred_id`` (a pg_dsn points at the datastore itself)."""
    if cred_type == CredentialType.AWS_KEY:
        return factory.aws_key(cred_id)
    if cred_type == CredentialType.GITHUB_TOKEN:
        return factory.github_token(cred_id)
    if cred_type == CredentialType.STRIPE_KEY:
        return factory.stripe_key(cred_id)
    if cred_type == CredentialType.JWT:
        return factory.jwt(cred_id, issued_at=1_700_000_000 + int(cred_id[-6:], 16) % 30_000_000)
    if cred_type == CredentialType.PG_DSN:
        parts = urlsplit(datastore_dsn)
        database = unquote(parts.path.lstrip("/")) or "postgres"
        return factory.pg_dsn(parts.hostname or "localhost", parts.port or 5432, database, cred_id)
    return factory.bearer(cred_id)


async def credentials_for(registry: Registry, factory: CredentialFactory, cred_type: CredentialType, target: TableTarget,
                          table: str, datastore_dsn: str, cred_id: Callable[[], str],
                          n: int) -> tuple[list[Credential], list[PooledKey], list[str]]:
    """``n`` credentials for ``table``: (credentials, the pool keys among them, warnings for the plan).
    AWS keys come from the pool (SeedError when it is short) unless the target is ``honeypot_only``."""
    if cred_type != CredentialType.AWS_KEY or n == 0:
        return [make_credential(factory, cred_type, datastore_dsn, cred_id()) for _ in range(n)], [], []
    if target.honeypot_only:
        return [factory.aws_key(cred_id()) for _ in range(n)], [], [
            f"{table}: honeypot_only: these {n} AWS keys are derived fakes that exist nowhere in AWS; they can fire only "
            "when presented to canary's own honeypot, never when used against AWS (CloudTrail never sees them)"]
    pooled = await take_unplaced(registry, n)
    if len(pooled) < n:
        raise SeedError(
            f"{table}: {n} AWS canary keys needed but the AWS key pool has {len(pooled)} unplaced; add real ones "
            "(`canary credential provision aws --count N`, or `canary credential pool add aws --from FILE`), or set "
            "honeypot_only = true on the target for fakes that fire only at canary's own honeypot", target=table)
    return [p.credential for p in pooled], pooled, []


def fill(values: dict[str, str | None], cols: SecretColumns, cred: Credential) -> None:
    """Put the credential (and its companion values) into a synthesised row."""
    if cred.type == CredentialType.AWS_KEY:
        values[cols.secret] = cred.fields["secret_access_key"]
        if cols.key_id:
            values[cols.key_id] = cred.fields["access_key_id"]
    else:
        values[cols.secret] = cred.fields.get("stored") or cred.secret
    shown = cred.fields.get("access_key_id") or cred.secret
    if cols.prefix:
        values[cols.prefix] = shown[:8]
    if cols.last4:
        values[cols.last4] = shown[-4:]


def create_role_sql(factory: CredentialFactory, cred: Credential) -> str | None:
    """The dormant, already-expired login role behind a pg_dsn credential (None for other types).
    Its SCRAM verifier uses the factory's per-user salt, like the PostgreSQL honeypot's."""
    if cred.type != CredentialType.PG_DSN:
        return None

    user = cred.fields["user"]
    verifier = scram_verifier(cred.fields["password"], factory.scram_salt(user))
    return f"CREATE ROLE {ident(user)} LOGIN PASSWORD {literal(verifier)} VALID UNTIL {literal(EXPIRED)}"


def roles_of(rows: Sequence[Mapping[str, object]]) -> list[str]:
    return [str(r["role"]) for r in rows if r.get("role")]
