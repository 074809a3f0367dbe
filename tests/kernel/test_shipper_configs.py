"""The shipper configurations in config/ (Vector, Fluent Bit): their HTTP sink speaks what canary's ingest
accepts, and their edge filter keeps every record canary detects and drops ordinary statements.

Neither shipper is packaged for this machine (``apt-cache policy vector fluent-bit``: no candidate), so they
are not run; instead the sink settings are turned into the request the shipper would send (per its
documentation: NDJSON lines, gzip, bearer header) and posted to a real ingest endpoint, and the filter rules
(regular-expression searches on single fields, the same in both files) are evaluated with Python's ``re``
over records a real PostgreSQL server wrote.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import re
import tomllib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import asyncpg
import pytest
from testkit import (
    STDOUT_SINK,
    CanaryRows,
    MakeConfig,
    OpenRuntime,
    customer_canary,
    fresh_database,
    read_record,
    serving,
)

from canary.crypto import Keyring
from canary.drills.shop import create_shop
from canary.postgres.http_ingest import PATH, HttpIngest
from canary.postgres.processor import default_handlers
from canary.postgres.record import RecordContext
from canary.runtime import Runtime
from canary.secret import Secret
from canary.seeding.postgres import PostgresSeeder
from canary.store.embedded import PostgresServer

CONFIG = Path(__file__).resolve().parents[2] / "config"
TOKEN = "shipper-t0ken-for-tests"
#: one rule of the Vector condition: match(string(.FIELD) ?? "", r'REGEX')
_VECTOR_RULE = re.compile(r"""match\(string\(\.(?P<field>[a-z_]+)\) \?\? "", r'(?P<regex>[^']*)'\)""")

Rule = tuple[str, str]


def vector() -> dict[str, Any]:
    return tomllib.loads((CONFIG / "vector.toml").read_text())


def fluent_bit() -> list[tuple[str, list[tuple[str, str]]]]:
    """Fluent Bit's classic format: ``[SECTION]`` headers and ``Key Value`` lines (keys may repeat, so a
    section is a list of pairs); ``#`` starts a comment line."""
    sections: list[tuple[str, list[tuple[str, str]]]] = []
    for raw in (CONFIG / "fluent-bit.conf").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("[") and line.endswith("]"):
            sections.append((line[1:-1].upper(), []))
            continue
        key, _, value = line.partition(" ")
        assert sections and value.strip(), raw
        sections[-1][1].append((key.lower(), value.strip()))
    return sections


def fb_section(kind: str, name: str) -> list[tuple[str, str]]:
    found = [pairs for k, pairs in fluent_bit() if k == kind and ("name", name) in pairs]
    assert len(found) == 1, (kind, name)
    return found[0]


def fb_value(pairs: list[tuple[str, str]], key: str) -> str:
    values = [v for k, v in pairs if k == key]
    assert len(values) == 1, (key, values)
    return values[0]


def vector_rules() -> list[Rule]:
    """The Vector filter's rules; the condition must be nothing but their disjunction."""
    condition = vector()["transforms"]["canary_edge_filter"]["condition"]
    rules = [(m["field"], m["regex"]) for m in _VECTOR_RULE.finditer(condition)]
    rest = _VECTOR_RULE.sub("", condition)
    assert re.fullmatch(r"\s*(\|\|\s*)*", rest), f"the condition holds more than the rules: {rest!r}"
    return rules


def fluent_bit_rules() -> list[Rule]:
    grep = fb_section("FILTER", "grep")
    assert fb_value(grep, "logical_op").upper() == "OR"
    assert not [v for k, v in grep if k == "exclude"]
    out = []
    for key, value in grep:
        if key == "regex":
            field, _, regex = value.partition(" ")
            out.append((field, regex))
    return out


def kept(rules: list[Rule], record: dict[str, Any]) -> bool:
    """Both shippers' semantics: a rule searches its field's string value (a missing or non-string field
    matches nothing); any rule keeps the record."""
    return any(isinstance(record.get(f), str) and re.search(rx, record[f]) is not None for f, rx in rules)


# -- the sink ---------------------------------------------------------------------------------------

