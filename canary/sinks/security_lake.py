"""Amazon Security Lake: OCSF records as Parquet objects under the lake's custom sources (type ``security_lake``).

What a custom source must write, from "Collecting data from custom sources in Security Lake"
(https://docs.aws.amazon.com/security-lake/latest/userguide/custom-sources.html):

* one OCSF event class per custom source (and per Parquet object); OCSF 1.3 and earlier;
* Apache Parquet (versions 1.x and 2.x), data pages at most 1 MB uncompressed, row groups at most 256 MB
  compressed, zstandard preferred;
* objects under ``ext/<custom source name>/region=<region>/accountId=<account id>/eventDay=<YYYYMMDD>/``,
  ``eventDay`` being the record's time in UTC (a source created with a source version has the version as
  one more segment after its name: ``ext/<name>/<version>/region=...``, the location the console shows,
  as in https://github.com/tenzir/tenzir/pull/5369); ``accountId`` is the AWS account the records pertain
  to, or a string such as ``external`` for records about no AWS account;
* records within an object ordered by time;
* objects sent "in increments between 5 minutes and 1 event day", more often only when they are larger
  than 256 MB.

For every custom source Security Lake creates a provider role, ``AmazonSecurityLake-Provider-<source>-<region>``,
which the source assumes with the external ID chosen when the source was added (STS AssumeRole); that role
may write only under its own source's prefix. Hence ``role_arn`` / ``external_id`` per source, with the
sink's as the default, or the default credential chain when no role is given.

How canary maps onto that:

* **Classes -> sources.** ``sources`` maps each OCSF ``class_uid`` (as :mod:`canary.sinks.ocsf` produces
  it) to a custom source. A record of a class with no source is skipped and counted (``skipped``, one
  warning per class), never written elsewhere: the provider roles cannot write other prefixes, so a
  guessed source would only turn the whole batch into a permanent AccessDenied.
* **Idempotent keys.** The event feed resends the same batch until it is delivered, so an object's key is
  derived from the batch: ``canary-<sink>-e<first id>-<last id>-<hash of the ids>.parquet`` for events,
  ``canary-<sink>-i<incident>-n<notification>-<action>.parquet`` for an alert; a resend overwrites the
  object instead of adding a duplicate. Two canary deployments sharing a lake give their sinks different
  names. One exception: an acknowledge / resolve finding's time is when it was mapped, so a retry that
  crosses midnight UTC lands in the next eventDay as a second copy of the same finding (same
  ``finding_info.uid`` and activity), which readers can tell apart.
* **Object size and rate.** ``send_events`` writes one object per (class, eventDay) of the batch; its size
  is tuned with ``event_batch`` (default 5000 here, at most 10000). The feed sends what is committed
  without waiting for a full batch, so a quiet deployment writes small objects more often than every
  5 minutes: holding events back in memory to make them bigger would lose them in a crash, and detection
  must not be delayed. ``send`` writes one small Detection Finding object per alert notification for the
  same reason; alerts are rare (one per incident and escalation), so the query cost is small.
* **Schema.** Each object's schema is derived from its records with fixed rules, so one class keeps one
  schema shape: objects become structs and lists lists (fields sorted by name), Python ``bool`` / ``int`` /
  ``float`` / ``str`` become ``bool`` / ``int64`` / ``double`` / ``string``. Free-form OCSF attributes
  (``unmapped``, ``data``, ``xattributes``, where hostile input lands) are stored as JSON text, as is
  anything nested deeper than :data:`MAX_DEPTH` or wider than :data:`MAX_FIELDS`: hostile keys never become
  columns. A field whose values disagree in type within one object is stored as text (JSON text for
  non-strings); fields that are null, empty objects or empty lists in every record of an object are left
  out (so an always-empty list never becomes a column of a guessed element type).
  :func:`normalise` gives the rows as stored, :func:`restore` turns a row read back into the record.

S3 is reached with boto3 in a worker thread (it blocks); ``endpoint_url`` points it (and STS) at an
S3-compatible store for tests. Errors: throttling and server trouble (SlowDown, 503, RequestTimeout,
429, 5xx), expired tokens and transport failures are retryable; AccessDenied, NoSuchBucket and other
4xx are permanent; missing credentials are permanent. Error text never holds credentials or the
external ID.
"""

