"""The export scanner: canary values found in CSV / SQL / gzip exports in a watched directory and in an
S3-compatible bucket (ListObjectsV2 + GetObject with SigV4), streaming, one alert per file version,
values never in events."""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import hmac
import json
import urllib.parse
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from testkit import STDOUT_SINK, CanaryRows, MakeConfig, OpenRuntime, customer_canary

from canary.crypto import Keyring
from canary.health.filescan import (
    ExportScanner,
    S3Bucket,
    ScanError,
    compile_patterns,
    scan_chunks,
    scan_file,
    sigv4_headers,
)
from canary.runtime import Runtime
from canary.store import ControlStore
from canary.store.embedded import free_port
from canary.store.registry import NewCanary, location_key

EMAIL = "Dana.Whitlock-7f3@canary-mail.example"
PHONE = "+1 (555) 010-4477"
TOKEN = "ghp_Zx81kQw0PpLm3Nn4Bb5Vv6Cc7Xx8Zz9Aa0Ss"
ACCESS, SECRET = "AKIACANARYTEST000001", "s3cr3t/Key+for+tests/0123456789abcdefghij"


@pytest.fixture
async def runtime(open_test_runtime: OpenRuntime, make_config: MakeConfig, canary_rows: CanaryRows) -> Runtime:
    """A runtime with a stdout sink and a running pipeline; a customer canary (e-mail, phone) and a
    GitHub token canary registered (their ids in ``test_ids``)."""
    rt = await open_test_runtime(make_config(sinks=[STDOUT_SINK]))
    rt.test_ids = await canary_rows(  # type: ignore[attr-defined]
        customer_canary(101, values=[("email", EMAIL), ("phone", PHONE)]),
        NewCanary(kind="credential", datastore="github", label="github/token",
                  location={"target": "github", "pk": "t1"}, lookup=location_key("github", "token", "t1"),
                  values=[("token", TOKEN)]),
    )
    rt.pipeline.start()
    return rt


def _csv(rows: int, canary_at: int | None = None) -> bytes:
    out = [b"id,full_name,email,phone,city\n"]
    for i in range(rows):
        if i == canary_at:
            out.append(f"101,Dana Whitlock,{EMAIL.upper()},15550104477,Riverside\n".encode())
        else:
            out.append(f"{i},Customer {i},user{i}@example.net,555-{i % 10000:04d},Springfield\n".encode())
    return b"".join(out)


def test_values_straddling_chunks_are_found_once() -> None:
    """A value split across any chunk boundary is found exactly once; case and phone punctuation do
    not hide it; a near-miss is not a match."""
    p = compile_patterns([(1, "email", EMAIL), (2, "phone", PHONE), (3, "token", TOKEN)])
    blob = b"x" * 50 + EMAIL.lower().encode() + b",15550104477," + TOKEN.encode() + b"," + EMAIL.encode()[:-1] + b"\n"
    for size in (1, 7, 16, 33, len(blob)):
        r = scan_chunks([blob[i:i + size] for i in range(0, len(blob), size)], p)
        assert (r.hits, r.matches) == ({1: {"email"}, 2: {"phone"}, 3: {"token"}}, 3), size
    assert "dana" not in repr(p).lower()


def test_gzip_and_sql_exports_are_scanned(tmp_path: Path) -> None:
    """A gzip-compressed pg_dump-style SQL export is decompressed as a stream and searched."""
    p = compile_patterns([(1, "email", EMAIL)])
    sql = b"COPY public.customers (id, email) FROM stdin;\n" + b"".join(f"{i}\tu{i}@x.org\n".encode() for i in range(5000))
    sql += f"101\t{EMAIL}\n\\.\n".encode()
    path = tmp_path / "shop.sql.gz"
    path.write_bytes(gzip.compress(sql))
    r = scan_file(path, p)
    assert r.hits == {1: {"email"}} and r.bytes == len(sql)


