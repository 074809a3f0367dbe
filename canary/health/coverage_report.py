"""``canary coverage report``: every way customer data can leave each datastore, and whether canary
would see it — covered, partly or not covered, and why. Markdown for people, JSON for machines.

The report reads the control store, the configuration and each datastore's catalog and settings
(nothing else: no canary row, no value). A path the configuration *claims* (tables configured for
the direct paths, ``coverage audit`` run for privileged reads and views, ``coverage.checks`` for
replication, ``[[coverage.nodes]]`` for standbys, watched directories / buckets for export files,
contact points for contact, credential canaries for their use) and that is not covered makes the
command exit non-zero, so CI and cron notice an open path.

It lives in the health family (it reads the signal families' libraries: replication, managed settings,
pgaudit state, the backstop's catalog snapshot, privileged paths) so that both the CLI (``canary
coverage report``) and the REST API / console (``GET /api/v1/coverage``, :mod:`canary.web.api`) can
use it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import asyncpg

from canary.config import Config, DatastoreConfig
from canary.health import replication
from canary.postgres import managed
from canary.postgres.audit import audit_state
from canary.postgres.backstop import Snapshot, read_snapshot
from canary.postgres.paths import PrivilegedObject, privileged_objects
from canary.seeder import ServerSetting
from canary.store import checkpoints, detection_objects, registry

COVERED, PARTLY, OPEN = "covered", "partly", "not covered"

_SETTINGS = """
SELECT name, setting FROM pg_catalog.pg_settings
WHERE name IN ('log_replication_commands', 'log_connections', 'wal_level', 'server_version_num', 'log_destination',
               'logging_collector', 'row_security')
"""


@dataclass(frozen=True, slots=True)
class Path:
    """One way out and canary's cover of it."""

    path: str
    title: str
    status: str  # covered | partly | not covered
    why: str
    claimed: bool  # the configuration says canary covers it

    @property
    def open_claim(self) -> bool:
        return self.claimed and self.status == OPEN


@dataclass
class Facts:
    """What the report needs from one datastore (collected once)."""

    reachable: bool = True
    error: str = ""
    settings: dict[str, str] = field(default_factory=dict)
    targets: list[str] = field(default_factory=list)
    snapshot: Snapshot | None = None
    audit_problems: list[str] = field(default_factory=list)
    audit_configured: bool = False
    audited: frozenset[str] = frozenset()
    objects: list[PrivilegedObject] = field(default_factory=list)
    seen: list[dict[str, Any]] = field(default_factory=list)
    watched: bool = False
    credentials: int = 0
    customers: int = 0
    sweep: dict[str, Any] | None = None  # the copy sweep's saved position (run_at, passes, ...)
    copies: list[str] = field(default_factory=list)  # copies enrolled in the tripwire
    server: list[ServerSetting] = field(default_factory=list)  # server settings detection relies on, not as they must be
    notes: list[str] = field(default_factory=list)  # how detection differs under the DSN's role (managed admin)