from __future__ import annotations

import asyncio
import builtins
import datetime as dt
import hashlib
import io
import json
import re
import threading
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import boto3
import botocore.config
import botocore.exceptions
import pyarrow as pa
import pyarrow.parquet as pq
import structlog
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from canary import aws
from canary.alerts import Alert
from canary.errors import DeliveryError
from canary.events import StoredEvent
from canary.secret import Secret, resolve_secret
from canary.sinks import ocsf
from canary.sinks._http import parse_retry_after, validate_http_url
from canary.sinks._siem import EventFeedOptions

log = structlog.get_logger(__name__)

#: OCSF attributes whose content is free-form (``json_t`` / ``object``): stored as JSON text
FREE_FORM = frozenset({"unmapped", "data", "xattributes"})
#: struct nesting kept as columns; deeper values are JSON text
MAX_DEPTH = 8
#: fields of one struct kept as columns; a wider object is JSON text
MAX_FIELDS = 256
#: Security Lake: data pages at most 1 MB uncompressed; our objects stay far below 256 MB row groups
DATA_PAGE_SIZE = 1 << 20
ROW_GROUP_ROWS = 10_000
#: the newest OCSF version Security Lake accepts from custom sources
SUPPORTED_OCSF = (1, 3)
_INT64 = (-(1 << 63), (1 << 63) - 1)

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}")
_VERSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,31}")
_REGION = re.compile(r"[a-z]{2}(-[a-z]+)+-[0-9]{1,2}")
_ACCOUNT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_ROLE_ARN = re.compile(r"arn:aws[a-z-]*:iam::[0-9]{12}:role/[\w+=,.@/-]{1,512}")
_EXTERNAL_ID = re.compile(r"[\w+=,.@:/-]{2,1224}")



def _external_id(cls: object, value: object) -> Secret | None:
    """Options validator: an STS external ID (2-1224 characters of its alphabet), kept as a Secret."""
    if value is None:
        return None
    secret = resolve_secret(value)
    if not _EXTERNAL_ID.fullmatch(secret.reveal()):
        raise ValueError("external_id must be 2-1224 characters of letters, digits and _+=,.@:/-")
    return secret


def _role_arn(cls: object, value: str) -> str:
    """Options validator: empty, or an IAM role ARN."""
    if value and not _ROLE_ARN.fullmatch(value):
        raise ValueError("must be an IAM role ARN (arn:aws:iam::<account>:role/<name>)")
    return value