def test_both_filters_are_the_same_rules() -> None:
    """The Vector condition and the Fluent Bit grep hold the same rules in the same order, and each
    regular expression compiles."""
    assert vector_rules() == fluent_bit_rules()
    assert len(vector_rules()) >= 8
    for _, rx in vector_rules():
        re.compile(rx)


def test_vector_pipeline_ends_in_canarys_ingest() -> None:
    """file source -> remap (JSON objects) -> filter -> http sink on /ingest/jsonlog?node=..., POST, NDJSON
    (json codec, newline framing), bearer auth from the environment, gzip, end-to-end acknowledgements and a
    disk buffer (nothing dropped while canary is down)."""
    v = vector()
    assert v["sources"]["postgres_jsonlog"]["type"] == "file"
    remap, filt = v["transforms"]["postgres_records"], v["transforms"]["canary_edge_filter"]
    sink = v["sinks"]["canary"]
    assert (remap["type"], remap["inputs"]) == ("remap", ["postgres_jsonlog"])
    assert (filt["type"], filt["inputs"]) == ("filter", ["postgres_records"])
    assert (sink["type"], sink["inputs"], sink["method"]) == ("http", ["canary_edge_filter"], "post")
    url = urlsplit(sink["uri"])
    assert url.path.endswith(PATH) and list(parse_qs(url.query)) == ["node"]
    assert sink["encoding"]["codec"] == "json" and sink["framing"]["method"] == "newline_delimited"
    assert sink["auth"] == {"strategy": "bearer", "token": "${CANARY_INGEST_TOKEN}"}
    assert sink["compression"] == "gzip"
    assert sink["acknowledgements"]["enabled"] is True
    assert sink["buffer"]["type"] == "disk" and sink["buffer"]["when_full"] == "block"


def test_fluent_bit_pipeline_ends_in_canarys_ingest() -> None:
    """tail (json parser) -> grep -> http output on /ingest/jsonlog?node=..., json_lines, no added date key,
    the bearer header from the environment, gzip, unlimited retries; one tag from input to output."""
    tail, grep, out = fb_section("INPUT", "tail"), fb_section("FILTER", "grep"), fb_section("OUTPUT", "http")
    tag = fb_value(tail, "tag")
    assert fb_value(tail, "parser") == "json"
    assert fb_value(grep, "match") == fb_value(out, "match") == tag
    url = urlsplit(fb_value(out, "uri"))
    assert url.path == PATH and list(parse_qs(url.query)) == ["node"]
    assert fb_value(out, "format") == "json_lines" and fb_value(out, "json_date_key") == "false"
    assert fb_value(out, "header") == "Authorization Bearer ${CANARY_INGEST_TOKEN}"
    assert fb_value(out, "compress") == "gzip" and fb_value(out, "retry_limit") == "no_limits"


def _expand(text: str, env: dict[str, str]) -> str:
    return re.sub(r"\$\{([A-Z_]+)\}", lambda m: env[m.group(1)], text)


@pytest.fixture
async def ingest(open_test_runtime: OpenRuntime, make_config: MakeConfig, canary_rows: CanaryRows) -> AsyncIterator[tuple[Runtime, int]]:
    """A real ingest endpoint (node "primary" of datastore shop) with canaries at rows 1..3."""
    rt = await open_test_runtime(make_config(sinks=[STDOUT_SINK]))
    await canary_rows(*(customer_canary(pk) for pk in (1, 2, 3)))
    rt.pipeline.start()
    async with serving(rt, [HttpIngest(Secret(TOKEN), {"primary": "shop"})]) as port:
        yield rt, port