async def test_directory_export_alerts_once_per_file_version(runtime: Runtime, tmp_path: Path) -> None:
    """A new CSV holding a canary's e-mail and phone alerts (after it stopped changing) with the path
    and the canary, never the values; rescans do not repeat it; a clean file gives nothing."""
    (tmp_path / "clean.csv").write_bytes(_csv(2000))
    export = tmp_path / "nightly" / "customers.csv"
    export.parent.mkdir()
    export.write_bytes(_csv(20_000, canary_at=12_345))
    (tmp_path / "notes.bin").write_bytes(EMAIL.encode())  # not an export type: ignored
    scanner = ExportScanner(runtime, [tmp_path])
    await scanner.scan_once()
    assert await runtime.pool.fetchval("SELECT count(*) FROM events") == 0  # first sight: may still be written
    await scanner.scan_once()
    await scanner.scan_once()
    rows = await runtime.pool.fetch("SELECT * FROM events")
    assert len(rows) == 1
    ev = rows[0]
    assert ev["kind"] == "exported" and ev["canary_id"] == runtime.test_ids[0]  # type: ignore[attr-defined]
    assert ev["evidence"]["path"] == str(export) and ev["evidence"]["matched"] == ["email", "phone"]
    assert ev["evidence"]["label"] == "shop/public.customers"
    text = json.dumps([dict(r) for r in rows], default=str).lower()
    assert EMAIL.lower() not in text and "0104477" not in text
    assert await runtime.pool.fetchval("SELECT count(*) FROM scanned_files") == 2
    assert await runtime.pool.fetchval("SELECT count(*) FROM outbox") == 1


# -- a local S3-compatible server that checks SigV4 ----------------------------------------------------

