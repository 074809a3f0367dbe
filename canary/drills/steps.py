"""One function per attack action. Each step declares, before it sends anything, the exact facts its
traffic will carry (:class:`Marker`), then plays the attack and says when its first statement or
message went out. A step whose prerequisites are missing raises :class:`Skipped` with the reason.

Facts by action (what the listener records and the runner matches on):

* datastore actions: ``application_name = canary-drill:<run>/<step>`` (the jsonlog source sets the
  event's ``drill`` from it, and the pipeline routes to drill-only sinks),
* ``mail``: the envelope sender, ``drill-<random>@<domain>``, unique to the run,
* ``sms``: the Twilio ``MessageSid`` of every message (random) and the synthetic caller number,
* ``token``: the client source port the drill binds for its request to the HTTP honeypot,
* ``dsn``: the ``application_name`` startup parameter sent to the PostgreSQL honeypot.
"""

from __future__ import annotations

import asyncio
import io
import os
import secrets
import subprocess
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import make_msgid
from typing import Any
from urllib.parse import unquote, urlsplit

import aiohttp
import asyncpg

from canary.contact.phone import twilio_signature
from canary.credentials.values import CredentialFactory
from canary.drills.deployment import Target, pg_dump_path
from canary.drills.playbook import Action, Step
from canary.errors import DrillError
from canary.postgres.protocol import DRILL_APP_PREFIX
from canary.store import registry
from canary.store.embedded import free_port
from canary.store.registry import value_purpose

#: Sections of an event a marker may name (validated: they become part of a query).
SECTIONS = ("actor", "origin", "evidence", "drill")
#: Sender domain of drill phishing mail (reserved by RFC 2606: never a real sender).
DRILL_SENDER_DOMAIN = "billing-notice.example"
#: NANP numbers 555-0100..0199 are reserved for fiction: a drill SMS never comes from a real person.
FICTIONAL_AREA_CODES = ("202", "312", "415", "617", "718")
CONNECT_TIMEOUT = 10.0
STATEMENT_TIMEOUT = 300.0  # a drill statement (a whole-table read, a dump) may take this long


@dataclass(frozen=True, slots=True)
class Marker:
    """A fact the step's traffic carries: ``section`` ('drill' = the incident's drill tag) and ``field``."""

    section: str
    field: str
    value: str

    def __post_init__(self) -> None:
        if self.section not in SECTIONS:
            raise ValueError(f"marker section must be one of {SECTIONS}")


class Skipped(Exception):
    """The step cannot run here; ``reason`` says which prerequisite is missing."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class StepContext:
    target: Target
    step: Step
    number: int
    tag: str  # <run-id>/<step number>
    register: Callable[[Sequence[Marker]], Awaitable[None]]
    started: float | None = None  # wall clock of the first statement or message
    facts: dict[str, Any] = field(default_factory=dict)  # what the step did (never canary values)

    @property
    def application_name(self) -> str:
        return DRILL_APP_PREFIX + self.tag

    def start(self) -> None:
        if self.started is None:
            self.started = time.time()


async def execute(ctx: StepContext) -> None:
    """Run the step's action (markers registered first); raises :class:`Skipped` or an error."""
    await _ACTIONS[ctx.step.action](ctx)
    if ctx.started is None:
        raise DrillError(f"step {ctx.step.name!r} sent nothing")


# -- datastore ------------------------------------------------------------------------------------
def _split_table(table: str) -> tuple[str, str]:
    schema, _, name = table.partition(".")
    return schema, name


def _quoted(table: str) -> str:
    schema, name = _split_table(table)
    return '"' + schema.replace('"', '""') + '"."' + name.replace('"', '""') + '"'


async def _connect(ctx: StepContext, dsn: str | None, what: str) -> asyncpg.Connection:
    if dsn is None:
        raise Skipped(what)
    try:
        return await asyncpg.connect(dsn, timeout=CONNECT_TIMEOUT, command_timeout=STATEMENT_TIMEOUT,
                                     server_settings={"application_name": ctx.application_name})
    except (OSError, asyncio.TimeoutError, asyncpg.PostgresError) as exc:
        raise DrillError(f"cannot connect for step {ctx.step.name!r}: {type(exc).__name__}") from None


def _insider_dsn(ctx: StepContext) -> str | None:
    t = ctx.target
    if ctx.step.role == "privileged":
        return t.datastore.dsn.reveal() if t.datastore is not None else None
    return t.insider_dsn


_NO_INSIDER = (
    "no insider DSN: give --insider-dsn (or $CANARY_DRILL_INSIDER_DSN), an ordinary role's connection string "
    "to the datastore; the configured DSN is privileged and row-level security does not see it"
)