async def test_requests_built_from_both_configs_are_accepted_by_the_ingest(ingest: tuple[Runtime, int]) -> None:
    """The request each shipper sends by its configuration (Vector: uri, bearer auth, gzip, NDJSON;
    Fluent Bit: host/port/URI, its Header line, gzip, json_lines) is answered 200 by canary's ingest and
    every record in it becomes an event; with the token changed it is refused 401."""
    rt, port = ingest
    env = {"CANARY_INGEST_URL": f"http://127.0.0.1:{port}", "CANARY_HOST": "127.0.0.1", "CANARY_PORT": str(port),
           "CANARY_NODE": "primary", "CANARY_INGEST_TOKEN": TOKEN}
    sink, out = vector()["sinks"]["canary"], fb_section("OUTPUT", "http")
    requests = []
    body = b"".join(json.dumps(read_record(pk, 700 + pk)).encode() + b"\n" for pk in (1, 2))  # newline framing
    requests.append((_expand(sink["uri"], env), {"Authorization": "Bearer " + _expand(sink["auth"]["token"], env),
                                                 "Content-Encoding": "gzip", **sink["request"]["headers"]},
                     gzip.compress(body)))
    name, _, value = _expand(fb_value(out, "header"), env).partition(" ")
    url = f"http://{_expand(fb_value(out, 'host'), env)}:{_expand(fb_value(out, 'port'), env)}{_expand(fb_value(out, 'uri'), env)}"
    body = json.dumps(read_record(3, 703)).encode() + b"\n"  # json_lines: one record per line
    requests.append((url, {name: value, "Content-Encoding": "gzip"}, gzip.compress(body)))
    async with aiohttp.ClientSession() as http:
        answers = []
        for url, headers, data in requests:
            async with http.post(url, headers=headers, data=data) as r:
                answers.append((r.status, await r.json()))
        async with http.post(requests[0][0], headers={**requests[0][1], "Authorization": "Bearer wrong"},
                             data=requests[0][2]) as r:
            refused = r.status
    assert [(s, b["events"]) for s, b in answers] == [(200, 2), (200, 1)]
    assert refused == 401
    assert await rt.pool.fetchval("SELECT count(*) FROM events") == 3


# -- the filter over a real server's records ----------------------------------------------------------

async def _corpus(server: PostgresServer, dsn: str, keyring: Keyring, make_config: MakeConfig, rt: Runtime) -> list[dict[str, Any]]:
    """What ``server`` logs for: a reader reading canary rows (CY001), DDL under log_statement = 'ddl'
    (and pgaudit's SESSION lines for it), connections and disconnections, a failed login, ordinary
    statements under log_statement = 'all'; the jsonlog records of the database, as written."""
    db = dsn.rsplit("/", 1)[1]
    before = {p: p.stat().st_size for p in server.jsonlog_files()}
    admin = await asyncpg.connect(dsn)
    try:
        await create_shop(admin, 300)
        await admin.execute("CREATE ROLE shipper_reader LOGIN PASSWORD 'pw-shipper-reader'")
        await admin.execute("GRANT SELECT ON customers TO shipper_reader")
    finally:
        await admin.close()
    cfg = make_config(datastores=[{"name": "shop", "dsn": dsn, "tables": [{"table": "public.customers", "count": 3}]}],
                      sinks=[STDOUT_SINK])
    await PostgresSeeder(cfg.datastore("shop"), rt.registry, keyring).apply()
    reader = await asyncpg.connect(server.dsn(db, user="shipper_reader", password="pw-shipper-reader"),
                                   server_settings={"application_name": "etl"})
    try:
        await reader.fetch("SELECT * FROM customers")  # the canary rows among them: CY001
    finally:
        await reader.close()
    admin = await asyncpg.connect(dsn, server_settings={"log_disconnections": "on"})
    try:
        have_pgaudit = await admin.fetchval("SELECT count(*) FROM pg_extension WHERE extname = 'pgaudit'")
        if not have_pgaudit and await admin.fetchval("SELECT count(*) FROM pg_available_extensions WHERE name = 'pgaudit'"):
            await admin.execute("CREATE EXTENSION IF NOT EXISTS pgaudit")
            have_pgaudit = 1
        if have_pgaudit:
            await admin.execute("SET pgaudit.log = 'ddl'")
        await admin.execute("SET log_statement = 'ddl'")
        await admin.execute("CREATE TABLE shipper_ddl (id int)")
        await admin.execute("GRANT SELECT ON shipper_ddl TO shipper_reader")
        await admin.execute("ALTER TABLE shipper_ddl ADD COLUMN note text")
        await admin.execute("SET log_statement = 'all'")
        if have_pgaudit:
            await admin.execute("SET pgaudit.log = 'none'")
        await admin.execute("INSERT INTO shipper_ddl VALUES (1, 'an ordinary write')")
        await admin.execute("SELECT count(*) FROM shipper_ddl")
        await admin.execute("UPDATE shipper_ddl SET note = 'statement: drop table customers' WHERE id = 1")
        await admin.execute("SET log_statement = 'ddl'")
        await admin.execute("DROP TABLE shipper_ddl")
    finally:
        await admin.close()
    with pytest.raises(asyncpg.InvalidPasswordError):
        await asyncpg.connect(server.dsn(db, user="shipper_reader", password="wrong"))
    records: list[dict[str, Any]] = []
    for _ in range(100):  # the logging collector writes asynchronously
        records = []
        for path in server.jsonlog_files():
            with path.open("rb") as fh:
                fh.seek(before.get(path, 0))
                for line in fh.read().splitlines():
                    rec = json.loads(line)
                    if rec.get("dbname") == db or db in str(rec.get("message", "")):
                        records.append(rec)
        if any(r.get("state_code") == "28P01" for r in records) and any(
                str(r.get("message", "")).startswith("disconnection:") for r in records):
            break
        await asyncio.sleep(0.1)
    return records


