"""AWS canary keys: real IAM users without permissions, kept as a pool the seeder draws from.

A derived ``AKIA…`` string exists nowhere in AWS: an attacker who tries it gets
``InvalidClientTokenId`` and CloudTrail records nothing, so it can only fire at canary's own honeypot.
A canary key that fires *at AWS* must be a real access key of a real IAM user. This module makes them
through the IAM Query API (boto3 in a worker thread, credentials from boto3's normal chain or a
profile) and keeps each as a canary of kind ``credential`` whose ``aws_key_id`` / ``aws_secret``
values are stored like every other credential (AES-GCM + blind index):

* :func:`provision` creates users (``CreateUser`` with the configured path, names drawn from a
  pattern such as ``svc-{word}-{word}``, a tag only when asked), one access key each
  (``CreateAccessKey``), and proves they can do nothing (``ListAttachedUserPolicies``,
  ``ListUserPolicies`` and ``ListGroupsForUser`` all empty) before registering them. A user that
  cannot be proven powerless or registered is deleted again.
* :func:`register_keys` adds keys the operator made themselves (a CSV as the IAM console downloads
  it, or JSON as ``CreateAccessKey`` answers); secrets are never echoed.
* Pool entries are active canaries labelled ``aws/iam-pool`` (datastore ``aws``): unplaced, but a
  leaked one still fires. :func:`take_unplaced` hands the seeder the oldest ones;
  :func:`place` moves each into the row it was written to (same uid and values, new location), so
  the seeded row's canary still knows its IAM user.
* :func:`retire` deletes the access keys and the user (``ListAccessKeys``, ``DeleteAccessKey``,
  ``DeleteUser``) and marks the canary retired. Retiring a seeded row (``canary seed retire``) leaves
  the IAM user alone: the pool listing shows it as "row retired, IAM user remains" until
  ``canary credential retire aws`` removes it from AWS too.

Use is detected from CloudTrail (:mod:`canary.credentials.cloudtrail`): the record of any call made
with the key, including ``sts:GetCallerIdentity`` which needs no permission, carries
``userIdentity.accessKeyId`` (``type`` ``IAMUser``), ``sourceIPAddress`` and ``userAgent``; every other
call fails with ``errorCode`` ``AccessDenied``.

References: IAM API ``CreateUser`` / ``CreateAccessKey`` / ``DeleteAccessKey`` / ``DeleteUser``
(https://docs.aws.amazon.com/IAM/latest/APIReference/API_CreateAccessKey.html), user-name characters
``[\\w+=,.@-]`` up to 64; CloudTrail record contents and the ``userIdentity`` element
(https://docs.aws.amazon.com/awscloudtrail/latest/userguide/cloudtrail-event-reference-record-contents.html,
https://docs.aws.amazon.com/awscloudtrail/latest/userguide/cloudtrail-event-reference-user-identity.html);
``GetCallerIdentity`` needs no permissions
(https://docs.aws.amazon.com/STS/latest/APIReference/API_GetCallerIdentity.html).
"""

from __future__ import annotations

import asyncio
import csv
import dataclasses
import datetime as dt
import io
import json
import re
import secrets
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import asyncpg
import boto3
import botocore.config
import botocore.exceptions
import structlog

from canary import aws
from canary.config import AwsIamConfig
from canary.credentials.values import CREDENTIAL_KIND, Credential, CredentialType, new_cred_id
from canary.errors import CanaryError, SeedError
from canary.store.registry import CanaryRecord, NewCanary, Registry, ValueKind, location_key, recognise

log = structlog.get_logger("canary.credentials.aws")

POOL_DATASTORE = "aws"
POOL_TARGET = "iam-pool"
POOL_LABEL = f"{POOL_DATASTORE}/{POOL_TARGET}"
KEY_ID = re.compile(r"^AKIA[A-Z0-9]{16}$")
SECRET = re.compile(r"^[A-Za-z0-9/+]{40}$")
USER_NAME = re.compile(r"^[\w+=,.@-]{1,64}$")

