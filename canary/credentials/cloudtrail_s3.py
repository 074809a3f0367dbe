"""AWS access-key canaries: CloudTrail log files read straight from the trail's S3 bucket.

Where CloudTrail puts them ("Finding your CloudTrail log files",
https://docs.aws.amazon.com/awscloudtrail/latest/userguide/get-and-view-cloudtrail-log-files.html):
``<bucket>/<prefix>/AWSLogs/<account id>/CloudTrail/<region>/YYYY/MM/DD/<file>.json.gz`` and, for an
organization trail, ``<bucket>/<prefix>/AWSLogs/<O-ID>/<account id>/CloudTrail/<region>/YYYY/MM/DD/...``.
The file is named ``<account id>_CloudTrail_<region>_<YYYYMMDDTHHmmZ>_<16 characters>.json.gz``, the time
being when the file was *delivered* (UTC); "a log file delivered at a specific time can contain records
written at any point before that time" ("CloudTrail log file examples",
https://docs.aws.amazon.com/awscloudtrail/latest/userguide/cloudtrail-log-file-examples.html). Each file
is gzip'd ``{"Records": [...]}`` JSON, turned into events exactly as the directory source does
(:func:`canary.credentials.cloudtrail.records_from_document`, :class:`~canary.credentials.cloudtrail.CloudTrailProcessor`).

How :class:`CloudTrailS3Source` reads the bucket:

* **Prefixes.** One per (account, Region): from ``s3_accounts`` / ``s3_regions`` or, when empty, listed
  with ``Delimiter="/"``: 12-digit account ids under ``AWSLogs/`` (and ``o-...`` organization ids, whose
  accounts are one level deeper), Regions under ``<account>/CloudTrail/``; listed again every
  :data:`DISCOVER_EVERY` seconds for new Regions and member accounts. Listed names that are no account,
  organization or Region id are ignored (junk from whoever else may write the bucket).
* **Listing from a checkpoint.** Keys sort by delivery time within a day's folder, so each Region prefix
  keeps a checkpoint (:mod:`canary.store.checkpoints`): the delivery time of the newest file read (or, when
  a listing found nothing newer, ``s3_lookback`` before the clock). A poll walks the day folders from the
  checkpoint's day to today, listing only names that begin as CloudTrail's do
  (``<account>_CloudTrail_<region>_``), in the first folder with ``StartAfter`` set to the name of a file
  delivered ``s3_lookback`` before the checkpoint (a file may land a few minutes after a later one), and
  skips the files ``cloudtrail_files`` already holds: years of older logs are never listed again, and
  whatever else someone who may write the bucket puts in a folder is never listed at all. A first poll
  starts :data:`FIRST_READ_BACK` ago. The checkpoint never passes the present: a file named in the future
  is read, but cannot make later polls start past the real files.
* **Bounded.** At most ``s3_max_objects`` files and ``s3_max_bytes`` (compressed; a larger file is read
  alone) per poll, the prefixes taking turns at going first; a poll that stopped at a bound is followed by
  another at once. Up to :data:`FETCH_TOGETHER` files are fetched at once and committed in key order. A
  file over :data:`canary.credentials.cloudtrail.MAX_FILE_BYTES` (compressed or decompressed) is rejected
  (``cloudtrail_file_too_large``), one that is not gzip'd CloudTrail JSON too
  (``malformed_cloudtrail_file``): counted, marked, never read again.
* **Done after commit.** A file is marked ``done`` in ``cloudtrail_files`` (path ``s3://bucket/key``) only
  after its events are committed. Events are keyed by CloudTrail's ``eventID``, so a crash between the
  commit and the mark reads the file again without a second event.
* **Failures.** AccessDenied, NoSuchBucket, missing credentials and other refusals raise one HEALTH event
  per episode (its start kept as a checkpoint, so a restart inside the episode raises no second one) and
  the source keeps polling, every ``5 x s3_poll`` (at most 15 minutes), until the bucket can be read
  again. A file S3 refuses while the listing works (a KMS key the reader may not use, an object ACL) is an
  episode too, but the other files are still read and that one stays in the listing window, unmarked,
  until it can be read (at most :data:`FIRST_READ_BACK`: a file someone planted unreadable cannot hold a
  prefix back for longer). Throttling, 5xx answers and connection errors are retried at the next poll;
  :data:`TRANSIENT_EPISODE_AFTER` failed polls in a row are an episode too. What is logged is AWS's error
  code and message, never credentials or the external ID.
* **Credentials.** boto3 (in a worker thread: it blocks) with the default chain or ``s3_profile``; with
  ``s3_role_arn`` the role is assumed through STS AssumeRole (with ``s3_external_id``), again before its
  credentials expire.
* **Once per cluster.** ``cluster_singleton``: only the listener holding the leader lease polls the bucket;
  another that takes the lease over resumes from the same checkpoints and ``cloudtrail_files`` rows.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import gzip
import io
import json
import re
import threading
import time
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import boto3
import botocore.config
import botocore.exceptions
import structlog
import urllib3.exceptions
from aiohttp import web

from canary import aws
from canary.config import Config
from canary.credentials import cloudtrail
from canary.events import DetectionEvent, EventKind, Severity, event_key
from canary.plugins import SourceType
from canary.secret import Secret
from canary.store import checkpoints
from canary.tasks import stop_task, wait_or_stop
from canary.typing import Component, SourceContext

log = structlog.get_logger("canary.sources.cloudtrail_s3")

#: how far back the first poll of a Region prefix (no checkpoint yet) starts
FIRST_READ_BACK = dt.timedelta(days=1)
#: seconds between listings of the bucket's accounts and Regions (when not configured)
DISCOVER_EVERY = 600.0
#: retryable failures (throttling, 5xx, connection) in as many polls in a row are an episode (HEALTH)
TRANSIENT_EPISODE_AFTER = 5
#: at most this many (account, Region) prefixes, and keys listed per prefix and poll
MAX_PREFIXES = 5000
MAX_LISTED = 10_000
#: files fetched at once (worker threads), and their compressed bytes (a larger file is fetched alone)
FETCH_TOGETHER = 4
FETCH_TOGETHER_BYTES = 16 * 1024 * 1024
_PAGE = 1000
_SLOW_POLL_MAX = 900.0
_CLOCK_SKEW = dt.timedelta(minutes=10)  # a day's folder is listed from this long before our clock reaches it

_ACCOUNT = re.compile(r"^[0-9]{12}$")
_ORG = re.compile(r"^o-[a-z0-9]{10,32}$")
_REGION = re.compile(r"^[a-z]{2,4}(-[a-z]+)+-[0-9]{1,2}$")
_DELIVERED = re.compile(r"_CloudTrail_[a-z0-9-]+_([0-9]{8}T[0-9]{4})Z_[^/]*$")



class S3ReadError(Exception):
    """S3 or STS failed: AWS's ``code`` and a short ``detail`` (no credentials); ``refused`` when retrying
    the same call cannot help (access, a missing bucket, no credentials)."""

    def __init__(self, code: str, detail: str, *, refused: bool) -> None:
        super().__init__(f"{code}: {detail}" if detail else code)
        self.code = code
        self.detail = detail
        self.refused = refused


class FileTooLarge(cloudtrail.CloudTrailFormatError):
    """A log file over :data:`canary.credentials.cloudtrail.MAX_FILE_BYTES`."""


def translate(exc: Exception) -> S3ReadError:
    """A boto3 / botocore / urllib3 failure as an :class:`S3ReadError`."""
    if isinstance(exc, botocore.exceptions.ClientError):
        error = exc.response.get("Error", {})
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0) or None
        code = str(error.get("Code") or status or "Unknown")[:64]
        message = re.sub(r"\s+", " ", str(error.get("Message") or ""))[:200]
        retryable = code in aws.RETRYABLE_CODES or status is None or status in (408, 429) or status >= 500
        return S3ReadError(code, f"HTTP {status}{': ' + message if message else ''}", refused=not retryable)
    refused = isinstance(exc, botocore.exceptions.NoCredentialsError | botocore.exceptions.PartialCredentialsError
                         | botocore.exceptions.ProfileNotFound | botocore.exceptions.ParamValidationError
                         | botocore.exceptions.NoRegionError)
    return S3ReadError(type(exc).__name__, re.sub(r"\s+", " ", str(exc))[:200], refused=refused)


def delivered_at(key: str) -> dt.datetime | None:
    """The delivery time in a CloudTrail log file's name, or None for another name."""
    m = _DELIVERED.search(key)
    if m is None:
        return None
    try:
        return dt.datetime.strptime(m.group(1), "%Y%m%dT%H%M").replace(tzinfo=dt.UTC)
    except ValueError:
        return None