def _verify(request: web.Request) -> bool:
    auth = request.headers.get("Authorization", "")
    try:
        fields = dict(part.split("=", 1) for part in auth.removeprefix("AWS4-HMAC-SHA256 ").split(","))
        access, date, region, service, _ = fields["Credential"].split("/")
        signed = fields["SignedHeaders"].split(";")
    except (ValueError, KeyError):
        return False
    if access != ACCESS or service != "s3":
        return False
    now = dt.datetime.strptime(request.headers["x-amz-date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.timezone.utc)
    url = f"http://{request.host}{request.raw_path}"
    expected = sigv4_headers(request.method, url, region=region, access_key=ACCESS, secret_key=SECRET, now=now,
                             headers={h: request.headers[h] for h in signed if h not in ("host", "x-amz-date", "x-amz-content-sha256")},
                             payload_hash=request.headers["x-amz-content-sha256"])
    return hmac.compare_digest(expected["Authorization"], auth)


def _s3_error(status: int, code: str) -> web.Response:
    body = f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code><Message>{code}</Message></Error>'
    return web.Response(status=status, text=body, content_type="application/xml")


def s3_app(objects: dict[str, bytes]) -> web.Application:
    async def bucket(request: web.Request) -> web.Response:
        if not _verify(request):
            return _s3_error(403, "SignatureDoesNotMatch")
        if request.query.get("list-type") != "2":
            return _s3_error(400, "InvalidArgument")
        keys = sorted(k for k in objects if k.startswith(request.query.get("prefix", "")))
        start = int(request.query.get("continuation-token", "0"))
        page = keys[start:start + 2]
        more = start + 2 < len(keys)
        contents = "".join(
            f"<Contents><Key>{k}</Key><LastModified>2026-11-23T15:00:00.000Z</LastModified>"
            f"<ETag>&quot;{hashlib.md5(objects[k]).hexdigest()}&quot;</ETag><Size>{len(objects[k])}</Size>"
            f"<StorageClass>STANDARD</StorageClass></Contents>" for k in page
        )
        body = ('<?xml version="1.0" encoding="UTF-8"?><ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
                f"<Name>exports</Name><Prefix>{request.query.get('prefix', '')}</Prefix><KeyCount>{len(page)}</KeyCount>"
                f"<MaxKeys>2</MaxKeys><IsTruncated>{'true' if more else 'false'}</IsTruncated>{contents}"
                + (f"<NextContinuationToken>{start + 2}</NextContinuationToken>" if more else "") + "</ListBucketResult>")
        return web.Response(text=body, content_type="application/xml")

    async def get_object(request: web.Request) -> web.StreamResponse:
        if not _verify(request):
            return _s3_error(403, "SignatureDoesNotMatch")
        key = urllib.parse.unquote(request.match_info["key"])
        if key not in objects:
            return _s3_error(404, "NoSuchKey")
        resp = web.StreamResponse()
        resp.content_length = len(objects[key])
        await resp.prepare(request)
        for i in range(0, len(objects[key]), 65536):
            await resp.write(objects[key][i:i + 65536])
        await resp.write_eof()
        return resp

    app = web.Application()
    app.router.add_get("/exports", bucket)
    app.router.add_get("/exports/{key:.+}", get_object)
    return app


@pytest.fixture
async def s3() -> AsyncIterator[tuple[str, dict[str, bytes]]]:
    objects: dict[str, bytes] = {}
    runner = web.AppRunner(s3_app(objects))
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield f"http://127.0.0.1:{port}", objects
    await runner.cleanup()


async def test_bucket_exports_are_scanned_with_signed_requests(runtime: Runtime, s3: tuple[str, dict[str, bytes]]) -> None:
    """Objects under the prefix are listed across pages and streamed with SigV4-signed requests; the
    one holding the canary token (gzip) alerts with its s3:// path; others under other prefixes are
    not read."""
    endpoint, objects = s3
    objects["daily/a.csv"] = _csv(3000)
    objects["daily/b.json"] = json.dumps([{"id": i, "email": f"u{i}@x.org"} for i in range(100)]).encode()
    objects["daily/tokens dump.ndjson.gz"] = gzip.compress(b'{"svc":"ci","token":"' + TOKEN.encode() + b'"}\n')
    objects["other/c.csv"] = _csv(10, canary_at=3)
    async with aiohttp.ClientSession() as http:
        bucket = S3Bucket(http, endpoint, "exports", region="eu-west-1", access_key=ACCESS, secret_key=SECRET, prefix="daily/")
        scanner = ExportScanner(runtime, buckets=[("exports", bucket)])
        await scanner.scan_once()
        await scanner.scan_once()
        rows = await runtime.pool.fetch("SELECT * FROM events")
        assert [(r["canary_id"], r["evidence"]["path"], r["evidence"]["matched"]) for r in rows] == [
            (runtime.test_ids[1], "s3://exports/daily/tokens dump.ndjson.gz", ["token"])  # type: ignore[attr-defined]
        ]
        assert await runtime.pool.fetchval("SELECT count(*) FROM scanned_files") == 3
        wrong = S3Bucket(http, endpoint, "exports", region="eu-west-1", access_key=ACCESS, secret_key="wrong", prefix="daily/")
        with pytest.raises(ScanError, match="403 SignatureDoesNotMatch"):
            await ExportScanner(runtime, buckets=[("exports", wrong)]).scan_once()


def test_sigv4_matches_the_aws_documented_example() -> None:
    """The signer reproduces AWS's published S3 GetObject example (test.txt, Range bytes=0-9)."""
    h = sigv4_headers("GET", "https://examplebucket.s3.amazonaws.com/test.txt", region="us-east-1",
                      access_key="AKIAIOSFODNN7EXAMPLE", secret_key="wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
                      now=dt.datetime(2013, 5, 24, tzinfo=dt.timezone.utc), headers={"Range": "bytes=0-9"})
    assert h["Authorization"] == (
        "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,"
        "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,"
        "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
    )


async def test_unreadable_and_oversized_files_are_rejected_not_fatal(runtime: Runtime, tmp_path: Path) -> None:
    """A corrupt .gz and a file over scan_max_bytes are rejected and counted; other files still scan."""
    (tmp_path / "broken.csv.gz").write_bytes(b"\x1f\x8b\x08\x00garbage")
    (tmp_path / "huge.csv").write_bytes(_csv(500))
    (tmp_path / "small.csv").write_bytes(f"id,email\n1,{EMAIL}\n".encode())
    scanner = ExportScanner(runtime, [tmp_path], max_bytes=1000)
    for _ in range(2):
        await scanner.scan_once()
    reasons = sorted(r["reason"] for r in await runtime.pool.fetch("SELECT reason FROM rejects"))
    assert reasons == ["file_too_large", "unreadable_file"]
    assert await runtime.pool.fetchval("SELECT count(*) FROM events") == 1
    await scanner.scan_once()
    assert await runtime.pool.fetchval("SELECT count(*) FROM rejects") == 2  # not re-rejected every pass


def test_cli_scan_names_canaries_not_values(control_dsn: str, data_dir: Path, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """``canary coverage scan FILE`` prints the canary's uid and label for a file holding its e-mail,
    never the e-mail itself, and exits 1; a clean file exits 0."""
    import asyncio
    import base64

    from canary.app.cli import main
    from canary.config import from_mapping
    from canary.crypto import ENV_MASTER_KEY, generate_key

    key = generate_key()
    monkeypatch.setenv(ENV_MASTER_KEY, base64.b64encode(key).decode())
    conf = tmp_path / "canary.toml"
    conf.write_text(f'[canary]\ndata_dir = "{data_dir}"\nlog_level = "error"\n[control]\ndsn = "{control_dsn}"\n')

    async def register() -> None:
        store = ControlStore(from_mapping({"canary": {"data_dir": str(data_dir)}, "control": {"dsn": control_dsn}}))
        await store.open()
        try:
            from canary.store.registry import Registry

            async with store.pool.acquire() as conn:
                await Registry(store.pool, Keyring(key)).add(conn, [NewCanary(
                    kind="customer", datastore="shop", label="shop/public.customers", location={"target": "public.customers", "pk": "7"},
                    lookup=location_key("shop", "public.customers", 7), values=[("email", EMAIL)])], None)
        finally:
            await store.close()

    asyncio.run(register())
    capsys.readouterr()  # the migration's log line
    dirty, clean = tmp_path / "dirty.csv", tmp_path / "clean.csv"
    dirty.write_bytes(f"id,email\n7,{EMAIL}\n".encode())
    clean.write_bytes(_csv(100))
    assert main(["-c", str(conf), "coverage", "scan", str(dirty)]) == 1
    out = capsys.readouterr().out
    report = json.loads(out.strip().splitlines()[-1])
    assert report["canaries"][0]["label"] == "shop/public.customers" and report["canaries"][0]["matched"] == ["email"]
    assert EMAIL.lower() not in out.lower()
    assert main(["-c", str(conf), "coverage", "scan", str(clean)]) == 0


def test_compressed_parquet_is_decoded_before_searching(tmp_path: Path) -> None:
    """In a zstd-compressed, dictionary-encoded Parquet export the e-mail is not visible in the raw
    bytes; decoding batch by batch finds it (and the phone stored as an integer column)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    n = 50_000
    emails = [f"user{i}@example.net" for i in range(n)]
    emails[31_337] = EMAIL
    phones = [15550000000 + i for i in range(n)]
    phones[777] = 15550104477
    path = tmp_path / "customers.parquet"
    pq.write_table(pa.table({"id": list(range(n)), "email": emails, "phone": phones}), path, compression="zstd",
                   write_statistics=False, row_group_size=10_000)
    assert EMAIL.encode() not in path.read_bytes()
    p = compile_patterns([(1, "email", EMAIL), (2, "phone", PHONE)])
    r = scan_file(path, p)
    assert r.hits == {1: {"email"}, 2: {"phone"}}