#: words real service accounts are named after (jobs, tools, systems), for ``{word}`` in name patterns
WORDS = (
    "airflow", "analytics", "archive", "audit", "backup", "batch", "billing", "build", "cdn", "ci", "crm", "datadog",
    "deploy", "dms", "dns", "email", "etl", "events", "export", "feeds", "finance", "github", "gitlab", "glue",
    "grafana", "import", "ingest", "invoices", "jenkins", "ledger", "logs", "looker", "mailer", "media", "metrics",
    "migrate", "monitor", "notify", "ops", "orders", "payments", "pipeline", "platform", "push", "reports",
    "runner", "s3sync", "search", "sftp", "snowflake", "splunk", "sync", "terraform", "upload", "uploads", "vault",
    "warehouse", "web",
)


class IamError(CanaryError):
    """An IAM call failed (no credentials, denied, unreachable): ``operation`` and AWS's ``aws_code``."""

    code = "iam_error"


@dataclasses.dataclass(frozen=True, slots=True)
class PooledKey:
    """An unplaced pool key handed to the seeder: the canary it is and its credential (repr hides it)."""

    canary_id: int
    credential: Credential
    location: Mapping[str, Any] = dataclasses.field(repr=False)


@dataclasses.dataclass(frozen=True, slots=True)
class PoolEntry:
    """One AWS canary key as ``canary credential list aws`` shows it (never the key or secret)."""

    canary_id: int
    uid: str
    state: str  # unplaced | placed | retired | deleted
    label: str
    iam_user: str | None
    key_hint: str  # AKIA…WXYZ: enough to match the IAM console, not to use
    origin: str  # provisioned | registered
    location: Mapping[str, Any] = dataclasses.field(repr=False)


@dataclasses.dataclass(frozen=True, slots=True)
class KeyPair:
    """An access key to register (from IAM or a file); repr hides both halves."""

    access_key_id: str = dataclasses.field(repr=False)
    secret_access_key: str = dataclasses.field(repr=False)
    user_name: str | None = None
    arn: str | None = None


# -- IAM ----------------------------------------------------------------------------------------
class Iam:
    """The few IAM calls canary makes, each in a worker thread with a timeout, errors translated."""

    def __init__(self, config: AwsIamConfig, *, endpoint_url: str | None = None, profile: str | None = None) -> None:
        self.config = config
        self.endpoint_url = endpoint_url or config.endpoint_url
        self.profile = profile or config.profile
        self._client: Any = None

    def __repr__(self) -> str:
        return f"Iam(endpoint_url={self.endpoint_url!r}, profile={self.profile!r})"

    def _iam(self) -> Any:
        if self._client is None:
            aws.quiet_botocore()  # CreateAccessKey's answer holds the secret
            try:
                session = boto3.Session(profile_name=self.profile, region_name=self.config.region)
            except botocore.exceptions.BotoCoreError as exc:
                raise IamError(f"AWS profile {self.profile!r}: {exc}", operation="session") from None
            timeout = self.config.timeout
            self._client = session.client("iam", endpoint_url=self.endpoint_url, config=botocore.config.Config(
                connect_timeout=timeout, read_timeout=timeout, retries={"max_attempts": 4, "mode": "standard"}))
        return self._client

    async def call(self, operation: str, **params: Any) -> dict[str, Any]:
        """``operation`` (boto3's snake_case name) with ``params``; IamError on any failure."""
        def run() -> dict[str, Any]:
            result: dict[str, Any] = getattr(self._iam(), operation)(**params)
            return result

        try:
            return await asyncio.wait_for(asyncio.to_thread(run), self.config.timeout * 5)
        except botocore.exceptions.ClientError as exc:
            err = exc.response.get("Error", {})
            code = str(err.get("Code", "")) or "Unknown"
            raise IamError(f"IAM {operation}: {code}: {str(err.get('Message', ''))[:300]}", operation=operation,
                           aws_code=code) from None
        except (botocore.exceptions.BotoCoreError, asyncio.TimeoutError) as exc:
            raise IamError(f"IAM {operation}: {type(exc).__name__}: {str(exc)[:300]}", operation=operation,
                           aws_code="") from None

    async def powers(self, user: str) -> list[str]:
        """What ``user`` could do: attached and inline policies and groups (empty for a canary)."""
        out = [f"attached policy {p['PolicyName']}" for p in
               (await self.call("list_attached_user_policies", UserName=user)).get("AttachedPolicies", [])]
        out += [f"inline policy {n}" for n in (await self.call("list_user_policies", UserName=user)).get("PolicyNames", [])]
        out += [f"group {g['GroupName']}" for g in (await self.call("list_groups_for_user", UserName=user)).get("Groups", [])]
        return out

    async def delete_user(self, user: str) -> bool:
        """Delete the user's access keys, then the user; False when it no longer exists."""
        try:
            keys = (await self.call("list_access_keys", UserName=user)).get("AccessKeyMetadata", [])
            for key in keys:
                await self.call("delete_access_key", UserName=user, AccessKeyId=key["AccessKeyId"])
            await self.call("delete_user", UserName=user)
        except IamError as exc:
            if exc.fields.get("aws_code") == "NoSuchEntity":
                return False
            raise
        return True