async def _pg_tag(ctx: StepContext, conn: asyncpg.Connection) -> None:
    """Register the step's tag bound to its session: the server pid every line of the session carries
    (``leader_pid`` for a parallel worker's). A client that copies the tag from ``pg_stat_activity``
    into its own ``application_name`` has another pid, so its reads page on-call as real ones."""
    await ctx.register([Marker("drill", "drill", ctx.tag), Marker("origin", "pid", str(conn.get_server_pid()))])


async def pg_read(ctx: StepContext) -> None:
    conn = await _connect(ctx, _insider_dsn(ctx), _NO_INSIDER)
    try:
        await _pg_tag(ctx, conn)
        ctx.start()
        rows = await conn.fetch(f"SELECT * FROM {_quoted(ctx.step.table)}")
        ctx.facts.update(statements=1, rows=len(rows))
    finally:
        await conn.close()


async def pg_read_pages(ctx: StepContext) -> None:
    """The table in keyset pages over time, one session - the way an ETL job with a leftover token reads."""
    conn = await _connect(ctx, _insider_dsn(ctx), _NO_INSIDER)
    step = ctx.step
    try:
        await _pg_tag(ctx, conn)
        schema, name = _split_table(step.table)
        pk = await conn.fetchval(
            "SELECT a.attname FROM pg_catalog.pg_index i JOIN pg_catalog.pg_attribute a"
            " ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]"
            " WHERE i.indrelid = (quote_ident($1) || '.' || quote_ident($2))::regclass AND i.indisprimary", schema, name,
        )
        if pk is None:
            raise Skipped(f"{step.table} has no primary key to page by")
        col = '"' + pk.replace('"', '""') + '"'
        total, last, pages = 0, None, 0
        for i in range(step.pages):
            if i:
                await asyncio.sleep(step.interval)
            ctx.start()
            if last is None:
                rows = await conn.fetch(f"SELECT * FROM {_quoted(step.table)} ORDER BY {col} LIMIT $1", step.page_size)
            else:
                rows = await conn.fetch(
                    f"SELECT * FROM {_quoted(step.table)} WHERE {col} > $1 ORDER BY {col} LIMIT $2", last, step.page_size)
            pages += 1
            total += len(rows)
            if len(rows) < step.page_size:
                break
            last = rows[-1][pk]
        ctx.facts.update(statements=pages, rows=total, page_size=step.page_size)
    finally:
        await conn.close()


async def pg_copy(ctx: StepContext) -> None:
    conn = await _connect(ctx, _insider_dsn(ctx), _NO_INSIDER)
    try:
        await _pg_tag(ctx, conn)
        schema, name = _split_table(ctx.step.table)
        buf = io.BytesIO()
        ctx.start()
        await conn.copy_from_table(name, schema_name=schema, output=buf)
        ctx.facts.update(statements=1, rows=buf.getvalue().count(b"\n"), bytes=len(buf.getvalue()))
    finally:
        await conn.close()


async def replica_read(ctx: StepContext) -> None:
    t = ctx.target
    if t.standby_dsn is None:
        raise Skipped("no hot standby: configure [[coverage.nodes]] with a dsn (demo: needs Debian PostgreSQL 15's pg_basebackup)")
    dsn = t.standby_dsn
    if t.mode == "configured" and t.insider_dsn is not None:
        dsn = _with_host(t.insider_dsn, t.standby_dsn)
    conn = await _connect(ctx, dsn, "no standby DSN")
    try:
        if not await conn.fetchval("SELECT pg_is_in_recovery()"):
            raise Skipped(f"node {t.standby_node} is not a standby (pg_is_in_recovery() is false)")
        await _pg_tag(ctx, conn)
        ctx.start()
        rows = await conn.fetch(f"SELECT * FROM {_quoted(ctx.step.table)}")
        ctx.facts.update(statements=1, rows=len(rows), node=t.standby_node)
    finally:
        await conn.close()


def _with_host(user_dsn: str, host_dsn: str) -> str:
    """The ordinary role's credentials at the standby's address."""
    u, h = urlsplit(user_dsn), urlsplit(host_dsn)
    return u._replace(netloc=f"{u.netloc.rsplit('@', 1)[0]}@{h.netloc.rsplit('@', 1)[-1]}").geturl()


