"""Exported files: find canary values in files that land in export directories and S3-compatible
buckets, streaming with flat memory, and alert with the file and the matching canaries.

What is searched for: every active canary's contact points and credentials (``canary_values``:
e-mail, phone, token, ...), decrypted in memory only, lower-cased, plus a digits-only form of phone
numbers. One Aho-Corasick automaton (pyahocorasick) matches all of them in one pass.

How a file is read: fixed 4 MiB chunks, ASCII-lower-cased and decoded 1:1 as Latin-1 (so UTF-8
values match as their bytes), with an overlap of the longest value minus one byte so values that
straddle chunks are found exactly once. ``.gz`` files are decompressed as a stream. CSV, JSON,
NDJSON, SQL (pg_dump output) and text match on their bytes; Parquet pages are compressed and
dictionary-encoded, so Parquet files are decoded with pyarrow one record batch at a time.

Each file version (size + mtime, or the object's ETag) is scanned once (``scanned_files``); a file
still being written (size or mtime changed since the previous pass) waits for the next pass. The
event names the file and the canaries (registry ids, labels); values never leave memory.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import gzip
import hashlib
import hmac
import os
import re
import urllib.parse
import xml.etree.ElementTree as ET
import zlib
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ahocorasick
import aiohttp
import structlog

from canary.errors import CanaryError
from canary.events import DetectionEvent, EventKind, Severity, event_key
from canary.store import registry
from canary.store.registry import value_purpose
from canary.typing import SourceContext

log = structlog.get_logger("canary.sources.filescan")

CHUNK = 4 * 1024 * 1024
SUFFIXES = (".csv", ".tsv", ".json", ".ndjson", ".jsonl", ".sql", ".txt", ".parquet", ".dump")
MIN_VALUE = 6  # shorter values would match everywhere
_DIGITS = re.compile(r"\D+")
S3_NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


class ScanError(CanaryError):
    """A watched location could not be listed or read."""

    code = "scan_error"


# -- the automaton -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Patterns:
    """The compiled automaton; ``owners[i]`` = (canary id, value kind) of pattern ``i``."""

    automaton: Any
    owners: tuple[tuple[int, str], ...]
    longest: int

    def __repr__(self) -> str:  # never show the values
        return f"Patterns(count={len(self.owners)}, longest={self.longest})"

    @property
    def empty(self) -> bool:
        return not self.owners


def variants(kind: str, value: str) -> set[str]:
    """Forms a value takes in an export: lower-cased; phones also as bare digits."""
    out = {value.strip().lower()}
    if kind == "phone":
        digits = _DIGITS.sub("", value)
        if len(digits) >= 8:
            out.add(digits)
    return {v for v in out if len(v.encode()) >= MIN_VALUE}


def compile_patterns(values: Iterable[tuple[int, str, str]]) -> Patterns:
    """(canary id, kind, plaintext) -> automaton over the Latin-1 view of the UTF-8 bytes."""
    automaton = ahocorasick.Automaton()
    owners: list[tuple[int, str]] = []
    seen: dict[str, int] = {}
    longest = 0
    for canary_id, kind, value in values:
        for v in variants(kind, value):
            key = v.encode().decode("latin-1")
            if key in seen:
                continue
            seen[key] = len(owners)
            automaton.add_word(key, len(owners))
            owners.append((canary_id, kind))
            longest = max(longest, len(key))
    if owners:
        automaton.make_automaton()
    return Patterns(automaton, tuple(owners), longest)


async def load_patterns(runtime: SourceContext) -> Patterns:
    """Every active canary's values, decrypted in memory only."""
    rows = await registry.active_values(runtime.pool)
    keyring = runtime.keyring

    def build() -> Patterns:
        return compile_patterns(
            (r["canary_id"], r["kind"], keyring.decrypt_text(r["value_enc"], value_purpose(r["kind"]))) for r in rows
        )

    return await asyncio.to_thread(build)


# -- streaming search ----------------------------------------------------------------------------------

@dataclass
class ScanResult:
    hits: dict[int, set[str]] = field(default_factory=dict)  # canary id -> kinds matched
    matches: int = 0
    bytes: int = 0