async def test_edge_filter_keeps_every_detected_record_and_drops_ordinary_statements(
    pg15_server: PostgresServer, make_config: MakeConfig, open_test_runtime: OpenRuntime, keyring: Keyring,
) -> None:
    """Over the jsonlog records a real PostgreSQL 15 wrote (a canary read, DDL, pgaudit when loaded,
    connection, disconnection, failed login, ordinary statements): every record any of canary's record
    handlers turns into a detection passes the filter, each kind of record the filter is for is present
    and kept, and the ordinary statements (even one whose text holds "statement: drop table") are dropped."""
    rt = await open_test_runtime()
    async with fresh_database(pg15_server, "shipper") as dsn:
        records = await _corpus(pg15_server, dsn, keyring, make_config, rt)
    rules = vector_rules()
    ctx = RecordContext("shop", "primary", "jsonlog:primary", keyring=keyring)
    detected = [r for r in records if any(_detects(h, r, ctx) for h in default_handlers())]
    messages = [str(r.get("message", "")) for r in records]

    def where(pred: Any) -> list[dict[str, Any]]:
        return [r for r in records if pred(r)]

    wanted = {
        "read": where(lambda r: r.get("state_code") == "CY001"),
        "connection": where(lambda r: str(r.get("message", "")).startswith("connection authorized:")),
        "disconnection": where(lambda r: str(r.get("message", "")).startswith("disconnection:")),
        "failed_login": where(lambda r: r.get("state_code") == "28P01"),
        "ddl": where(lambda r: re.match(r"statement: (CREATE|ALTER|GRANT|DROP) ", str(r.get("message", ""))) is not None),
    }
    audit = where(lambda r: str(r.get("message", "")).startswith("AUDIT: "))
    ordinary = where(lambda r: re.match(r"statement: (INSERT|SELECT|UPDATE) ", str(r.get("message", ""))) is not None)
    assert all(wanted.values()), {k: len(v) for k, v in wanted.items()}
    assert len(ordinary) == 3, [m for m in messages if m.startswith("statement")]
    assert detected and all(kept(rules, r) for r in detected), [(r.get("state_code"), r.get("message")) for r in detected if not kept(rules, r)]
    assert all(kept(rules, r) for group in wanted.values() for r in group)
    assert all(kept(rules, r) for r in audit)
    assert not any(kept(rules, r) for r in ordinary)
    share = sum(kept(rules, r) for r in records) / len(records)
    print(f"\nedge filter: {len(records)} records, {share:.0%} shipped, {len(detected)} detected, {len(audit)} pgaudit")


def _detects(handler: Any, record: dict[str, Any], ctx: RecordContext) -> bool:
    try:
        return handler(record, ctx) is not None
    except ValueError:  # a handler refusing a malformed line of its own kind: canary still wants it
        return True