def decode_log_file(raw: bytes) -> list[Mapping[str, Any]]:
    """The records of one log file's bytes (gzip by magic number, as the directory source reads files)."""
    limit = cloudtrail.MAX_FILE_BYTES
    if len(raw) > limit:
        raise FileTooLarge(f"larger than {limit} bytes")
    if raw[:2] == b"\x1f\x8b":
        with gzip.GzipFile(fileobj=io.BytesIO(raw)) as gz:
            data = gz.read(limit + 1)
    else:
        data = raw
    if len(data) > limit:
        raise FileTooLarge(f"larger than {limit} bytes decompressed")
    return cloudtrail.records_from_document(json.loads(data))


@dataclass(frozen=True, order=True)
class TrailPrefix:
    """One Region's log files of one account: ``.../AWSLogs/[<O-ID>/]<account>/CloudTrail/<region>/``."""

    prefix: str
    account: str
    region: str

    def names(self, day: dt.date) -> str:
        """The common beginning of the names of the files CloudTrail delivers on ``day``."""
        return f"{self.prefix}{day:%Y/%m/%d}/{self.account}_CloudTrail_{self.region}_"

    def start_after(self, at: dt.datetime) -> str:
        """The key name of a file delivered at ``at``, cut before its unique part: every file delivered in
        that minute or later sorts after it."""
        return f"{self.prefix}{at:%Y/%m/%d}/{self.account}_CloudTrail_{self.region}_{at:%Y%m%dT%H%M}Z"