class SourceOptions(BaseModel):
    """One custom source: its name (and source version, when it was created with one) and, when it is not
    the sink's, the provider role Security Lake created for it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    version: str = ""
    role_arn: str = ""
    external_id: Secret | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _NAME.fullmatch(v):
            raise ValueError("a custom source name: letters, digits and _.:- (at most 64)")
        return v

    @field_validator("version")
    @classmethod
    def _version(cls, v: str) -> str:
        if v and not _VERSION.fullmatch(v):
            raise ValueError("a source version: letters, digits and _.- (at most 32)")
        return v

    _arn = field_validator("role_arn")(_role_arn)
    _ext = field_validator("external_id", mode="before")(_external_id)

    @property
    def location(self) -> str:
        """The source's prefix in the lake's bucket."""
        return f"ext/{self.name}/{self.version}" if self.version else f"ext/{self.name}"


class SecurityLakeOptions(EventFeedOptions):
    """``sources`` maps OCSF class_uid to a custom source: ``{ 2004 = "canary-findings" }`` or
    ``{ 2004 = { name = "canary-findings", version = "1.0", role_arn = "...", external_id = ... } }``."""

    event_batch: int = Field(default=5000, ge=1, le=10_000)
    bucket: str
    region: str
    account_id: str
    sources: dict[int, SourceOptions]
    role_arn: str = ""
    external_id: Secret | None = None
    endpoint_url: str = ""
    timeout: float = Field(default=30.0, gt=0, le=300)
    compression: Literal["zstd", "snappy", "gzip"] = "zstd"

    _arn = field_validator("role_arn")(_role_arn)
    _ext = field_validator("external_id", mode="before")(_external_id)

    @field_validator("bucket")
    @classmethod
    def _bucket(cls, v: str) -> str:
        if not _BUCKET.fullmatch(v) or ".." in v:
            raise ValueError("must be an S3 bucket name")
        return v

    @field_validator("region")
    @classmethod
    def _region(cls, v: str) -> str:
        if not _REGION.fullmatch(v):
            raise ValueError("must be an AWS Region such as us-east-1")
        return v

    @field_validator("account_id")
    @classmethod
    def _account(cls, v: str) -> str:
        if not _ACCOUNT.fullmatch(v):
            raise ValueError('an AWS account id, or a string such as "external" (letters, digits, _ and -)')
        return v

    @field_validator("endpoint_url")
    @classmethod
    def _endpoint(cls, v: str) -> str:
        return validate_http_url(cls, v) if v else v

    @field_validator("sources", mode="before")
    @classmethod
    def _sources(cls, v: object) -> object:
        if isinstance(v, Mapping):
            return {k: {"name": s} if isinstance(s, str) else s for k, s in v.items()}
        return v

    @model_validator(mode="after")
    def _check(self) -> SecurityLakeOptions:
        if not self.sources:
            raise ValueError("sources: map at least one OCSF class_uid to a custom source")
        seen: dict[str, int] = {}
        for uid, source in self.sources.items():
            if not 0 < uid < 1_000_000:
                raise ValueError(f"sources: {uid} is not an OCSF class_uid")
            if source.location in seen:
                raise ValueError(f"sources: classes {seen[source.location]} and {uid} share custom source "
                                 f"{source.location!r} (one OCSF class per custom source)")
            seen[source.location] = uid
            if (source.external_id or self.external_id) and not (source.role_arn or self.role_arn):
                raise ValueError(f"sources: class {uid} has an external_id but no role_arn")
        if self.external_id and not self.role_arn:
            raise ValueError("external_id needs role_arn")
        return self


# ---- Parquet ----------------------------------------------------------------------------------------


@dataclass
class _Shape:
    """What the values seen at one path were: their kinds, a dict's fields, a list's items."""

    kinds: set[str] = field(default_factory=set)
    fields: dict[str, _Shape] = field(default_factory=dict)
    items: _Shape | None = None


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int" if _INT64[0] <= value <= _INT64[1] else "bigint"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "str"
    if isinstance(value, Mapping):
        return "dict"
    if isinstance(value, list | tuple):
        return "list"
    return "other"


def _observe(shape: _Shape, value: Any, name: str, depth: int) -> None:
    kind = _kind(value)
    if name in FREE_FORM and kind != "null":
        kind = "json"
    shape.kinds.add(kind)
    if kind == "dict" and depth < MAX_DEPTH:
        for key, item in value.items():
            name = _text(str(key))
            _observe(shape.fields.setdefault(name, _Shape()), item, name, depth + 1)
    elif kind == "list" and depth < MAX_DEPTH:
        shape.items = shape.items or _Shape()
        for item in value:
            _observe(shape.items, item, "", depth + 1)


@dataclass(frozen=True)
class _Plan:
    """How one path is stored: its Arrow type and how a value becomes that type's Python value."""

    type: pa.DataType
    how: str  # "value" | "float" | "text" | "json" | "struct" | "list"
    fields: tuple[tuple[str, _Plan], ...] = ()
    items: _Plan | None = None