async def pg_dump(ctx: StepContext) -> None:
    """``pg_dump -t <table>`` as the privileged role: row-level security is off, pgaudit must see it.
    pg_dump opens its own session, whose pid is not known in advance: this step's tag is bound to
    its window only."""
    await ctx.register([Marker("drill", "drill", ctx.tag)])
    t = ctx.target
    if t.datastore is None:
        raise Skipped("no datastore configured")
    dsn = t.datastore.dsn.reveal()
    conn = await _connect(ctx, dsn, "no datastore DSN")
    try:
        libs = str(await conn.fetchval("SELECT current_setting('shared_preload_libraries')") or "")
        if "pgaudit" not in libs:
            raise Skipped("pgaudit is not loaded on the datastore (shared_preload_libraries): a privileged dump is invisible")
        role = await conn.fetchval("SELECT current_setting('pgaudit.role', true)")
        if not role:
            raise Skipped("pgaudit.role is not set: object audit of the canary tables is not configured")
        major = int(await conn.fetchval("SELECT current_setting('server_version_num')::int / 10000"))
    finally:
        await conn.close()
    binary = await asyncio.to_thread(pg_dump_path, t, major)
    if binary is None:
        raise Skipped(f"no pg_dump client for PostgreSQL {major} on this machine")
    env = {**os.environ, **_libpq_env(dsn), "PGAPPNAME": ctx.application_name, "PGCONNECT_TIMEOUT": "10"}
    ctx.start()
    try:
        done = await asyncio.to_thread(
            subprocess.run, [str(binary), "--data-only", "-t", ctx.step.table, "-f", os.devnull],
            env=env, capture_output=True, timeout=STATEMENT_TIMEOUT,
        )
    except subprocess.TimeoutExpired:
        raise DrillError(f"pg_dump did not finish within {STATEMENT_TIMEOUT:g}s") from None
    if done.returncode != 0:
        raise DrillError(f"pg_dump failed: {done.stderr.decode(errors='replace').strip()[-300:]}")
    ctx.facts.update(client=str(binary), table=ctx.step.table)


def _libpq_env(dsn: str) -> dict[str, str]:
    """A DSN as libpq environment variables, so the password is not on a command line."""
    parts = urlsplit(dsn)
    env = {"PGHOST": parts.hostname or "127.0.0.1", "PGPORT": str(parts.port or 5432),
           "PGDATABASE": unquote(parts.path.lstrip("/")) or "postgres"}
    if parts.username:
        env["PGUSER"] = unquote(parts.username)
    if parts.password:
        env["PGPASSWORD"] = unquote(parts.password)
    return env


# -- contact ------------------------------------------------------------------------------------
async def _canary_values(ctx: StepContext, kind: str, count: int) -> list[str]:
    """Plaintext values of ``kind`` of active canaries (decrypted with the master key), at most ``count``."""
    rows = await registry.active_values(ctx.target.pool, kind, count)

    return [ctx.target.keyring.decrypt_text(r["value_enc"], value_purpose(kind)) for r in rows]


async def mail(ctx: StepContext) -> None:
    """A phishing message to canary customers' addresses through the canary SMTP server."""
    import aiosmtplib

    c = ctx.target.config.contact
    if not c.smtp:
        raise Skipped("the canary SMTP server is not enabled ([contact] smtp = false)")
    recipients = await _canary_values(ctx, "email", ctx.step.count)
    if not recipients:
        raise Skipped("no active canary has an e-mail address (seed with [seeding] email_domains)")
    sender = f"drill-{secrets.token_hex(6)}@{DRILL_SENDER_DOMAIN}"
    msg = EmailMessage()
    msg["From"] = f"Customer Service <{sender}>"
    msg["To"] = ", ".join(recipients)
    msg["Subject"] = ctx.step.subject
    msg["Message-ID"] = make_msgid(domain=DRILL_SENDER_DOMAIN)
    msg.set_content(ctx.step.body)
    await ctx.register([Marker("actor", "sender", sender)])
    host = _reachable(c.smtp_host)
    ctx.start()
    try:
        await aiosmtplib.send(msg, sender=sender, recipients=recipients, hostname=host, port=c.smtp_port,
                              timeout=CONNECT_TIMEOUT, start_tls=False, use_tls=False)
    except aiosmtplib.SMTPException as exc:
        raise DrillError(f"the canary SMTP server refused the drill message: {exc}") from None
    ctx.facts.update(recipients=len(recipients), sender=sender, subject=ctx.step.subject)