class _S3:
    """One S3 client (the default chain, a profile, or an assumed role), made and remade on worker threads
    under a lock; every call translated to :class:`S3ReadError`."""

    def __init__(self, bucket: str, *, endpoint_url: str | None, profile: str | None, role_arn: str | None,
                 external_id: Secret | None, session_name: str) -> None:
        self.bucket = bucket
        self.endpoint_url = endpoint_url or None
        self.profile = profile or None
        self.role_arn = role_arn or None
        self._external_id = external_id
        self._session_name = re.sub(r"[^\w+=,.@-]", "-", session_name)[:64]
        self._lock = threading.Lock()
        self._client: Any = None
        self._expires: dt.datetime | None = None

    def __repr__(self) -> str:
        return f"_S3(bucket={self.bucket!r}, profile={self.profile!r}, role_arn={self.role_arn!r})"

    def _make(self) -> tuple[Any, dt.datetime | None]:
        aws.quiet_botocore()
        session = boto3.session.Session(profile_name=self.profile)
        region = session.region_name or "us-east-1"  # S3 answers a bucket in another Region with a redirect botocore follows
        config = botocore.config.Config(connect_timeout=10, read_timeout=60, user_agent_extra="canary-cloudtrail-s3",
                                        retries={"total_max_attempts": 2, "mode": "standard"})
        if self.role_arn is None:
            return session.client("s3", region_name=region, endpoint_url=self.endpoint_url, config=config), None
        return aws.assumed_client(session, "s3", role_arn=self.role_arn, session_name=self._session_name,
                                  external_id=self._external_id.reveal() if self._external_id is not None else None,
                                  region_name=region, endpoint_url=self.endpoint_url, config=config)

    def _current(self) -> Any:
        with self._lock:
            if self._client is None or aws.stale(self._expires):
                self._client, self._expires = self._make()
            return self._client

    def _forget(self) -> None:
        with self._lock:
            self._client, self._expires = None, None

    def call(self, operation: str, **params: Any) -> dict[str, Any]:
        """``operation`` (boto3's name) on the bucket; blocks (run it in a worker thread)."""
        try:
            result: dict[str, Any] = getattr(self._current(), operation)(Bucket=self.bucket, **params)
            return result
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
            if aws.expired(exc):
                self._forget()
            raise translate(exc) from None

    def get(self, key: str) -> bytes:
        """The object's bytes, at most one more than MAX_FILE_BYTES; blocks."""
        body = self.call("get_object", Key=key)["Body"]
        try:
            data: bytes = body.read(cloudtrail.MAX_FILE_BYTES + 1)
            return data
        except (botocore.exceptions.BotoCoreError, urllib3.exceptions.HTTPError, OSError) as exc:
            raise translate(exc) from None
        finally:
            body.close()