def draw_name(pattern: str, rng: secrets.SystemRandom | Any, taken: set[str]) -> str:
    """A user name from ``pattern`` (``{word}``, ``{n}``) not in ``taken``."""
    for _ in range(1000):
        name = re.sub(r"\{word\}", lambda _: str(rng.choice(WORDS)), pattern)
        name = re.sub(r"\{n\}", lambda _: str(rng.randrange(10)), name)
        words = re.findall(r"[a-z0-9]+", name)
        if name not in taken and len(set(words)) == len(words) and USER_NAME.match(name):
            return name
    raise IamError(f"name pattern {pattern!r} has no unused names left", operation="draw_name")


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def pool_canary(key: KeyPair, *, origin: str, path: str | None = None) -> NewCanary:
    """The registry entry of an unplaced pool key."""
    cred_id = new_cred_id()
    location = {"target": POOL_TARGET, "pk": cred_id, "cred_id": cred_id, "credential": str(CredentialType.AWS_KEY),
                "pool": "aws", "origin": origin, "iam_user": key.user_name, "iam_path": path, "iam_arn": key.arn,
                "key_hint": f"{key.access_key_id[:4]}…{key.access_key_id[-4:]}", "added_at": _now()}
    return NewCanary(kind=CREDENTIAL_KIND, datastore=POOL_DATASTORE, label=POOL_LABEL, location=location,
                     lookup=location_key(POOL_DATASTORE, POOL_TARGET, cred_id),
                     values=((ValueKind.AWS_KEY_ID.value, key.access_key_id), (ValueKind.AWS_SECRET.value, key.secret_access_key)))


async def provision(iam: Iam, registry: Registry, count: int, *, path: str | None = None, pattern: str | None = None,
                    tag: str | None = None, rng: Any = None,
                    on_user: Callable[[PoolEntry], None] | None = None) -> list[PoolEntry]:
    """Create ``count`` powerless IAM users with one access key each and add them to the pool, one
    commit per user (an interruption leaves every finished user registered and no unregistered one)."""
    cfg = iam.config
    path = path or cfg.path
    pattern = pattern or cfg.name_pattern
    tag = tag if tag is not None else cfg.tag
    rng = rng or secrets.SystemRandom()
    taken = {e.iam_user for e in await pool_entries(registry) if e.iam_user}
    out: list[PoolEntry] = []
    for _ in range(count):
        for attempt in range(5):
            name = draw_name(pattern, rng, taken)
            taken.add(name)
            params: dict[str, Any] = {"Path": path, "UserName": name}
            if tag:
                k, _, v = tag.partition("=")
                params["Tags"] = [{"Key": k, "Value": v}]
            try:
                user = (await iam.call("create_user", **params))["User"]
                break
            except IamError as exc:
                if exc.fields.get("aws_code") != "EntityAlreadyExists" or attempt == 4:
                    raise
        try:
            key = (await iam.call("create_access_key", UserName=name))["AccessKey"]
            powers = await iam.powers(name)
            if powers:
                raise IamError(f"IAM user {name} is not powerless ({', '.join(powers)}): an account policy attaches "
                               "permissions to new users; fix that before provisioning canaries", operation="verify")
            entry = pool_canary(KeyPair(key["AccessKeyId"], key["SecretAccessKey"], name, user.get("Arn")),
                                origin="provisioned", path=path)
            async with registry.pool.acquire() as conn, conn.transaction():
                [(cid, uid)] = await registry.add(conn, [entry], None)
        except BaseException:
            await _undo_user(iam, name)
            raise
        log.info("aws_pool.provisioned", uid=uid, iam_user=name)
        done = _entry(cid, uid, "active", POOL_LABEL, entry.location)
        out.append(done)
        if on_user is not None:
            on_user(done)
    return out