async def sms(ctx: StepContext) -> None:
    """SMS to canary numbers, delivered the way Twilio delivers them: a signed form POST."""

    cfg = ctx.target.config
    token = cfg.contact.twilio_auth_token
    if token is None:
        raise Skipped("Twilio webhooks are not enabled ([contact] twilio_auth_token is not set)")
    if not cfg.listener.public_url:
        raise Skipped("listener.public_url is not set (Twilio signs the URL it calls)")
    numbers = await _canary_values(ctx, "phone", ctx.step.count)
    if not numbers:
        raise Skipped("no active canary has a phone number (seed with [seeding] phone_numbers)")
    caller = f"+1{secrets.choice(FICTIONAL_AREA_CODES)}55501{secrets.randbelow(100):02d}"
    sids = ["SM" + secrets.token_hex(16) for _ in numbers]
    await ctx.register([Marker("evidence", "provider_id", s) for s in sids] + [Marker("actor", "caller", caller)])
    url = cfg.listener.public_url.rstrip("/") + "/twilio/sms"
    account = "AC" + secrets.token_hex(16)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=CONNECT_TIMEOUT)) as http:
        for sid, to in zip(sids, numbers):
            params = [("AccountSid", account), ("MessageSid", sid), ("SmsSid", sid), ("From", caller), ("To", to),
                      ("Body", ctx.step.body), ("NumMedia", "0"), ("NumSegments", "1"), ("FromCountry", "US"),
                      ("ApiVersion", "2010-04-01")]
            headers = {"X-Twilio-Signature": twilio_signature(token.reveal(), url, params)}
            ctx.start()
            async with http.post(url, data=params, headers=headers) as resp:
                if resp.status >= 300:
                    raise DrillError(f"the Twilio webhook answered {resp.status}")
    ctx.facts.update(messages=len(sids), caller=caller)


# -- credentials ------------------------------------------------------------------------------------
def _reachable(host: str) -> str:
    """Where to connect to a server bound to ``host`` (a wildcard bind is reached on loopback)."""
    return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host


async def _honeypot_credential(ctx: StepContext, enabled: bool, section: str, kind: str, what: str) -> list[str]:
    if not enabled:
        raise Skipped(f"the honeypot is not enabled ({section} enabled = false)")
    values = await _canary_values(ctx, kind, 1)
    if not values:
        raise Skipped(f"no active canary {what} (create one with `canary credentials new`)")
    return values


async def token(ctx: StepContext) -> None:
    """A canary API token presented to the HTTP honeypot from a source port bound by the drill."""

    hp = ctx.target.config.honeypot.http
    tokens = await _honeypot_credential(ctx, hp.enabled, "[honeypot.http]", "token", "API token")
    host = _reachable(hp.host)
    port = free_port()
    await ctx.register([Marker("origin", "client_port", str(port)), Marker("origin", "client_addr", "127.0.0.1")])
    path = next((p for p in hp.paths if p.endswith("/")), "/api/") + "customers?limit=500"
    connector = aiohttp.TCPConnector(local_addr=("127.0.0.1", port), force_close=True)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=CONNECT_TIMEOUT)) as http:
        ctx.start()
        async with http.get(f"http://{host}:{hp.port}{path}", headers={
            "Authorization": f"Bearer {tokens[0]}", "User-Agent": "python-requests/2.31.0", "Accept": "application/json",
        }) as resp:
            await resp.read()
            ctx.facts.update(status=resp.status, path=path.split("?")[0])


async def dsn(ctx: StepContext) -> None:
    """A canary DSN used to log in to the PostgreSQL honeypot (it answers like a real server: 28P01)."""

    hp = ctx.target.config.honeypot.postgres
    user = (await _honeypot_credential(ctx, hp.enabled, "[honeypot.postgres]", "dsn_user", "DSN"))[0]
    password = CredentialFactory(ctx.target.keyring).pg_password(user)
    await ctx.register([Marker("origin", "application_name", ctx.application_name)])
    host = _reachable(hp.host)
    ctx.start()
    try:
        conn = await asyncpg.connect(host=host, port=hp.port, user=user, password=password, database="reporting",
                                     ssl=False, timeout=CONNECT_TIMEOUT,
                                     server_settings={"application_name": ctx.application_name})
    except asyncpg.InvalidPasswordError:
        ctx.facts.update(answer="28P01 password authentication failed")
    except (OSError, asyncio.TimeoutError, asyncpg.PostgresError) as exc:
        ctx.facts.update(answer=type(exc).__name__)
    else:
        await conn.close()
        ctx.facts.update(answer="login accepted")


_ACTIONS: dict[Action, Callable[[StepContext], Awaitable[None]]] = {
    Action.PG_READ: pg_read,
    Action.PG_READ_PAGES: pg_read_pages,
    Action.PG_COPY: pg_copy,
    Action.PG_DUMP: pg_dump,
    Action.REPLICA_READ: replica_read,
    Action.MAIL: mail,
    Action.SMS: sms,
    Action.TOKEN: token,
    Action.DSN: dsn,
}