@dataclass
class PollResult:
    """What one poll did."""

    files: int = 0  # read and committed
    rejected: int = 0
    unreadable: int = 0  # refused by S3 (left unmarked, read once they can be)
    events: int = 0
    more: bool = False  # stopped at s3_max_objects / s3_max_bytes: poll again at once
    error: S3ReadError | None = None  # what ended it early, or the last refusal of a file


@dataclass
class _Budget:
    objects: int
    bytes: int
    used_objects: int = 0
    used_bytes: int = 0
    spent: bool = False

    def admit(self, size: int) -> bool:
        """Whether a file of ``size`` bytes fits; the first file of a poll always does."""
        if self.used_objects and (self.used_objects >= self.objects or self.used_bytes + size > self.bytes):
            self.spent = True
            return False
        self.used_objects += 1
        self.used_bytes += size
        return True


class CloudTrailS3Source:
    """Polls a CloudTrail bucket (see the module docstring)."""

    cluster_singleton = True  # one reader per cluster: the holder of the leader lease

    def __init__(self, bucket: str, *, prefix: str = "", accounts: Sequence[str] = (), regions: Sequence[str] = (),
                 poll: float = 60.0, lookback: float = 900.0, endpoint_url: str | None = None,
                 profile: str | None = None, role_arn: str | None = None, external_id: Secret | None = None,
                 max_objects: int = 500, max_bytes: int = 512 * 1024 * 1024) -> None:
        prefix = prefix.strip("/")
        self.bucket = bucket
        self.base = f"{prefix}/AWSLogs/" if prefix else "AWSLogs/"
        self.name = f"cloudtrail-s3:{bucket}" + (f"/{prefix}" if prefix else "")
        self.accounts = tuple(accounts)
        self.regions = tuple(regions)
        self.poll_interval = poll
        self.lookback = dt.timedelta(seconds=lookback)
        self.max_objects = max_objects
        self.max_bytes = max_bytes
        self.s3 = _S3(bucket, endpoint_url=endpoint_url, profile=profile, role_arn=role_arn, external_id=external_id,
                      session_name=f"canary-cloudtrail-{bucket}")
        self.runtime: SourceContext  # set by attach()
        self.processor: cloudtrail.CloudTrailProcessor | None = None
        self._prefixes: list[TrailPrefix] = []
        self._positions: dict[str, dt.datetime | None] = {}  # checkpoints read or written (one reader per cluster)
        self._listed_at = float("-inf")
        self._turn = 0
        self._failures = 0  # retryable failures in a row
        self._trouble: dict[str, Any] | None = None  # the open episode: since, code, reported
        self._trouble_loaded = False
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()

    def __repr__(self) -> str:
        return f"CloudTrailS3Source(name={self.name!r}, s3={self.s3!r})"

    def routes(self) -> list[web.RouteDef]:
        return []

    def attach(self, runtime: SourceContext) -> None:
        """Bind to a runtime without starting the poll loop (``poll`` can then be called directly)."""
        self.runtime = runtime
        self.processor = cloudtrail.CloudTrailProcessor(runtime)

    async def start(self, runtime: SourceContext) -> None:
        self.attach(runtime)
        self._positions.clear()  # another listener may have moved them while this one was not the leader
        self._stopping.clear()
        self._task = asyncio.create_task(self._run(), name=self.name)

    async def stop(self) -> None:
        await stop_task(self._task, self._stopping)
        self._task = None

    async def _run(self) -> None:
        failures = 0
        while not self._stopping.is_set():
            try:
                result = await self.poll()
                failures = 0
            except Exception as exc:  # noqa: BLE001 - the control store is down: files stay unread, retried
                failures += 1
                log.error("cloudtrail_s3.poll_failed", source=self.name, error=f"{type(exc).__name__}: {exc}"[:300])
                delay = min(60.0, self.poll_interval * 2 ** min(failures, 5))
            else:
                aborted = result.error is not None and not result.unreadable  # not a single refused file
                if aborted and self._trouble is not None:
                    delay = min(_SLOW_POLL_MAX, self.poll_interval * 5)
                elif result.more and not aborted:
                    delay = 0.1
                else:
                    delay = self.poll_interval
            await wait_or_stop(self._stopping, delay)

    # -- one poll -------------------------------------------------------------------------------------
    async def poll(self) -> PollResult:
        """Read what is new in every Region prefix, within the per-poll bounds; S3 failures end the poll
        (reported, never raised); a control-store failure raises (nothing unread is marked)."""
        assert self.processor is not None
        result = PollResult()
        if not self._trouble_loaded:
            saved = await checkpoints.load(self.runtime.pool, self._trouble_source)
            self._trouble = {**saved, "reported": False} if saved and saved.get("since") else None
            self._trouble_loaded = True
        budget = _Budget(self.max_objects, self.max_bytes)
        try:
            prefixes = await self._trail_prefixes()
            if prefixes:
                first = self._turn % len(prefixes)
                self._turn += 1
                for p in prefixes[first:] + prefixes[:first]:
                    if budget.spent or self._stopping.is_set():
                        break
                    await self._poll_prefix(p, budget, result)
        except S3ReadError as err:
            result.error = err
            await self._failed(err)
            return result
        result.more = budget.spent
        self._failures = 0
        if result.error is not None:  # files S3 refused to give: the episode goes on
            await self._failed(result.error)
        elif self._trouble is not None:
            await checkpoints.save(self.runtime.pool, self._trouble_source, {})
            log.info("cloudtrail_s3.readable_again", source=self.name, since=self._trouble.get("since"))
            self._trouble = None
        return result

    async def _poll_prefix(self, p: TrailPrefix, budget: _Budget, result: PollResult) -> None:
        now = dt.datetime.now(dt.UTC)
        ckpt_source = f"{self.name}:{p.prefix}"
        if ckpt_source not in self._positions:
            saved = await checkpoints.load(self.runtime.pool, ckpt_source)
            self._positions[ckpt_source] = _parse_time(saved.get("delivered")) if saved else None
        newest = self._positions[ckpt_source]
        start = min(newest, now) - self.lookback if newest is not None else now - FIRST_READ_BACK
        advanced = newest
        held: dt.datetime | None = None  # the first file S3 refused to give: later polls list from it again
        complete = False  # every file named up to now was listed
        try:
            for day in _days(start, now + _CLOCK_SKEW):
                # only CloudTrail's own file names: whatever else someone put in the folder is never listed
                params: dict[str, Any] = {"Prefix": p.names(day), "MaxKeys": _PAGE}
                if day == start.date():
                    params["StartAfter"] = p.start_after(start)
                listed = 0
                while True:
                    if self._stopping.is_set() or listed >= MAX_LISTED:
                        return
                    page = await asyncio.to_thread(self.s3.call, "list_objects_v2", **params)
                    contents = page.get("Contents") or []
                    listed += len(contents)
                    objects = [(o["Key"], _size(o.get("Size"))) for o in contents
                               if isinstance(o, Mapping) and isinstance(o.get("Key"), str) and o["Key"].endswith(".json.gz")]
                    done = await self._done([self._uri(k) for k, _ in objects])
                    admitted: list[tuple[str, int]] = []
                    for key, size in objects:
                        if self._uri(key) in done:
                            at = delivered_at(key)
                            if at is not None and at <= now and (advanced is None or at > advanced):
                                advanced = at
                            continue
                        if not budget.admit(size):
                            break
                        admitted.append((key, size))
                    for chunk in _chunks(admitted):
                        # fetched together (S3's latency dominates), committed one by one in key order
                        outcomes = await asyncio.gather(*(self._fetch(k, n) for k, n in chunk), return_exceptions=True)
                        for (key, size), outcome in zip(chunk, outcomes, strict=True):
                            at = delivered_at(key)
                            if isinstance(outcome, S3ReadError) and outcome.refused:
                                # this object only (a KMS key we may not use, an object ACL): the others are still
                                # read, this one stays in the listing window (at most FIRST_READ_BACK) until it can be
                                log.warning("cloudtrail_s3.file_refused", source=self.name, file=self._uri(key),
                                            code=outcome.code)
                                result.unreadable += 1
                                result.error = outcome
                                if at is not None and at <= now and (held is None or at < held):
                                    held = at
                                continue
                            if isinstance(outcome, BaseException):
                                raise outcome  # throttled, unreachable: the next poll tries again from here
                            await self._commit(key, size, outcome, result)
                            if at is not None and at <= now and (advanced is None or at > advanced):
                                advanced = at
                    if budget.spent:
                        return
                    token = page.get("NextContinuationToken")
                    if not page.get("IsTruncated") or not isinstance(token, str):
                        break
                    params["ContinuationToken"] = token
            complete = True
        finally:
            position = advanced
            if complete:  # nothing else was delivered: an idle Region's window moves on with the clock
                position = now - self.lookback if position is None else max(position, now - self.lookback)
            if held is not None:
                position = max(min(held, position or held), now - FIRST_READ_BACK)
            if position is not None and position != newest:
                await checkpoints.save(self.runtime.pool, ckpt_source, {"delivered": position.isoformat()})
                self._positions[ckpt_source] = position

    async def _fetch(self, key: str, size: int) -> list[Mapping[str, Any]] | tuple[str, str]:
        """One file's records, or (reason, detail) when it is no CloudTrail file or vanished; S3's refusal or
        failure raises :class:`S3ReadError`."""
        try:
            if size > cloudtrail.MAX_FILE_BYTES:
                raise FileTooLarge(f"{size} bytes compressed")
            raw = await asyncio.to_thread(self.s3.get, key)
            return await asyncio.to_thread(decode_log_file, raw)
        except S3ReadError as err:
            if err.code != "NoSuchKey":
                raise
            # deleted between the listing and the read: whoever did may have wanted it unread
            return "cloudtrail_file_vanished", err.code
        except FileTooLarge as exc:
            return "cloudtrail_file_too_large", str(exc)
        except (OSError, EOFError, zlib.error, ValueError, RecursionError) as exc:  # gzip, JSON (deep nesting too), format
            return "malformed_cloudtrail_file", f"{type(exc).__name__}: {exc}"

    async def _commit(self, key: str, size: int, fetched: list[Mapping[str, Any]] | tuple[str, str],
                      result: PollResult) -> None:
        """Commit a file's events, then mark it done; or reject and mark it."""
        assert self.processor is not None
        uri = self._uri(key)
        if isinstance(fetched, tuple):
            await self._rejected(uri, size, *fetched, result)
            return
        result.events += await self.processor.process(fetched, uri)
        await self._mark(uri, size, "done", len(fetched))
        result.files += 1

    async def _rejected(self, uri: str, size: int, reason: str, detail: str, result: PollResult) -> None:
        await self.runtime.reject(self.name, reason, f"{uri}: {detail}"[:400])
        await self._mark(uri, size, "rejected", 0)
        result.rejected += 1

    async def _done(self, uris: list[str]) -> set[str]:
        return await cloudtrail.files_done(self.runtime.pool, self.name, uris)

    async def _mark(self, uri: str, size: int, status: str, records: int) -> None:
        await cloudtrail.mark_file(self.runtime.pool, self.name, uri, size, status, records)

    def _uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    # -- accounts and Regions -------------------------------------------------------------------------
    async def _trail_prefixes(self) -> list[TrailPrefix]:
        if self._prefixes and (time.monotonic() - self._listed_at < DISCOVER_EVERY or (self.accounts and self.regions)):
            return self._prefixes
        accounts = list(self.accounts) or await self._list_accounts()
        found: list[TrailPrefix] = []
        for account in accounts:
            root = f"{self.base}{account}/CloudTrail/"
            regions = list(self.regions) or [r for r in await self._children(root) if _REGION.match(r)]
            found += [TrailPrefix(f"{root}{r}/", account.rsplit("/", 1)[-1], r) for r in regions]
            if len(found) >= MAX_PREFIXES:
                break
        self._prefixes = sorted(found)[:MAX_PREFIXES]
        self._listed_at = time.monotonic()
        if not self._prefixes:
            log.info("cloudtrail_s3.no_log_files_yet", source=self.name, under=self.base)
        return self._prefixes

    async def _list_accounts(self) -> list[str]:
        out: list[str] = []
        for child in await self._children(self.base):
            if _ACCOUNT.match(child):
                out.append(child)
            elif _ORG.match(child):  # an organization trail: its members' accounts one level deeper
                out += [f"{child}/{a}" for a in await self._children(f"{self.base}{child}/") if _ACCOUNT.match(a)]
        return out

    async def _children(self, prefix: str) -> list[str]:
        """The next path segments under ``prefix`` (ListObjectsV2 with a delimiter, bounded)."""
        params: dict[str, Any] = {"Prefix": prefix, "Delimiter": "/", "MaxKeys": _PAGE}
        out: list[str] = []
        while len(out) < MAX_PREFIXES:
            page = await asyncio.to_thread(self.s3.call, "list_objects_v2", **params)
            for cp in page.get("CommonPrefixes") or []:
                value = cp.get("Prefix") if isinstance(cp, Mapping) else None
                if isinstance(value, str) and value.startswith(prefix) and value.endswith("/"):
                    out.append(value[len(prefix):-1])
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated") or not isinstance(token, str):
                break
            params["ContinuationToken"] = token
        return out

    # -- episodes -------------------------------------------------------------------------------------
    @property
    def _trouble_source(self) -> str:
        return f"{self.name}#unreadable"

    async def _failed(self, err: S3ReadError) -> None:
        self._failures = 0 if err.refused else self._failures + 1
        log.warning("cloudtrail_s3.read_failed", source=self.name, code=err.code, error=err.detail,
                    refused=err.refused, failures=self._failures)
        if not err.refused and self._failures < TRANSIENT_EPISODE_AFTER:
            return
        if self._trouble is None:
            self._trouble = {"since": dt.datetime.now(dt.UTC).isoformat(), "code": err.code, "reported": False}
        if self._trouble["reported"]:
            return
        since = str(self._trouble["since"])
        await checkpoints.save(self.runtime.pool, self._trouble_source, {"since": since, "code": str(self._trouble["code"])})
        await self.runtime.submit(self._health(err, since))
        self._trouble["reported"] = True
        log.error("cloudtrail_s3.unreadable", source=self.name, code=err.code, since=since)

    def _health(self, err: S3ReadError, since: str) -> DetectionEvent:
        what = "refused" if err.refused else f"failed {self._failures} polls in a row"
        return DetectionEvent(
            kind=EventKind.HEALTH, source=cloudtrail.EVENT_SOURCE, key=event_key("cloudtrail-s3-unreadable", self.name, since),
            group=self.name, canary_id=None, observed_at=dt.datetime.now(dt.UTC),
            severity=Severity.ERROR, origin={"bucket": self.bucket},
            evidence={"signal": "cloudtrail_s3_unreadable", "code": err.code, "error": err.detail, "since": since,
                      "problem": f"CloudTrail bucket {self.bucket} cannot be read ({err.code}, {what}): use of AWS canary "
                                 "keys logged there is not detected until it can"},
        )