class StreamSearch:
    """Incremental search over consecutive chunks of one stream; memory is one chunk plus the overlap."""

    def __init__(self, patterns: Patterns) -> None:
        self.patterns = patterns
        self.result = ScanResult()
        self._keep = max(patterns.longest - 1, 0)
        self._tail = ""

    def feed(self, chunk: bytes) -> None:
        self.result.bytes += len(chunk)
        if self.patterns.empty:
            return
        text = self._tail + chunk.lower().decode("latin-1")
        start = len(self._tail)
        owners, hits = self.patterns.owners, self.result.hits
        for end, idx in self.patterns.automaton.iter(text):
            if end >= start:  # matches ending inside the overlap were counted with the previous chunk
                cid, kind = owners[idx]
                hits.setdefault(cid, set()).add(kind)
                self.result.matches += 1
        self._tail = text[-self._keep:] if self._keep else ""


def scan_chunks(chunks: Iterable[bytes], patterns: Patterns) -> ScanResult:
    """Search a stream of byte chunks."""
    search = StreamSearch(patterns)
    for chunk in chunks:
        search.feed(chunk)
    return search.result


def file_chunks(path: Path, size: int = CHUNK) -> Iterator[bytes]:
    """Raw or gunzipped chunks of a file."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        while True:
            data = fh.read(size)
            if not data:
                return
            yield data


def parquet_chunks(path: Path, batch_rows: int = 65536) -> Iterator[bytes]:
    """Decoded Parquet values (every column as text, one line per value), one record batch at a time:
    pages are decompressed and dictionary-decoded, memory stays one batch."""
    import pyarrow.parquet as pq

    with pq.ParquetFile(path) as pf:
        for batch in pf.iter_batches(batch_size=batch_rows):
            for column in batch.columns:
                yield ("\n".join("" if v is None else str(v) for v in column.to_pylist()) + "\n").encode()


def scan_file(path: Path, patterns: Patterns) -> ScanResult:
    """Blocking: run in a thread. ``ScanResult.bytes`` counts decoded bytes for Parquet."""
    if path.suffix == ".parquet":
        return scan_chunks(parquet_chunks(path), patterns)
    return scan_chunks(file_chunks(path), patterns)


def wanted(name: str) -> bool:
    base = name[:-3] if name.endswith(".gz") else name
    return base.lower().endswith(SUFFIXES)


# -- S3-compatible buckets (ListObjectsV2 + GetObject, Signature Version 4) -----------------------------

def _uri(value: str, safe: str = "") -> str:
    return urllib.parse.quote(value, safe="-_.~" + safe)


def sigv4_headers(
    method: str, url: str, *, region: str, access_key: str, secret_key: str, now: dt.datetime,
    headers: Mapping[str, str] | None = None, payload_hash: str = EMPTY_SHA256, service: str = "s3",
) -> dict[str, str]:
    """Headers (incl. Authorization) that sign a request with AWS Signature Version 4."""
    parts = urllib.parse.urlsplit(url)
    amz_date = now.strftime("%Y%m%dT%H%M%SZ")
    scope = f"{now:%Y%m%d}/{region}/{service}/aws4_request"
    all_headers = {k.lower(): " ".join(str(v).split()) for k, v in (headers or {}).items()}
    all_headers.update({"host": parts.netloc, "x-amz-date": amz_date, "x-amz-content-sha256": payload_hash})
    signed = sorted(all_headers)
    query = sorted(urllib.parse.parse_qsl(parts.query, keep_blank_values=True))
    canonical = "\n".join([
        method,
        _uri(urllib.parse.unquote(parts.path or "/"), "/"),
        "&".join(f"{_uri(k)}={_uri(v)}" for k, v in query),
        "".join(f"{h}:{all_headers[h]}\n" for h in signed),
        ";".join(signed),
        payload_hash,
    ])
    to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    key = ("AWS4" + secret_key).encode()
    for part in (f"{now:%Y%m%d}", region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    out = {k: v for k, v in (headers or {}).items()}
    out.update({"x-amz-date": amz_date, "x-amz-content-sha256": payload_hash,
                "Authorization": f"AWS4-HMAC-SHA256 Credential={access_key}/{scope},SignedHeaders={';'.join(signed)},"
                                 f"Signature={signature}"})
    return out


@dataclass(frozen=True, slots=True)
class S3Object:
    key: str
    etag: str
    size: int


class S3Bucket:
    """Path-style client for one bucket: list objects under a prefix, stream one object."""

    def __init__(self, http: aiohttp.ClientSession, endpoint: str, bucket: str, *, region: str, access_key: str,
                 secret_key: str, prefix: str = "", timeout: float = 30.0) -> None:
        self.http = http
        self.base = endpoint.rstrip("/") + "/" + _uri(bucket)
        self.bucket = bucket
        self.region = region
        self._access = access_key
        self._secret = secret_key
        self.prefix = prefix
        self.timeout = aiohttp.ClientTimeout(total=None, sock_connect=timeout, sock_read=timeout)

    def __repr__(self) -> str:
        return f"S3Bucket({self.base!r}, prefix={self.prefix!r})"

    def _sign(self, method: str, url: str) -> dict[str, str]:
        return sigv4_headers(method, url, region=self.region, access_key=self._access, secret_key=self._secret,
                             now=dt.datetime.now(dt.timezone.utc))

    async def _error(self, resp: aiohttp.ClientResponse) -> ScanError:
        text = (await resp.text(errors="replace"))[:2000]
        code = ""
        try:
            code = ET.fromstring(text).findtext("Code") or ""
        except ET.ParseError:
            pass
        return ScanError(f"s3 {self.bucket}: HTTP {resp.status} {code}".rstrip(), status=resp.status, s3_code=code)

    async def list(self) -> AsyncIterator[S3Object]:
        token: str | None = None
        while True:
            q = {"list-type": "2", "prefix": self.prefix}
            if token:
                q["continuation-token"] = token
            url = self.base + "?" + urllib.parse.urlencode(sorted(q.items()), quote_via=urllib.parse.quote)
            async with self.http.get(url, headers=self._sign("GET", url), timeout=self.timeout) as resp:
                if resp.status != 200:
                    raise await self._error(resp)
                body = await resp.read()
            try:
                root = ET.fromstring(body)
            except ET.ParseError as exc:
                raise ScanError(f"s3 {self.bucket}: ListObjectsV2 answer is not XML: {exc}") from None
            ns = S3_NS if root.tag.startswith(S3_NS) else ""
            for c in root.iter(f"{ns}Contents"):
                yield S3Object(c.findtext(f"{ns}Key") or "", (c.findtext(f"{ns}ETag") or "").strip('"'),
                               int(c.findtext(f"{ns}Size") or 0))
            if (root.findtext(f"{ns}IsTruncated") or "false") != "true":
                return
            token = root.findtext(f"{ns}NextContinuationToken")
            if not token:
                return

    async def chunks(self, key: str, size: int = CHUNK) -> AsyncIterator[bytes]:
        url = self.base + "/" + _uri(key, "/")
        async with self.http.get(url, headers=self._sign("GET", url), timeout=self.timeout,
                                 auto_decompress=False) as resp:
            if resp.status != 200:
                raise await self._error(resp)
            gunzip = zlib.decompressobj(wbits=31) if key.endswith(".gz") else None
            buf = b""
            async for part in resp.content.iter_chunked(256 * 1024):
                buf += gunzip.decompress(part) if gunzip else part
                if len(buf) >= size:
                    yield buf
                    buf = b""
            if gunzip:
                buf += gunzip.flush()
            if buf:
                yield buf


# -- the scanner ---------------------------------------------------------------------------------------

class ExportScanner:
    """Scans watched directories and buckets once per call (the scheduler calls it periodically)."""

    def __init__(self, runtime: SourceContext, directories: Sequence[Path] = (), buckets: Sequence[tuple[str, S3Bucket]] = (),
                 *, max_bytes: int = 64 * 1024**3) -> None:
        self.runtime = runtime
        self.directories = [Path(d) for d in directories]
        self.buckets = list(buckets)
        self.max_bytes = max_bytes
        self._seen: dict[str, str] = {}  # location -> version seen on the previous pass (stability)

    @classmethod
    def from_config(cls, runtime: SourceContext) -> ExportScanner:
        cov = runtime.config.coverage
        buckets = [
            (b.name, S3Bucket(runtime.http, b.endpoint, b.bucket, region=b.region, access_key=b.access_key_id.reveal(),
                              secret_key=b.secret_access_key.reveal(), prefix=b.prefix))
            for b in cov.buckets
        ]
        return cls(runtime, cov.watch_dirs, buckets, max_bytes=cov.scan_max_bytes)

    async def _done(self, location: str, version: str) -> bool:
        return bool(await self.runtime.pool.fetchval(
            "SELECT EXISTS (SELECT 1 FROM scanned_files WHERE location = $1 AND version = $2)", location, version))

    def _stable(self, location: str, version: str) -> bool:
        """Scan a version only when the previous pass saw the same one (the writer has finished)."""
        previous = self._seen.get(location)
        self._seen[location] = version
        return previous == version

    async def scan_once(self) -> list[DetectionEvent]:
        """One pass over every location. Events are committed file by file as they are found (before
        the file is marked scanned), so the returned list is always empty: nothing is left to submit."""
        patterns = await load_patterns(self.runtime)
        for directory in self.directories:
            for path, version in await asyncio.to_thread(_list_dir, directory):
                location = f"dir:{path}"
                if not self._stable(location, version) or await self._done(location, version):
                    continue
                size = int(version.split(":")[0])
                if size > self.max_bytes:
                    await self.runtime.reject("filescan", "file_too_large", str(path))
                    await self._record(location, version, ScanResult(bytes=0))
                    continue
                try:
                    result = await asyncio.to_thread(scan_file, path, patterns)
                except (OSError, EOFError, zlib.error) as exc:  # one reject per file version, not per pass
                    await self.runtime.reject("filescan", "unreadable_file", f"{path}: {type(exc).__name__}: {exc}")
                    await self._record(location, version, ScanResult())
                    continue
                await self._finish(location, version, str(path), result)
        for name, bucket in self.buckets:
            try:
                objects = [o async for o in bucket.list() if wanted(o.key)]
            except (ScanError, aiohttp.ClientError, asyncio.TimeoutError) as exc:
                raise ScanError(f"bucket {name}: cannot list: {exc}") from None
            for obj in objects:
                location = f"s3:{name}/{obj.key}"
                if not self._stable(location, obj.etag) or await self._done(location, obj.etag):
                    continue
                if obj.size > self.max_bytes:
                    await self.runtime.reject("filescan", "file_too_large", location)
                    continue
                try:
                    result = await self._scan_object(bucket, obj.key, patterns)
                except (ScanError, aiohttp.ClientError, asyncio.TimeoutError, zlib.error) as exc:
                    await self.runtime.reject("filescan", "unreadable_object", f"{location}: {exc}")
                    continue
                await self._finish(location, obj.etag, f"s3://{bucket.bucket}/{obj.key}", result)
        return []

    async def _scan_object(self, bucket: S3Bucket, key: str, patterns: Patterns) -> ScanResult:
        """Stream the object, searching each chunk in a thread (flat memory; the loop stays free)."""
        search = StreamSearch(patterns)
        async for chunk in bucket.chunks(key):
            await asyncio.to_thread(search.feed, chunk)
        return search.result

    async def _record(self, location: str, version: str, result: ScanResult) -> None:
        await self.runtime.pool.execute(
            "INSERT INTO scanned_files (location, version, matches, bytes) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
            location, version, result.matches, result.bytes,
        )

    async def _finish(self, location: str, version: str, shown: str, result: ScanResult) -> None:
        """Commit the events of a scanned file (one per canary found, one incident per file), then mark
        the file scanned (a crash in between rescans it: event keys make that idempotent)."""
        self.runtime.metrics.lines.labels(source="filescan").inc()
        events: list[DetectionEvent] = []
        now = dt.datetime.now(dt.timezone.utc)
        if result.hits:
            labels = await registry.labels(self.runtime.pool, list(result.hits))
            for cid, kinds in sorted(result.hits.items()):
                events.append(DetectionEvent(
                    kind=EventKind.EXPORTED, source="filescan", key=event_key("file", location, version, cid),
                    group=f"file:{location}:{version}", canary_id=cid, observed_at=now, detected_at=now,
                    origin={"path": shown}, severity=Severity.CRITICAL,
                    evidence={"signal": "export_file", "path": shown, "matched": sorted(kinds),
                              "label": labels.get(cid), "file_version": version, "bytes": result.bytes,
                              "canaries_in_file": len(result.hits)},
                ))
            await self.runtime.submit_many(events)
            log.warning("filescan.canaries_found", path=shown, canaries=len(result.hits))
        await self._record(location, version, result)


def _list_dir(directory: Path) -> list[tuple[Path, str]]:
    out: list[tuple[Path, str]] = []
    try:
        for root, _, files in os.walk(directory):
            for name in files:
                if not wanted(name):
                    continue
                p = Path(root) / name
                try:
                    st = p.stat()
                except OSError:
                    continue
                out.append((p, f"{st.st_size}:{st.st_mtime_ns}"))
    except OSError as exc:
        raise ScanError(f"cannot list {directory}: {exc.strerror}") from None
    return sorted(out)