def _plan(shape: _Shape, depth: int) -> _Plan | None:
    kinds = shape.kinds - {"null"}
    if not kinds:
        return None
    if kinds == {"dict"}:
        if depth >= MAX_DEPTH or len(shape.fields) > MAX_FIELDS:
            return _Plan(pa.string(), "json")
        planned = [(name, _plan(sub, depth + 1)) for name, sub in sorted(shape.fields.items())]
        fields = tuple((name, p) for name, p in planned if p is not None)
        if not fields:
            return None
        return _Plan(pa.struct([pa.field(name, p.type) for name, p in fields]), "struct", fields=fields)
    if kinds == {"list"}:
        if depth >= MAX_DEPTH:
            return _Plan(pa.string(), "json")
        items = _plan(shape.items, depth + 1) if shape.items else None
        if items is None:  # empty (or all-null) lists everywhere: no element type to keep stable
            return None
        return _Plan(pa.list_(items.type), "list", items=items)
    if kinds == {"bool"}:
        return _Plan(pa.bool_(), "value")
    if kinds == {"int"}:
        return _Plan(pa.int64(), "value")
    if kinds <= {"int", "float"}:
        return _Plan(pa.float64(), "float")
    if kinds == {"str"}:
        return _Plan(pa.string(), "value")
    if kinds == {"json"}:
        return _Plan(pa.string(), "json")
    return _Plan(pa.string(), "text")  # values of several kinds: text


_SURROGATE = re.compile("[\ud800-\udfff]")


def _text(value: str) -> str:
    """Text Parquet (UTF-8) can hold: a lone surrogate, which no UTF-8 encoder accepts, becomes U+FFFD."""
    return _SURROGATE.sub("\ufffd", value)


def _json(value: Any) -> str:
    return _text(json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True, default=str))


def _convert(plan: _Plan, value: Any) -> Any:
    if value is None:
        return None
    if plan.how == "json":
        return _json(value)
    if plan.how == "text":
        return _text(value) if isinstance(value, str) else _json(value)
    if plan.how == "float":
        return float(value)
    if plan.how == "struct":
        fields = {_text(str(k)): v for k, v in value.items()}
        return {name: _convert(sub, fields.get(name)) for name, sub in plan.fields}
    if plan.how == "list":
        assert plan.items is not None
        return [_convert(plan.items, item) for item in value]
    return _text(value) if isinstance(value, str) else value


def _record_time(record: Mapping[str, Any]) -> int | None:
    when = record.get("time")
    return when if _kind(when) == "int" else None


def _time_order(record: Mapping[str, Any]) -> tuple[bool, int]:
    when = _record_time(record)
    return (when is None, when or 0)