def _parse_time(value: Any) -> dt.datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=dt.UTC)


def _days(start: dt.datetime, end: dt.datetime) -> list[dt.date]:
    """The UTC days from ``start``'s to ``end``'s."""
    first, last = start.date(), end.date()
    return [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]


def _chunks(files: list[tuple[str, int]]) -> list[list[tuple[str, int]]]:
    """Files fetched together: at most FETCH_TOGETHER, and FETCH_TOGETHER_BYTES unless one file is alone."""
    out: list[list[tuple[str, int]]] = []
    for key, size in files:
        last = out[-1] if out else None
        if last is not None and len(last) < FETCH_TOGETHER and sum(n for _, n in last) + size <= FETCH_TOGETHER_BYTES:
            last.append((key, size))
        else:
            out.append([(key, size)])
    return out


def _size(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def _sources(config: Config) -> list[Component]:
    ct = config.credentials.cloudtrail
    if not ct.s3_bucket:
        return []
    return [CloudTrailS3Source(
        ct.s3_bucket, prefix=ct.s3_prefix, accounts=ct.s3_accounts, regions=ct.s3_regions, poll=ct.s3_poll,
        lookback=ct.s3_lookback, endpoint_url=ct.s3_endpoint_url, profile=ct.s3_profile, role_arn=ct.s3_role_arn,
        external_id=ct.s3_external_id, max_objects=ct.s3_max_objects, max_bytes=ct.s3_max_bytes,
    )]


SOURCE = SourceType("cloudtrail-s3", _sources)