async def _undo_user(iam: Iam, name: str) -> None:
    try:
        await asyncio.shield(iam.delete_user(name))
    except IamError as exc:
        log.error("aws_pool.undo_failed", iam_user=name, error=str(exc)[:300])


# -- registering keys made by hand ----------------------------------------------------------------
def _norm(header: str) -> str:
    return re.sub(r"[^a-z]", "", header.lower())


def parse_key_file(path: Path) -> list[KeyPair]:
    """Access keys from a CSV (headers as the IAM console writes them: ``User name``, ``Access key ID``,
    ``Secret access key``; user name optional) or JSON (a list of ``{"UserName", "AccessKeyId",
    "SecretAccessKey"}`` or of ``CreateAccessKey`` answers ``{"AccessKey": {...}}``). Errors name the
    entry, never its values."""
    text = path.read_text(encoding="utf-8-sig")
    rows: list[Mapping[str, Any]]
    if text.lstrip().startswith(("[", "{")):
        try:
            doc = json.loads(text)
        except ValueError as exc:
            raise CanaryError(f"{path}: not JSON ({exc.__class__.__name__} at line {getattr(exc, 'lineno', '?')})") from None
        items = doc if isinstance(doc, list) else [doc]
        rows = [i.get("AccessKey", i) if isinstance(i, Mapping) else {} for i in items]
        rows = [{_norm(k): v for k, v in r.items()} if isinstance(r, Mapping) else {} for r in rows]
    else:
        rows = [{_norm(k or ""): v for k, v in r.items()} for r in csv.DictReader(io.StringIO(text))]
    out: list[KeyPair] = []
    for n, r in enumerate(rows, 1):
        key_id, secret, user = r.get("accesskeyid"), r.get("secretaccesskey"), r.get("username") or None
        if not isinstance(key_id, str) or not KEY_ID.match(key_id.strip()):
            raise CanaryError(f"{path}: entry {n}: no access key id of the form AKIA + 16 characters")
        if not isinstance(secret, str) or not SECRET.match(secret.strip()):
            raise CanaryError(f"{path}: entry {n}: no 40-character secret access key")
        if user is not None and (not isinstance(user, str) or not USER_NAME.match(user.strip())):
            raise CanaryError(f"{path}: entry {n}: the user name is not an IAM user name")
        out.append(KeyPair(key_id.strip(), secret.strip(), user.strip() if isinstance(user, str) else None))
    return out


async def register_keys(registry: Registry, keys: Sequence[KeyPair], *, iam: Iam | None = None) -> tuple[list[PoolEntry], int]:
    """Add hand-made keys to the pool (those already registered are skipped; returns the new entries
    and how many were skipped). With ``iam``, a key whose user has any policy or group is refused."""
    known = await recognise(registry, [(ValueKind.AWS_KEY_ID, k.access_key_id) for k in keys])
    fresh = [k for k in keys if (ValueKind.AWS_KEY_ID, k.access_key_id) not in known]
    if iam is not None:
        for k in fresh:
            if k.user_name is None:
                raise CanaryError("checking permissions needs each key's user name (a `User name` column)")
            powers = await iam.powers(k.user_name)
            if powers:
                raise CanaryError(f"IAM user {k.user_name} is not powerless ({', '.join(powers)}): not a canary key")
    entries = [pool_canary(k, origin="registered") for k in fresh]
    async with registry.pool.acquire() as conn, conn.transaction():
        ids = await registry.add(conn, entries, None)
    return [_entry(cid, uid, "active", POOL_LABEL, e.location) for (cid, uid), e in zip(ids, entries)], len(keys) - len(fresh)


# -- the pool -------------------------------------------------------------------------------------
def _entry(canary_id: int, uid: str, status: str, label: str, location: Mapping[str, Any]) -> PoolEntry:
    if status != "active":
        state = "deleted" if location.get("iam_deleted") else "retired"
    else:
        state = "unplaced" if label == POOL_LABEL else "placed"
    return PoolEntry(canary_id, uid, state, label, location.get("iam_user"), str(location.get("key_hint", "")),
                     str(location.get("origin", "")), location)


def _is_pooled(rec: CanaryRecord) -> bool:
    return rec.location.get("pool") == "aws"