def _sorted(records: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """By time (records without one last), as Security Lake asks; stable otherwise."""
    return sorted(records, key=_time_order)


def _table(records: Sequence[Mapping[str, Any]]) -> pa.Table:
    root = _Shape()
    for record in records:
        _observe(root, record, "", 0)
    plan = _plan(root, 0)
    if plan is None or plan.how != "struct":
        raise ValueError("OCSF records must be JSON objects with at least one field")
    rows = [_convert(plan, record) for record in records]
    return pa.Table.from_pylist(rows, schema=pa.schema([pa.field(name, p.type) for name, p in plan.fields]))


def normalise(records: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The rows one object stores for ``records``: time-ordered, free-form attributes as JSON text, absent
    and null fields as None (what reading the object back gives)."""
    rows: list[dict[str, Any]] = _table(_sorted(records)).to_pylist()
    return rows


def parquet_object(records: Sequence[Mapping[str, Any]], compression: str = "zstd") -> bytes:
    """One Parquet object holding ``records`` (one OCSF class), time-ordered."""
    buffer = io.BytesIO()
    pq.write_table(_table(_sorted(records)), buffer, compression=compression, data_page_size=DATA_PAGE_SIZE,
                   row_group_size=ROW_GROUP_ROWS, version="2.6")
    return buffer.getvalue()


def restore(row: Any, name: str = "") -> Any:
    """A record from a row read back: nulls dropped, free-form attributes parsed from their JSON text."""
    if isinstance(row, Mapping):
        return {k: restore(v, k) for k, v in row.items() if v is not None}
    if isinstance(row, list):
        return [restore(item) for item in row]
    if name in FREE_FORM and isinstance(row, str):
        return json.loads(row)
    return row


def event_day(epoch_ms: int | None, fallback: dt.datetime) -> str:
    """``YYYYMMDD`` of a record's time (OCSF ``time``: epoch milliseconds) in UTC; ``fallback`` when the
    record has no usable time."""
    when = fallback
    if epoch_ms is not None:
        try:
            when = dt.datetime.fromtimestamp(epoch_ms / 1000, tz=dt.UTC)
        except (OverflowError, OSError, ValueError):
            pass
    when = when.astimezone(dt.UTC) if when.tzinfo else when.replace(tzinfo=dt.UTC)
    return f"{when.year:04d}{when.month:02d}{when.day:02d}"


def _version(text: str) -> tuple[int, int]:
    """(major, minor) of an OCSF version such as ``1.3.0`` or ``1.0.0-rc.2``."""
    parts = re.findall(r"[0-9]+", text)[:2]
    return (int(parts[0]), int(parts[1])) if len(parts) == 2 else (0, 0)


# ---- S3 ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Put:
    source: SourceOptions
    key: str
    records: tuple[Mapping[str, Any], ...]


class _Clients:
    """S3 clients per provider role ('' = the default credential chain), created and refreshed on worker
    threads under one lock (a boto3 session is not thread-safe; its clients are)."""

    def __init__(self, sink: str, options: SecurityLakeOptions) -> None:
        self._sink = sink
        self._options = options
        self._lock = threading.Lock()
        aws.quiet_botocore()  # AssumeRole's answer holds the provider role's credentials
        self._session = boto3.session.Session()
        self._config = botocore.config.Config(
            connect_timeout=options.timeout, read_timeout=options.timeout, retries={"total_max_attempts": 1},
            user_agent_extra="canary-security-lake",
        )
        self._clients: dict[str, tuple[Any, dt.datetime | None]] = {}

    def _client(self, service: str, **credentials: Any) -> Any:
        return self._session.client(service, region_name=self._options.region,
                                    endpoint_url=self._options.endpoint_url or None, config=self._config, **credentials)

    def s3(self, source: SourceOptions) -> Any:
        role = source.role_arn or self._options.role_arn
        external_id = source.external_id or self._options.external_id
        with self._lock:
            cached = self._clients.get(role)
            if cached and not aws.stale(cached[1]):
                return cached[0]
            if not role:
                client, expires = self._client("s3"), None
            else:
                try:
                    client, expires = aws.assumed_client(
                        self._session, "s3", role_arn=role, session_name=f"canary-{self._sink}",
                        external_id=external_id.reveal() if external_id else None, region_name=self._options.region,
                        endpoint_url=self._options.endpoint_url or None, config=self._config)
                except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
                    raise translate(self._sink, exc, "assuming the provider role") from None
            # a replaced client is not closed: another worker thread may still be writing with it
            self._clients[role] = (client, expires)
            return client

    def forget(self, source: SourceOptions) -> None:
        """Drop a role's client (its token expired before we thought)."""
        with self._lock:
            self._clients.pop(source.role_arn or self._options.role_arn, None)

    def put(self, put: _Put) -> None:
        body = parquet_object(put.records, self._options.compression)
        client = self.s3(put.source)
        try:
            client.put_object(Bucket=self._options.bucket, Key=put.key, Body=body)
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
            if aws.expired(exc):
                self.forget(put.source)
            raise translate(self._sink, exc, f"writing to custom source {put.source.location}") from None

    def close(self) -> None:
        with self._lock:
            clients, self._clients = list(self._clients.values()), {}
        for client, _ in clients:
            client.close()


def translate(sink: str, exc: Exception, doing: str) -> DeliveryError:
    """A boto3 failure as a :class:`DeliveryError`: code, status and AWS's message (which holds neither
    credentials nor the external ID), retryable or permanent as the module docstring says."""
    if isinstance(exc, botocore.exceptions.ClientError):
        error = exc.response.get("Error", {})
        meta = exc.response.get("ResponseMetadata", {})
        code = str(error.get("Code") or "Unknown")
        status = int(meta.get("HTTPStatusCode") or 0) or None
        message = re.sub(r"\s+", " ", str(error.get("Message") or ""))[:200]
        retryable = (code in aws.RETRYABLE_CODES or status is None or status in (408, 429) or status >= 500)
        retry_after = parse_retry_after((meta.get("HTTPHeaders") or {}).get("retry-after"))
        return DeliveryError(sink, f"{doing}: {code} (HTTP {status}){': ' + message if message else ''}",
                             retry_after=retry_after, permanent=not retryable, status=status)
    if isinstance(exc, botocore.exceptions.NoCredentialsError | botocore.exceptions.PartialCredentialsError):
        return DeliveryError(sink, f"{doing}: no AWS credentials (set role_arn or the default credential chain)",
                             permanent=True)
    if isinstance(exc, botocore.exceptions.ParamValidationError):
        return DeliveryError(sink, f"{doing}: request refused by botocore ({type(exc).__name__})", permanent=True)
    return DeliveryError(sink, f"{doing}: {type(exc).__name__} talking to S3")


class SecurityLakeSink:
    """Writes OCSF records into Amazon Security Lake custom sources (see the module docstring)."""

    type: ClassVar[str] = "security_lake"
    Options: ClassVar[builtins.type[BaseModel]] = SecurityLakeOptions

    def __init__(self, name: str, options: SecurityLakeOptions, http: Any = None) -> None:
        self.name = name
        self.options = options
        self.events = options.events
        self.event_batch = options.event_batch
        #: records not written because their class has no custom source, by class_uid
        self.skipped: Counter[int] = Counter()
        self._warned: set[int] = set()
        self._clients = _Clients(name, options)
        if _version(ocsf.OCSF_VERSION) > SUPPORTED_OCSF:
            log.warning("security_lake_ocsf_version", sink=name, ocsf_version=ocsf.OCSF_VERSION,
                        reason="Security Lake custom sources support OCSF 1.3 and earlier")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"

    def _prefix(self, source: SourceOptions, day: str) -> str:
        o = self.options
        return f"{source.location}/region={o.region}/accountId={o.account_id}/eventDay={day}/canary-{self.name}-"

    def _source(self, record: Mapping[str, Any]) -> SourceOptions | None:
        value = record.get("class_uid")
        uid = value if isinstance(value, int) and not isinstance(value, bool) else 0
        source = self.options.sources.get(uid)
        if source is None:
            skipped = uid
            self.skipped[skipped] += 1
            if skipped not in self._warned:
                self._warned.add(skipped)
                log.warning("security_lake_class_skipped", sink=self.name, class_uid=skipped,
                            reason="no custom source configured for this OCSF class")
        return source

    async def send(self, alert: Alert) -> None:
        """One Detection Finding object per notification, keyed by incident, notification and action."""
        record = ocsf.detection_finding(alert)
        source = self._source(record)
        if source is None:
            return
        day = event_day(_record_time(record), alert.last_seen)
        key = f"{self._prefix(source, day)}i{alert.incident_id}-n{alert.sequence}-{alert.action}.parquet"
        await asyncio.to_thread(self._clients.put, _Put(source, key, (record,)))

    async def send_events(self, events: Sequence[StoredEvent]) -> None:
        """One object per (class, eventDay) of the batch, keyed by the event ids it holds."""
        groups: dict[tuple[int, str], list[tuple[int, Mapping[str, Any]]]] = {}
        for stored in events:
            record = ocsf.event_record(stored)
            source = self._source(record)
            if source is None:
                continue
            day = event_day(_record_time(record), stored.event.observed_at)
            groups.setdefault((int(record["class_uid"]), day), []).append((stored.id, record))
        puts = []
        for (uid, day), members in sorted(groups.items()):
            ids = sorted(i for i, _ in members)
            digest = hashlib.sha256(",".join(map(str, ids)).encode()).hexdigest()[:12]
            source = self.options.sources[uid]
            key = f"{self._prefix(source, day)}e{ids[0]}-{ids[-1]}-{digest}.parquet"
            puts.append(_Put(source, key, tuple(r for _, r in members)))
        for put in puts:
            await asyncio.to_thread(self._clients.put, put)

    async def close(self) -> None:
        await asyncio.to_thread(self._clients.close)


Options = SecurityLakeOptions
SINK = SecurityLakeSink