async def _facts(config: Config, pool: asyncpg.Pool, ds: DatastoreConfig, timeout: float,
                 inventory: Sequence[asyncpg.Record]) -> Facts:
    f = Facts()
    f.targets = await detection_objects.targets(pool, ds.name)
    f.audit_configured = bool(await pool.fetchval(
        "SELECT EXISTS (SELECT 1 FROM coverage_audit WHERE datastore = $1)", ds.name))
    f.seen = [dict(r) for r in await replication.listing(pool, ds.name)]
    f.watched = await replication.watched(pool, ds.name) is not None
    f.sweep = await checkpoints.load(pool, f"sweep:{ds.name}")
    f.copies = sorted(t for t, d in (await detection_objects.children(pool, ds.name)).items() if d.get("copy"))
    for r in inventory:
        if r["datastore"] == ds.name:
            if r["kind"] == "customer":
                f.customers += int(r["n"])
            else:
                f.credentials += int(r["n"])
    try:
        conn = await asyncpg.connect(ds.dsn.reveal(), timeout=timeout, command_timeout=timeout)
    except (OSError, asyncio.TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        f.reachable, f.error = False, type(exc).__name__
        return f
    try:
        f.settings = {r["name"]: r["setting"] for r in await conn.fetch(_SETTINGS)}
        f.snapshot = await read_snapshot(conn, await detection_objects.policies(pool, ds.name), 0.0)
        state = await audit_state(conn, config.coverage.pgaudit_role)
        f.audited = state.audited
        f.audit_problems = state.problems(config.coverage.pgaudit_role, f.targets) if state.loaded else ["pgaudit_not_loaded"]
        f.objects = await privileged_objects(conn, f.targets, f.snapshot, await detection_objects.schemas(pool, ds.name))
        role = await managed.server_role(conn, ds.provider)
        f.server, f.notes = await managed.requirements(conn, role, config.coverage.pgaudit_role,
                                                       audit_configured=f.audit_configured)
    except (asyncpg.PostgresError, asyncpg.InterfaceError, asyncio.TimeoutError) as exc:
        f.reachable, f.error = False, type(exc).__name__
    finally:
        await conn.close()
    return f


def _age_s(stamp: object) -> float | None:
    """Seconds since an ISO timestamp (None when there is none or it does not parse)."""
    if not isinstance(stamp, str):
        return None
    try:
        at = dt.datetime.fromisoformat(stamp)
    except ValueError:
        return None
    if at.tzinfo is None:
        at = at.replace(tzinfo=dt.timezone.utc)
    return max((dt.datetime.now(dt.timezone.utc) - at).total_seconds(), 0.0)


def _log_path(config: Config, ds: DatastoreConfig) -> str | None:
    """How the datastore's log reaches canary, if it does."""
    cov = config.coverage
    if ds.jsonlog_dir is not None:
        return f"jsonlog tail of {ds.jsonlog_dir}"
    if cov.syslog_udp_port is not None or cov.syslog_tcp_port is not None:
        return "syslog"
    if cov.ingest_token is not None:
        return "HTTP ingest"
    return None


def paths_of(config: Config, ds: DatastoreConfig, f: Facts) -> list[Path]:
    """Each way out of ``ds`` with its cover."""
    cov = config.coverage
    log = _log_path(config, ds)
    on = f.settings.get("log_replication_commands") == "on"
    out: list[Path] = []
    configured = bool(ds.tables)
    if not f.reachable:
        out.append(Path("datastore", "The datastore itself", OPEN, f"cannot be read ({f.error}): nothing below is verified", True))
    # the tripwire's paths
    armed = [t for t in f.targets if f.snapshot is not None and f.snapshot.tables.get(t) is None]
    broken = [t for t in f.targets if t not in armed]
    if not f.targets:
        tw = (OPEN, "no table is armed (run `canary seed`)")
    elif log is None:
        tw = (OPEN, "row security fires, but no log path brings its lines to canary (jsonlog_dir, syslog or HTTP ingest)")
    elif broken:
        tw = (PARTLY, f"armed: {', '.join(armed) or 'none'}; broken: {', '.join(broken)}")
    else:
        tw = (COVERED, f"row security on {', '.join(armed)} reports every canary row returned, via {log}")
    out.append(Path("direct_read", "SELECT and COPY TO by ordinary roles", tw[0], tw[1], configured))
    if f.reachable:
        required = [s for s in f.server if s.required]
        st = (OPEN if required else PARTLY if f.server else COVERED,
              "; ".join(f"set {s.setting} = {s.value} (now {s.current}) in {s.where}" for s in f.server)
              or "every server setting detection relies on is as it must be")
        out.append(Path("server_settings", "Server settings detection relies on (log_*, pgaudit.*)", st[0], st[1],
                        configured))
    dump_why = ("pg_dump turns row security off and fails on an armed table; that error is an export event"
                if tw[0] != OPEN else tw[1])
    out.append(Path("dump_ordinary", "pg_dump by ordinary roles", tw[0], dump_why, configured))
    # privileged sessions
    privileged = sorted(f.snapshot.uncovered) if f.snapshot is not None else []
    if not f.audit_configured:
        pr = (OPEN, f"row security never binds {len(privileged)} role(s) ({', '.join(privileged[:8])}); "
                    "run `canary coverage audit` (pgaudit object audit)")
    elif f.audit_problems:
        pr = (OPEN, "object audit is configured but broken: " + ", ".join(f.audit_problems))
    elif log is None:
        pr = (OPEN, "object audit logs, but no log path brings its lines to canary")
    else:
        pr = (COVERED, f"pgaudit object audit on the canary tables speaks for the {len(privileged)} role(s) row security "
                       f"never binds ({', '.join(privileged[:8])}); privileged_reads = {cov.privileged_reads!r}")
    out.append(Path("privileged_read", "Reads, COPY and pg_dump by superusers, BYPASSRLS roles and roles that can become one",
                    pr[0], pr[1], f.audit_configured))
    # objects without row security
    views = [o for o in f.objects if o.kind == "view"]
    unaudited = [o.name for o in views if o.name not in f.audited]
    if not views:
        vw = (COVERED, "no view reads a canary table as a role row security does not bind")
    elif unaudited:
        vw = (OPEN, f"views that read as their privileged owner without object audit: {', '.join(unaudited)} "
                    "(`canary coverage audit` adds them)")
    else:
        vw = (COVERED, f"object audit on {', '.join(o.name for o in views)}: every read through them speaks")
    out.append(Path("views", "Views owned by privileged roles (no security_invoker)", vw[0], vw[1], f.audit_configured))
    funcs = [o for o in f.objects if o.kind == "function"]
    out.append(Path(
        "functions", "SECURITY DEFINER functions owned by privileged roles",
        OPEN if funcs else COVERED,
        ("pgaudit does not log statements inside SECURITY DEFINER functions, and row security does not bind their "
         "owner: " + ", ".join(f"{o.name} (owner {o.owner})" for o in funcs)) if funcs
        else "no SECURITY DEFINER function of a privileged owner mentions a canary table", False))
    mviews = [o for o in f.objects if o.kind == "materialized_view"]
    unaudited_m = [o.name for o in mviews if o.name not in f.audited]
    mv_note = (f"materialized views without object audit: {', '.join(unaudited_m)}; " if unaudited_m else
               f"object audit on materialized views {', '.join(o.name for o in mviews)}; " if mviews else "")
    sweep = f.sweep or {}
    last = _age_s(sweep.get("run_at"))
    if not cov.sweep:
        cp = (OPEN, mv_note + "the copy sweep is off (coverage.sweep): a table copied from a canary table "
                              "(CREATE TABLE AS, INSERT ... SELECT, another database) is not found")
    elif last is None or last > 2 * cov.sweep_interval + cov.sweep_max_seconds:
        cp = (OPEN, mv_note + "the copy sweep is configured but has not run " + (
            "yet" if last is None else f"for {last / 3600:.1f} h (interval {cov.sweep_interval:g} s)"))
    else:
        done = sweep.get("pass_completed_at")
        enrolled = f"; enrolled in the tripwire: {', '.join(f.copies)}" if f.copies else ""
        cp = (PARTLY, mv_note + f"the copy sweep last ran {last:.0f} s ago ({int(sweep.get('passes', 0))} full passes"
              + (f", last completed {done}" if done else ", the first still under way") + "): a copy is found and paged "
              "within one interval; reads of it are detected once it is enrolled (`canary coverage enroll`)" + enrolled)
    out.append(Path("copies", "Copies: tables made from canary tables, materialized views, other databases",
                    cp[0], cp[1], cov.sweep))
    # replication and standbys
    slots = [s for s in f.seen if s["kind"] == "slot"]
    pubs = [s for s in f.seen if s["kind"] == "publication" and s["details"].get("canary_tables")]
    if on and cov.checks:
        rp = (PARTLY if slots or pubs else COVERED,
              "replication commands are logged and the replication watch runs"
              + (f"; existing paths: {len(slots)} slot(s) ({', '.join(s['name'] for s in slots[:6])}), "
                 f"{len(pubs)} publication(s) of canary tables ({', '.join(p['name'] for p in pubs[:6])})" if slots or pubs else ""))
    elif on or cov.checks:
        rp = (PARTLY, "only " + ("replication commands are logged (coverage.checks is off: no replication watch)" if on
                                 else "the replication watch runs (log_replication_commands is off: no who / from where)"))
    else:
        rp = (OPEN, "log_replication_commands is off and coverage.checks is off")
    out.append(Path("replication", "Replication slots, logical decoding, publications and subscriptions", rp[0], rp[1], cov.checks))
    standbys = [s for s in f.seen if s["kind"] == "walsender" and s["details"].get("replays")]
    nodes = [n for n in cov.nodes if n.datastore == ds.name]
    unknown = [s for s in standbys if replication.known_node(config, ds.name, s["details"].get("client_addr")) is None]
    if not f.watched:
        sb = (OPEN if nodes else PARTLY, "standbys are not discovered (coverage.checks is off)"
              + (f"; configured nodes: {', '.join(n.name for n in nodes)}" if nodes else ""))
    elif unknown:
        sb = (OPEN, "standbys whose log nobody ingests: " + ", ".join(
            f"{s['details'].get('client_addr') or 'local'}/{s['details'].get('application_name') or '?'}" for s in unknown))
    else:
        sb = (COVERED, f"{len(standbys)} standby(s) seen, each with its log ingested" if standbys
              else "no standby streams from this primary")
    out.append(Path("standbys", "Reads on hot standbys", sb[0], sb[1], bool(nodes)))
    out.append(Path(
        "backups", "Backups: pg_basebackup, file-system snapshots, WAL archives",
        PARTLY if on else OPEN,
        ("pg_basebackup and WAL streaming are export events; " if on else "log_replication_commands is off; ")
        + "copies of the data directory, volume snapshots and WAL archives are outside PostgreSQL and not seen", False))
    files = bool(cov.watch_dirs or cov.buckets)
    out.append(Path(
        "export_files", "Exported files (CSV, JSON, SQL, Parquet) in watched directories and buckets",
        COVERED if files else OPEN,
        f"scanned every {cov.scan_interval:g}s: {len(cov.watch_dirs)} director(ies), {len(cov.buckets)} bucket(s)" if files
        else "no watch_dirs or buckets configured", files))
    # after the fact
    mail = bool(config.contact.mail_domains or config.seeding.email_domains or config.seeding.mailboxes) and (
        config.contact.smtp or config.contact.sendgrid_verification_key or config.contact.mailgun_signing_key
        or config.contact.ses_topics)
    phone = bool(config.seeding.phone_numbers) and bool(config.contact.twilio_auth_token or config.contact.vonage_signature_secret)
    claimed_contact = bool(config.contact.mail_domains or config.seeding.email_domains or config.seeding.phone_numbers)
    contact_status = COVERED if mail and phone else PARTLY if mail or phone else OPEN
    out.append(Path(
        "contact", "Stolen contact data used: mail, SMS or calls to a canary", contact_status,
        f"mail: {'alerts' if mail else 'no canary mail domain with an inbound path'}; "
        f"phone: {'alerts' if phone else 'no owned numbers with a signed webhook'}", claimed_contact))
    login = f.settings.get("log_connections") == "on"
    honeypots = config.honeypot.postgres.enabled or config.honeypot.http.enabled
    if f.credentials == 0:
        cr = (OPEN, "no credential canaries seeded in this datastore")
    elif login or honeypots:
        cr = (COVERED, ("log_connections reports a canary role's login; " if login else "")
              + ("honeypots report presented canary secrets" if honeypots else ""))
    else:
        cr = (OPEN, "credential canaries exist but log_connections is off and no honeypot runs")
    out.append(Path("credential_use", "Stolen credentials tried", cr[0], cr[1], f.credentials > 0))
    return out


async def coverage_report(config: Config, pool: asyncpg.Pool, *, datastore: str | None = None,
                          timeout: float = 15.0) -> dict[str, Any]:
    """The report document (JSON-able)."""
    stores: list[dict[str, Any]] = []
    inventory = await registry.inventory(pool)
    for ds in config.datastores:
        if datastore and ds.name != datastore:
            continue
        f = await _facts(config, pool, ds, timeout, inventory)
        paths = paths_of(config, ds, f)
        stores.append({
            "datastore": ds.name, "node": ds.node_name, "reachable": f.reachable, "error": f.error or None,
            "canaries": {"customers": f.customers, "credentials": f.credentials},
            "paths": [{**asdict(p), "open_claim": p.open_claim} for p in paths],
            "privileged_roles": dict(sorted((f.snapshot.uncovered if f.snapshot else {}).items())),
            "privileged_objects": [{"kind": o.kind, "name": o.name, "owner": o.owner, "why": o.why, "covered_by": o.cover}
                                   for o in f.objects],
            "replication": [{"kind": s["kind"], "name": s["name"], "first_seen": s["first_seen"].isoformat()}
                            for s in f.seen],
            "settings": [asdict(s) for s in f.server], "notes": list(f.notes),
        })
    return {"datastores": stores, "open_claims": sum(p["open_claim"] for s in stores for p in s["paths"])}


_MARK = {COVERED: "covered", PARTLY: "partly", OPEN: "**not covered**"}


def render_markdown(doc: dict[str, Any]) -> str:
    out = ["# canary coverage report", ""]
    for s in doc["datastores"]:
        out += [f"## {s['datastore']} (node {s['node']})", "",
                f"{s['canaries']['customers']} customer canaries, {s['canaries']['credentials']} credential canaries.", "",
                "| path | cover | why |", "|---|---|---|"]
        for p in s["paths"]:
            flag = " ⚠ claimed" if p["open_claim"] else ""
            out.append(f"| {p['title']} | {_MARK[p['status']]}{flag} | {_cell(p['why'])} |")
        if s.get("settings"):
            out += ["", "Server settings to set (a managed admin role cannot set them itself):", ""]
            out += [f"- {'required' if x['required'] else 'advised'}: `{x['setting']}` = {x['value']} (now {x['current']}) "
                    f"in {x['where']}: {x['why']}" for x in s["settings"]]
        if s.get("notes"):
            out += ["", *(f"Note: {n}" for n in s["notes"])]
        if s["privileged_objects"]:
            out += ["", "Objects that read canary tables without row security:", ""]
            out += [f"- {o['kind']} `{o['name']}` (owner {o['owner']}): {o['why']}; covered by: {o['covered_by']}"
                    for o in s["privileged_objects"]]
        out.append("")
    out.append(f"Open paths the configuration claims to cover: {doc['open_claims']}")
    return "\n".join(out) + "\n"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def summary(doc: dict[str, Any]) -> Sequence[tuple[str, str, str]]:
    """(datastore, path title, status) rows, for a short console listing."""
    return [(s["datastore"], p["title"], p["status"]) for s in doc["datastores"] for p in s["paths"]]