async def pool_entries(registry: Registry) -> list[PoolEntry]:
    """Every AWS canary key ever pooled, oldest first, with its state."""
    return [_entry(r.id, r.uid, r.status, r.label, r.location) for r in await registry.of_kind(CREDENTIAL_KIND) if _is_pooled(r)]


async def take_unplaced(registry: Registry, n: int) -> list[PooledKey]:
    """The ``n`` oldest unplaced pool keys with their credentials (fewer when the pool is short).
    Nothing is claimed: :func:`place` does that in the seeder's control transaction."""
    records = [r for r in await registry.active(POOL_DATASTORE, POOL_LABEL) if _is_pooled(r)][:n]
    out = []
    for rec in records:
        values = dict(await registry.values_of(rec.id))
        key_id, secret = values.get(ValueKind.AWS_KEY_ID), values.get(ValueKind.AWS_SECRET)
        if key_id is None or secret is None:
            continue
        cid = str(rec.location.get("cred_id") or rec.location.get("pk"))
        cred = Credential(CredentialType.AWS_KEY, cid, key_id, {"access_key_id": key_id, "secret_access_key": secret},
                          ((ValueKind.AWS_KEY_ID, key_id), (ValueKind.AWS_SECRET, secret)))
        out.append(PooledKey(rec.id, cred, rec.location))
    return out


async def place(registry: Registry, conn: asyncpg.Connection, placements: Sequence[tuple[PooledKey, NewCanary]],
                deployment_id: int | None) -> None:
    """Move each pooled key's canary to the row it was written to (inside the seeder's control
    transaction); the row's values beyond the key pair (child rows) are added. Raises CanaryError when
    a key was placed or retired by someone else since :func:`take_unplaced`."""
    for pooled, row in placements:
        keep = {k: v for k, v in pooled.location.items() if k not in ("target", "pk", "deployment")}
        moved = dataclasses.replace(row, location={**keep, **row.location, "placed_at": _now()})
        if not await registry.relocate(conn, pooled.canary_id, moved, deployment_id, from_label=POOL_LABEL):
            raise SeedError("an AWS pool key was placed or retired by another run meanwhile; run the seed again")
        pair = {(k, v) for k, v in pooled.credential.values}
        extra = [(pooled.canary_id, str(k), v) for k, v in row.values if (k, v) not in pair]
        if extra:
            await registry.add_values(conn, extra)


def select(entries: Sequence[PoolEntry], names: Sequence[str], *, unplaced: bool = False, retired: bool = False) -> list[PoolEntry]:
    """Entries named by IAM user or uid, plus every unplaced one and every retired one whose IAM user
    remains, as asked. Unknown names raise CanaryError."""
    by = {e.uid: e for e in entries} | {e.iam_user: e for e in entries if e.iam_user}
    missing = [n for n in names if n not in by]
    if missing:
        raise CanaryError(f"not AWS pool keys: {', '.join(missing)} (see `canary credential list aws`)")
    chosen = {by[n].canary_id: by[n] for n in names}
    for e in entries:
        if (unplaced and e.state == "unplaced") or (retired and e.state == "retired" and e.iam_user):
            chosen[e.canary_id] = e
    return sorted(chosen.values(), key=lambda e: e.canary_id)


async def retire(iam: Iam | None, registry: Registry, entries: Sequence[PoolEntry]) -> list[tuple[PoolEntry, str]]:
    """Delete each entry's IAM user (keys first) and retire its canary; returns (entry, what happened).
    An entry without a known user name is only retired here (its key must be deleted in IAM by hand)."""
    out = []
    for e in entries:
        if e.state == "deleted":
            out.append((e, "already deleted"))
            continue
        if e.iam_user and iam is not None:
            existed = await iam.delete_user(e.iam_user)
            note = "IAM user and keys deleted" if existed else "IAM user was already gone"
            loc = {**e.location, "iam_deleted": _now()}
        else:
            note = "retired here only: delete its access key in IAM yourself (user name unknown)"
            loc = dict(e.location)
        async with registry.pool.acquire() as conn, conn.transaction():
            if e.state in ("unplaced", "placed"):
                await registry.retire(conn, [e.canary_id])
            await registry.set_location(conn, e.canary_id, loc)
        log.info("aws_pool.retired", uid=e.uid, iam_user=e.iam_user, note=note)
        out.append((e, note))
    return out
