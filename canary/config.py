"""Configuration: one TOML file, loaded and validated once into frozen pydantic models.

Every error names its key path (``datastores[0].dsn``). Unknown keys are errors, never silently
dropped. Secrets are :class:`Secret` values: given inline, as ``{ env = "NAME" }`` or as
``{ file = "/path" }``; their repr is masked. The master key is never read from this file.
Plug-in sections (sinks, routes) carry a ``type`` and are validated by the plug-in's own model at
load time, so a typo fails ``canary`` at start, not at 3 a.m. when the first page is due.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from canary.errors import ConfigError
from canary.plugins import validate_plugins
from canary.rules import RuleConfig
from canary.secret import Secret

ENV_CONFIG = "CANARY_CONFIG"
DEFAULT_CONFIG_PATHS = (Path("canary.toml"), Path("~/.config/canary/canary.toml"))


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class _PluginModel(BaseModel):
    """A section whose extra keys belong to a plug-in and are validated by it."""

    model_config = ConfigDict(frozen=True, extra="allow")


_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]{0,62}$")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


def parse_duration(value: object) -> float:
    """Seconds from ``30``, ``"250ms"``, ``"30s"``, ``"5m"``, ``"2h"``, ``"1d"``."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if value < 0:
            raise ValueError("must not be negative")
        return float(value)
    if isinstance(value, str):
        m = _DURATION.match(value)
        if m:
            return float(m.group(1)) * _UNITS[m.group(2)]
    raise ValueError("expected a duration such as 30, '250ms', '30s', '5m', '2h'")

# validators many models share: field_validator(<fields>, mode="before")(duration_option) and so on
def duration_option(cls: type, v: object) -> float:
    """A duration option ("500ms", "5m", seconds as a number) in seconds."""
    return parse_duration(v)


def positive_duration_option(cls: type, v: object) -> float:
    d = parse_duration(v)
    if d <= 0:
        raise ValueError("must be positive")
    return d


def network_list(cls: type, v: tuple[str, ...]) -> tuple[str, ...]:
    """CIDR networks (host bits allowed), each checked."""
    for net in v:
        ipaddress.ip_network(net, strict=False)
    return v



class CoreConfig(_Model):
    data_dir: Path = Path("~/.local/share/canary")
    node_name: str = Field(default_factory=lambda: os.uname().nodename)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["json", "console"] = "json"
    master_key_file: Path | None = None

    @field_validator("data_dir", "master_key_file")
    @classmethod
    def _expand(cls, v: Path | None) -> Path | None:
        return v.expanduser() if v is not None else None

    @property
    def key_file(self) -> Path:
        return self.master_key_file or (self.data_dir / "master.key")


class EmbeddedConfig(_Model):
    """The embedded PostgreSQL used when ``control.dsn`` is not set."""

    bin_dir: Path | None = None  # default: pgserver's bundled binaries
    port: int | None = Field(default=None, ge=1, le=65535)


class ControlConfig(_Model):
    dsn: Secret | None = None
    pool_min: int = Field(default=1, ge=1)
    pool_max: int = Field(default=10, ge=1, le=200)
    embedded: EmbeddedConfig = EmbeddedConfig()


class TableTarget(_Model):
    """A table that receives canary customer rows, or (with ``credential``) credential canaries:
    ``auto`` picks the format the table's existing secrets use."""

    table: str  # "schema.table" or "table" (schema public)
    count: int = Field(default=20, ge=1, le=1_000_000)
    locale: str | None = None  # default: the datastore's locale
    credential: Literal["auto", "aws_key", "github_token", "stripe_key", "jwt", "bearer", "pg_dsn"] | None = None
    column: str | None = Field(default=None, pattern=_IDENT.pattern)  # the secret column (default: inferred)
    #: ``backdated``: all canaries at once, placed between real rows with past dates (one transaction).
    #: ``trickle``: canaries arrive one by one over ``trickle_over`` like new sign-ups (own small
    #: transactions at times drawn from the table's sign-up hours, keys from the sequence, created now,
    #: later updates as real customers' rows get them), run by the listener's scheduler.
    mode: Literal["backdated", "trickle"] = "backdated"
    trickle_over: float = Field(default=14 * 86400.0, gt=0)
    #: AWS keys: by default they come from the AWS canary key pool (real IAM users, detected through
    #: CloudTrail); ``true`` writes derived fake keys instead, which exist nowhere in AWS and fire only
    #: when presented to canary's own honeypot
    honeypot_only: bool = False
    #: how the secret column keeps tokens: as presented (plain) or a hash of them; auto: the form most of its
    #: existing values have (64 / 128 hex digits, base64 of 32 bytes)
    stored_as: Literal["auto", "plain", "sha256_hex", "sha256_base64", "sha512_hex"] = "auto"

    @field_validator("trickle_over", mode="before")
    @classmethod
    def _over(cls, v: object) -> float:
        return parse_duration(v)

    @model_validator(mode="after")
    def _trickle_rows(self) -> TableTarget:
        if self.mode == "trickle" and self.credential is not None:
            raise ValueError("mode = \"trickle\" writes customer rows; credential canaries are placed backdated (leave mode out)")
        if self.stored_as not in ("auto", "plain") and self.credential in ("aws_key", "pg_dsn"):
            raise ValueError(f"stored_as = \"{self.stored_as}\": {self.credential} credentials are written as presented")
        return self

    @field_validator("table")
    @classmethod
    def _plain_name(cls, v: str) -> str:
        parts = v.split(".")
        if len(parts) > 2 or not all(_IDENT.match(p) for p in parts):
            raise ValueError(
                "must be a plain identifier 'table' or 'schema.table' (letters, digits, _ and $, "
                "at most 63 characters each)"
            )
        return v


#: PostgreSQL log formats canary reads (canary.postgres.formats.LogFormat)
LogFormatName = Literal["jsonlog", "stderr", "csvlog"]


def _log_dir_alias(data: object) -> object:
    """``jsonlog_dir`` is the old name of ``log_dir`` (a jsonlog directory): accepted, never both."""
    if not isinstance(data, Mapping) or "jsonlog_dir" not in data:
        return data
    out = dict(data)
    if out.get("log_dir") is not None:
        raise ValueError("give log_dir or jsonlog_dir (its old name), not both")
    if out.get("log_format", "jsonlog") != "jsonlog":
        raise ValueError(f"jsonlog_dir holds jsonlog; for log_format = {out['log_format']!r} name the directory log_dir")
    out["log_dir"] = out.pop("jsonlog_dir")
    return out


class DatastoreConfig(_Model):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")
    kind: Literal["postgres"] = "postgres"
    dsn: Secret
    node: str = ""  # node name reported in events; default: the datastore name
    #: the server's log directory, tailed by the listener (``jsonlog_dir``: the name it had when only
    #: jsonlog was read, still accepted); what it holds: ``log_format``, and for stderr ``log_line_prefix``
    log_dir: Path | None = None
    log_format: LogFormatName = "jsonlog"
    log_line_prefix: str = Field(default="%m [%p] ", max_length=1000)
    log_pattern: str = ""  # file names tailed in log_dir; default by format: *.json, *.log, *.csv
    locale: str = "en_US"
    #: names of canary's detection objects in the datastore: a private schema (no USAGE for PUBLIC),
    #: the touch function, and the policies on each table (default: ``<schema>_r`` / ``<schema>_p``)
    detection_schema: str = Field(default="rowsec", pattern=_IDENT.pattern)
    detection_function: str = Field(default="row_visible", pattern=_IDENT.pattern)
    detection_policy: str = Field(default="", pattern=r"^$|" + _IDENT.pattern)
    permissive_policy: str = Field(default="", pattern=r"^$|" + _IDENT.pattern)
    tables: tuple[TableTarget, ...] = ()
    #: where the server runs: "self" (postgresql.conf), "rds" / "aurora" (parameter groups), "cloudsql" (database
    #: flags), "azure" (server parameters); "auto" reads it from the provider's admin role (rds_superuser,
    #: cloudsqlsuperuser, azure_pg_admin). It only words the settings plan / verify ask for: what canary does
    #: follows the DSN role's own rights (canary.postgres.managed)
    provider: Literal["auto", "self", "rds", "aurora", "cloudsql", "azure"] = "auto"

    @model_validator(mode="before")
    @classmethod
    def _old_dir_name(cls, data: object) -> object:
        return _log_dir_alias(data)

    @property
    def node_name(self) -> str:
        return self.node or self.name

    @property
    def jsonlog_dir(self) -> Path | None:
        """The tailed log directory, whatever its format (the name readers used before ``log_dir``)."""
        return self.log_dir


class ListenerConfig(_Model):
    host: str = "127.0.0.1"
    port: int = Field(default=8088, ge=0, le=65535)
    #: how providers and people reach us: webhook signatures are computed over it, and every alert links to
    #: <public_url>/incidents/<id> when it is set
    public_url: str = ""
    shutdown_grace: float = 10.0
    jsonlog_poll: float = 0.1
    metrics_allow: tuple[str, ...] = ("127.0.0.0/8", "::1/128")
    reject_samples_per_minute: int = Field(default=60, ge=0, le=100_000)  # per source and reason; all are counted
    reject_retention: float = 7 * 86400.0  # stored samples of rejected input are deleted after this
    retention_interval: float = 3600.0
    #: a log source behind its input that has not advanced for this long is stalled (HEALTH, /healthz 503)
    stall_after: float = 60.0
    watch_interval: float = 5.0
    #: a request body (webhook, log ingest, CloudTrail) must arrive within this; a slower one is answered 408
    #: (aiohttp has no body timeout: a client trickling a body, or a body that never decodes in its
    #: Content-Encoding, would otherwise hold its handler until it hangs up)
    body_timeout: float = 30.0
    #: reverse proxies whose forwarding header names the client (canary/proxies.py); empty: the TCP peer is the client
    trusted_proxies: tuple[str, ...] = ()
    #: open connections one peer (an IPv4 address / IPv6 /64; trusted proxies exempt) may hold on the HTTP
    #: port; beyond, a new one is closed at once (canary/conncap.py). 0: no cap
    max_connections_per_peer: int = Field(default=128, ge=0, le=1_000_000)
    proxy_header: Literal["x-forwarded-for", "forwarded"] = "x-forwarded-for"  # the one header those proxies write
    #: who sees /healthz in detail (components, lag, counts); anyone else gets only {"status": ...}
    health_detail_allow: tuple[str, ...] = ("127.0.0.0/8", "::1/128")
    health_token: Secret | None = None  # or who presents it (Authorization: Bearer ...)
    #: several listeners on one control store: the once-per-cluster components (scheduled checks, heartbeat,
    #: sweep, retention) run only in the one holding this lease; renewed every third of it, taken over by
    #: another listener this long after its holder died
    leader_lease: float = Field(default=15.0, ge=1.0, le=3600.0)
    #: the console's session cookie is ``__Host-canary_session`` (Secure: browsers send it over HTTPS, and over
    #: plain http only to loopback, which Chromium and Firefox treat as secure); false only for a console on
    #: plain http at a non-loopback address: then it is ``canary_session`` without Secure (still HttpOnly,
    #: SameSite=Strict), which anyone on the path can read
    cookie_secure: bool = True

    _dur = field_validator("shutdown_grace", "jsonlog_poll", "reject_retention", "retention_interval", "stall_after",
                     "watch_interval", "body_timeout", "leader_lease", mode="before")(duration_option)

    _nets = field_validator("metrics_allow", "trusted_proxies", "health_detail_allow")(network_list)


class ApiConfig(_Model):
    """``[api]``: the REST API under ``/api/v1`` on the listener (canary/web). Callers present an API token
    (``canary token create``) as ``Authorization: Bearer cy_api_<id>_<secret>``."""

    enabled: bool = True
    token_expiry: float = 90 * 86400.0  # `canary token create` without --expires
    token_max_expiry: float = 366 * 86400.0  # no token lives longer than this
    #: failed authentications a peer (IPv4 address / IPv6 /64) may make per window before each further one is
    #: answered auth_fail_step seconds later than the last (at most auth_fail_max): guessing tokens is slow
    auth_fail_limit: int = Field(default=20, ge=1, le=100_000)
    auth_fail_window: float = 300.0
    auth_fail_step: float = 0.5
    auth_fail_max: float = 10.0
    page_max: int = Field(default=500, ge=1, le=10_000)  # most items one page may hold (?limit=)
    console: bool = True  # the console (server-rendered pages at /) beside the API
    #: a console session (signed in with a token) ends this long after sign-in (never after its token), or
    #: when unused for session_idle, or when its token is revoked
    session_max: float = 12 * 3600.0
    session_idle: float = 3600.0
    #: GET /api/v1/coverage (and the console's Coverage page) reads every datastore's catalog: its answer is
    #: kept this long per listener process and computed once at a time, so callers cannot load the datastores
    coverage_ttl: float = 60.0
    #: connect / query timeout per datastore while computing it (an unreachable one is reported, not waited on)
    coverage_timeout: float = 10.0
    #: a drill started through the API or console (POST /api/v1/drills) that runs longer than this is stopped
    #: and recorded as an error (its steps bound themselves; this bounds a run that hangs)
    drill_timeout: float = Field(default=3600.0, gt=0)

    _dur = field_validator("token_expiry", "token_max_expiry", "auth_fail_window", "auth_fail_step", "auth_fail_max",
                     "session_max", "session_idle", "coverage_ttl", "coverage_timeout", "drill_timeout", mode="before")(duration_option)

    @model_validator(mode="after")
    def _expiry(self) -> ApiConfig:
        if not 0 < self.token_expiry <= self.token_max_expiry:
            raise ValueError("token_expiry must be positive and at most token_max_expiry")
        if not 0 < self.session_idle <= self.session_max:
            raise ValueError("session_idle must be positive and at most session_max")
        if not 0 < self.coverage_ttl <= 86400:
            raise ValueError("coverage_ttl must be positive and at most 1d")
        if not 0 < self.coverage_timeout <= 300:
            raise ValueError("coverage_timeout must be positive and at most 5m")
        return self


class SinkConfig(_PluginModel):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")
    type: str
    drill_only: bool = False  # receives only drill alerts
    min_severity: Literal["info", "warning", "error", "critical"] = "info"


class AlertingConfig(_Model):
    group_window: float = 300.0  # events of one group within this window form one incident
    escalate_at: tuple[int, ...] = (10, 100, 1000, 10000)  # canary counts that re-page an incident
    retry_initial: float = 1.0
    retry_max: float = 300.0
    dead_letter_after: float = 86400.0  # seconds of failed attempts before an alert is dead-lettered
    sink_timeout: float = 10.0
    #: committed events held back from SIEM feeds this long by a transaction still running on the control
    #: store's server (the feed never passes one) raise a HEALTH event naming that transaction's session
    feed_held_after: float = 120.0
    workers: int = Field(default=4, ge=1, le=64)
    rules: tuple[RuleConfig, ...] = ()  # routing and suppression, first match wins (canary/rules.py)

    _dur = field_validator("group_window", "retry_initial", "retry_max", "dead_letter_after", "sink_timeout", mode="before")(duration_option)
    _held = field_validator("feed_held_after", mode="before")(positive_duration_option)


class KnownSenderRule(_Model):
    """Contacts that are expected (the company's own mail provider, call centre): recorded, not paged.
    ``senders``: addresses or ``@domain`` (subdomains included); ``callers``: E.164 numbers, a trailing
    ``*`` matches a prefix; ``networks``: sender IP networks."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")
    senders: tuple[str, ...] = ()
    callers: tuple[str, ...] = ()
    networks: tuple[str, ...] = ()

    _nets = field_validator("networks")(network_list)

    @model_validator(mode="after")
    def _not_empty(self) -> KnownSenderRule:
        if not (self.senders or self.callers or self.networks):
            raise ValueError("a known-sender rule needs senders, callers or networks")
        return self


DEFAULT_VOICE_TWIML = (
    '<?xml version="1.0" encoding="UTF-8"?><Response><Say>Please leave a message after the tone.</Say>'
    '<Record maxLength="120" playBeep="true"/></Response>'
)


class ContactConfig(_Model):
    """``[contact]``: canary mail domains, the SMTP server, inbound-mail and phone webhooks.
    A webhook is enabled when its secret (or SES topic allow-list) is set."""

    mail_domains: tuple[str, ...] = ()
    smtp: bool = False  # run the SMTP server
    smtp_host: str = "127.0.0.1"
    smtp_port: int = Field(default=2525, ge=0, le=65535)
    smtp_hostname: str = ""  # banner / Received name; default: node name
    max_message_size: int = Field(default=10 * 1024 * 1024, ge=1024, le=100 * 1024 * 1024)
    tls_cert: Path | None = None
    tls_key: Path | None = None
    require_starttls: bool = False
    proxy_protocol: bool = False
    proxy_timeout: float = 5.0
    #: the load balancers whose PROXY header is believed (required with proxy_protocol): a header from
    #: any other peer would let it name another client, dodge its tarpit and file its probes elsewhere
    proxy_from: tuple[str, ...] = ()
    dns_timeout: float = 5.0
    sendgrid_verification_key: str | None = None  # base64 DER ECDSA public key of the parse security policy
    sendgrid_basic_auth: Secret | None = None  # "user:password" embedded in the parse URL
    mailgun_signing_key: Secret | None = None
    ses_topics: tuple[str, ...] = ()  # SNS topic ARN allow-list
    ses_confirm_subscriptions: bool = True
    twilio_auth_token: Secret | None = None
    twilio_voice_twiml: str = DEFAULT_VOICE_TWIML
    vonage_signature_secret: Secret | None = None
    vonage_signature_method: Literal["md5hash", "md5", "sha1", "sha256", "sha512"] = "sha256"
    signature_max_age: float = 300.0  # timestamped signatures older than this are stale
    known_senders: tuple[KnownSenderRule, ...] = ()
    # SMTP probing (RCPT / VRFY / EXPN) per peer (IPv4 address, IPv6 /64): beyond `smtp_probe_limit`
    # commands per `smtp_probe_window`, each reply waits `smtp_tarpit_step` seconds more than the last,
    # at most `smtp_tarpit_max` (kept below the clients' usual 10 s command timeout); state is kept for
    # the `smtp_tarpit_peers` most recent peers.
    smtp_probe_limit: int = Field(default=20, ge=1, le=100_000)
    smtp_probe_window: float = 60.0
    smtp_tarpit_step: float = 0.25
    smtp_tarpit_max: float = 5.0
    smtp_tarpit_peers: int = Field(default=10_000, ge=16, le=1_000_000)
    #: open SMTP connections one peer (IPv4 address / IPv6 /64; proxy_from exempt) may hold: beyond, a new
    #: one is closed at once and counted. Sessions live 60 s per line, so without a cap one peer's idle
    #: connections would take every file descriptor of the listener (webhooks and ingest included)
    smtp_max_connections_per_peer: int = Field(default=32, ge=1, le=100_000)
    #: what the greeting says after the host name ("220 <smtp_hostname> <smtp_banner>"): an ordinary
    #: MX's words, never "canary" (a banner naming it tells every prober the domain is a trap)
    smtp_banner: str = Field(default="ESMTP", min_length=1, max_length=200)

    @field_validator("smtp_banner")
    @classmethod
    def _banner(cls, v: str) -> str:
        if not v.isprintable() or not v.isascii() or "canary" in v.lower():
            raise ValueError("must be printable ASCII on one line and must not say 'canary'")
        return v

    @field_validator("smtp_probe_window", "smtp_tarpit_step", "smtp_tarpit_max", mode="before")
    @classmethod
    def _tarpit_dur(cls, v: object) -> float:
        return parse_duration(v)

    @field_validator("smtp_probe_window")
    @classmethod
    def _probe_window(cls, v: float) -> float:
        if not 1.0 <= v <= 86_400.0:
            raise ValueError("must be between 1s and 1d")
        return v

    @field_validator("smtp_tarpit_max")
    @classmethod
    def _tarpit_max(cls, v: float) -> float:
        if v > 30.0:
            raise ValueError("must be at most 30s (the session times out after 60s of silence)")
        return v

    _dur = field_validator("proxy_timeout", "dns_timeout", "signature_max_age", mode="before")(duration_option)

    _proxy_nets = field_validator("proxy_from")(network_list)

    @field_validator("mail_domains")
    @classmethod
    def _domains(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(d.strip().lower().rstrip(".") for d in v)

    @field_validator("twilio_voice_twiml")
    @classmethod
    def _twiml(cls, v: str) -> str:
        import xml.etree.ElementTree as ET

        try:
            root = ET.fromstring(v)
        except ET.ParseError as exc:
            raise ValueError(f"not well-formed XML: {exc}") from None
        if root.tag != "Response":
            raise ValueError("TwiML must have a <Response> root element")
        return v

    @model_validator(mode="after")
    def _tls_pair(self) -> ContactConfig:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key must be given together")
        if self.require_starttls and self.tls_cert is None:
            raise ValueError("require_starttls needs tls_cert and tls_key")
        if self.smtp and not self.mail_domains:
            raise ValueError("the SMTP server needs at least one entry in mail_domains")
        if self.proxy_protocol and not self.proxy_from:
            raise ValueError("proxy_protocol needs proxy_from: the networks of the load balancers whose PROXY "
                             "header is believed")
        return self


class HttpHoneypotConfig(_Model):
    """``[honeypot.http]``: an internal-looking API on its own port that accepts Bearer, Basic,
    API-key header and query-string credentials and answers every request identically."""

    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = Field(default=8089, ge=0, le=65535)
    paths: tuple[str, ...] = ("/api/", "/v1/", "/v2/", "/internal/", "/graphql")  # 401 here, 404 elsewhere
    status: int = Field(default=401, ge=400, le=599)
    content_type: str = "application/json"
    body: str = '{"error":"invalid_token","error_description":"The access token is invalid or has expired","request_id":"{request_id}"}'
    not_found_body: str = '{"error":"not_found","request_id":"{request_id}"}'
    #: the answer to a request that cannot be parsed (a request line or header too long, too many headers,
    #: an unknown Transfer-Encoding, a bad request line or version): the imitated server's own error page.
    #: {status}: "400 Bad Request"; {title}: the page's title, the status but where the server names the
    #: refusal ("400 Request Header Or Cookie Too Large"); {detail}: ``error_detail`` with {text} the
    #: refusal's name, or nothing; {server}: the Server header. The defaults are nginx's, byte for byte
    error_body: str = ("<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n<center><h1>{status}</h1></center>"
                       "\r\n{detail}<hr><center>{server}</center>\r\n</body>\r\n</html>\r\n")
    error_detail: str = "<center>{text}</center>\r\n"
    error_content_type: str = "text/html"
    #: the imitated server's reason phrases (status line and page) where they differ from the standard's
    error_reasons: dict[int, str] = {414: "Request-URI Too Large", 413: "Request Entity Too Large"}
    headers: dict[str, str] = {"Server": "nginx", "WWW-Authenticate": 'Bearer realm="internal", error="invalid_token"'}
    api_key_headers: tuple[str, ...] = ("X-API-Key", "X-Auth-Token", "X-Access-Token", "Api-Key", "Private-Token")
    query_params: tuple[str, ...] = ("api_key", "apikey", "access_token", "token", "key")
    min_response_time: float = 0.05  # every answer takes at least this long (no timing oracle)
    max_connections: int = Field(default=256, ge=1, le=100_000)
    idle_timeout: float = 10.0  # a connection must complete a request within this (slow-loris)
    max_field_size: int = Field(default=8190, ge=256, le=65536)
    max_headers: int = Field(default=64, ge=8, le=1024)
    #: connections one peer (IPv4 address / IPv6 /64) may hold; beyond it (or max_connections) the
    #: connection idle the longest is closed to make room, so held connections cannot starve probes
    max_connections_per_peer: int = Field(default=16, ge=1, le=100_000)
    #: a HEALTH event per episode of shed / refused connections; an episode ends after this long without one
    pressure_quiet: float = 300.0
    #: paths that only check a token (who-am-I, introspection): a canary token here is a probe (ERROR), not USED
    probe_paths: tuple[str, ...] = ("/user", "/me", "/whoami", "/api/v1/me", "/api/v1/user", "/api/v1/whoami",
                                    "/v1/me", "/v2/me", "/api/auth.test", "/oauth/introspect", "/oauth/tokeninfo",
                                    "/introspect", "/tokeninfo", "/api/v1/auth/verify", "/v1/auth/verify")

    #: requests presenting a credential one peer may make per probe_window; beyond it each answer waits
    #: tarpit_step more (at most tarpit_max) and the flood is reported once per window
    probe_limit: int = Field(default=30, ge=1, le=100_000)
    probe_window: float = Field(default=60.0, ge=1.0, le=86_400.0)
    tarpit_step: float = Field(default=0.25, ge=0.0, le=30.0)
    tarpit_max: float = Field(default=5.0, ge=0.0, le=30.0)

    _dur = field_validator("min_response_time", "idle_timeout", "pressure_quiet", "probe_window", "tarpit_step", "tarpit_max",
                     mode="before")(duration_option)

    @field_validator("probe_paths")
    @classmethod
    def _probe_paths(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if any(not p.startswith("/") for p in v):
            raise ValueError("probe paths must start with '/'")
        return tuple(p.rstrip("/") or "/" for p in v)


class PgHoneypotConfig(_Model):
    """``[honeypot.postgres]``: the PostgreSQL wire-protocol honeypot that canary DSNs point at."""

    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = Field(default=6543, ge=0, le=65535)
    auth: Literal["scram-sha-256", "password"] = "scram-sha-256"
    max_connections: int = Field(default=64, ge=1, le=10_000)
    #: from the startup packet to the verdict. Both timeouts default to PostgreSQL's own
    #: authentication_timeout (1 min): a shorter one would tell the honeypot from a server to anyone who
    #: holds a connection open; held connections cannot starve probes anyway (they are shed, above)
    auth_timeout: float = 60.0
    alert_unknown_users: bool = True  # any login attempt here is suspicious (warning without a canary)
    #: time from connect to the startup packet
    startup_timeout: float = 60.0
    #: connections one peer (IPv4 address / IPv6 /64) may hold; beyond it (or max_connections) the
    #: connection idle the longest is closed to make room, so held connections cannot starve probes
    max_connections_per_peer: int = Field(default=8, ge=1, le=10_000)
    #: a HEALTH event per episode of shed / refused connections; an episode ends after this long without one
    pressure_quiet: float = 300.0

    _dur = field_validator("auth_timeout", "startup_timeout", "pressure_quiet", mode="before")(duration_option)


class HoneypotConfig(_Model):
    http: HttpHoneypotConfig = HttpHoneypotConfig()
    postgres: PgHoneypotConfig = PgHoneypotConfig()


class CloudTrailConfig(_Model):
    """``[credentials.cloudtrail]``: CloudTrail log files dropped in ``directory`` and EventBridge
    events POSTed to ``http_path`` (on the listener; guarded by ``api_key`` in ``api_key_header``)."""

    directory: Path | None = None
    poll: float = 5.0
    http_path: str = ""
    api_key: Secret | None = None
    api_key_header: str = "X-Canary-Api-Key"
    #: a trail sent to CloudWatch Logs, subscribed to an Amazon Data Firehose stream whose HTTP endpoint is
    #: <listener>/<firehose_path>; firehose_access_key is the stream's access key
    firehose_path: str = "/ingest/firehose/cloudtrail"
    firehose_access_key: Secret | None = None

    _dur = field_validator("poll", mode="before")(duration_option)

    @model_validator(mode="after")
    def _guarded(self) -> CloudTrailConfig:
        if self.http_path and not self.http_path.startswith("/"):
            raise ValueError("http_path must start with /")
        if self.http_path and self.api_key is None:
            raise ValueError("http_path needs api_key (EventBridge API destinations send it as a header)")
        if not self.firehose_path.startswith("/") or self.firehose_path == self.http_path:
            raise ValueError("firehose_path must start with / and differ from http_path")
        return self

    # the trail's bucket read directly (canary/credentials/cloudtrail_s3.py): ListObjectsV2 + GetObject
    s3_bucket: str = ""
    s3_prefix: str = ""  # the trail's S3 key prefix; "": keys start at AWSLogs/
    s3_accounts: tuple[str, ...] = ()  # "123456789012" or "o-<org id>/123456789012"; empty: listed
    s3_regions: tuple[str, ...] = ()  # empty: listed
    s3_poll: float = 60.0
    s3_endpoint_url: str | None = None  # S3 (and STS for s3_role_arn) elsewhere: tests, a proxy
    s3_profile: str | None = None
    s3_role_arn: str | None = None
    s3_external_id: Secret | None = None
    s3_lookback: float = 900.0  # re-list this far before the newest file read: late deliveries
    s3_max_objects: int = Field(default=500, ge=1)  # per poll
    s3_max_bytes: int = Field(default=512 * 1024 * 1024, ge=1)  # compressed, per poll

    @field_validator("s3_poll", "s3_lookback", mode="before")
    @classmethod
    def _s3_dur(cls, v: object) -> float:
        return parse_duration(v)

    @model_validator(mode="after")
    def _s3(self) -> CloudTrailConfig:
        if self.s3_bucket and not _S3_BUCKET.match(self.s3_bucket):
            raise ValueError(f"s3_bucket {self.s3_bucket!r} is not an S3 bucket name")
        for account in self.s3_accounts:
            if not _S3_ACCOUNT.match(account):
                raise ValueError(f"s3_accounts: {account!r} is neither an account id nor o-<org id>/<account id>")
        for region in self.s3_regions:
            if not _AWS_REGION.match(region):
                raise ValueError(f"s3_regions: {region!r} is not an AWS Region name")
        if self.s3_external_id is not None and not self.s3_role_arn:
            raise ValueError("s3_external_id needs s3_role_arn")
        if self.s3_poll <= 0 or self.s3_lookback > 86400:
            raise ValueError("s3_poll must be positive and s3_lookback at most 1d")
        return self


_S3_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_S3_ACCOUNT = re.compile(r"^(o-[a-z0-9]{10,32}/)?[0-9]{12}$")
_AWS_REGION = re.compile(r"^[a-z]{2,4}(-[a-z]+)+-[0-9]{1,2}$")


_IAM_PATH = re.compile(r"^/([\x21-\x7e]{1,510}/)?$")


class AwsIamConfig(_Model):
    """``[credentials.aws]``: how ``canary credential provision aws`` reaches IAM. Credentials come from
    boto3's normal chain (environment, shared files, instance role) or ``profile`` (which may name a
    ``role_arn`` to assume). New users get ``path`` and names drawn from ``name_pattern`` (``{word}``:
    a service-ish word, ``{n}``: a digit); ``tag`` (``key=value``) only if set."""

    endpoint_url: str | None = None  # a non-AWS IAM endpoint (tests, a proxy)
    profile: str | None = None
    region: str = "us-east-1"
    path: str = "/"
    name_pattern: str = "svc-{word}-{word}"
    tag: str | None = None
    timeout: float = Field(default=30.0, gt=0)

    _dur = field_validator("timeout", mode="before")(duration_option)

    @field_validator("path")
    @classmethod
    def _path(cls, v: str) -> str:
        if not _IAM_PATH.match(v):
            raise ValueError("an IAM path starts and ends with / (e.g. \"/\" or \"/service/\")")
        return v

    @field_validator("name_pattern")
    @classmethod
    def _pattern(cls, v: str) -> str:
        bare = v.replace("{word}", "").replace("{n}", "")
        if "{word}" not in v or not re.fullmatch(r"[\w+=,.@-]*", bare) or len(v.replace("{word}", "x" * 12)) > 64:
            raise ValueError("needs {word} and only IAM user-name characters (letters, digits, _+=,.@-), at most 64 long")
        return v

    @field_validator("tag")
    @classmethod
    def _tag(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"[\w.:/=+@ -]{1,128}=[\w.:/=+@ -]{0,256}", v):
            raise ValueError("must be key=value")
        return v


class GatewayConfig(_Model):
    """``[credentials.gateway]``: the gateway check (canary/credentials/gateway.py), on its own port: API
    gateways that already ask an external service on every request (NGINX ``auth_request``, Envoy
    ``ext_authz`` HTTP service) ask canary too. Every request is answered 200 (allow) from memory;
    canary tokens (of active and retired canaries) found in the carriers below are committed afterwards
    as USED events with the gateway's facts. Only requests from ``gateways`` are believed."""

    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = Field(default=8090, ge=0, le=65535)
    #: NGINX: the auth location proxies to this path (original URI / method in X-Original-URI / -Method);
    #: Envoy: the ext_authz ``path_prefix`` (Envoy appends the original path and query to it)
    path: str = "/gateway/check"
    #: networks of the gateways allowed to call the check; anyone else gets the same 200, is counted, never believed
    gateways: tuple[str, ...] = ("127.0.0.0/8", "::1/128")
    #: where the gateway names its client: X-Forwarded-For (read right to left through ``gateways``) or X-Real-IP
    client_header: Literal["x-forwarded-for", "x-real-ip"] = "x-forwarded-for"
    #: Authorization schemes inspected: Bearer / token / a bare value, Basic (user and password), AWS (the access
    #: key id of a SigV4 / SigV2 signature, and of a presigned URL's X-Amz-Credential / AWSAccessKeyId)
    authorization: tuple[Literal["bearer", "basic", "aws"], ...] = ("bearer", "basic", "aws")
    headers: tuple[str, ...] = ("X-API-Key", "X-Auth-Token", "X-Access-Token", "Api-Key", "Private-Token")
    cookies: tuple[str, ...] = ("access_token", "auth_token", "token")
    query_params: tuple[str, ...] = ("api_key", "apikey", "access_token", "token", "key")
    #: per request at most this many candidate values are looked up, each at most max_value_length characters
    max_candidates: int = Field(default=16, ge=1, le=64)
    max_value_length: int = Field(default=4096, ge=16, le=16384)
    #: the canary tokens kept in memory are read again this often (a new canary is recognised after at most this)
    refresh_interval: float = 30.0
    #: hits waiting to be committed; beyond it a hit is dropped (counted, and one HEALTH event)
    max_pending: int = Field(default=10_000, ge=1, le=1_000_000)
    #: while the check runs it marks itself alive in the control store this often; at start, a mark older than
    #: gap_after means traffic passed unchecked (one HEALTH event naming the gap)
    mark_interval: float = 5.0
    gap_after: float = 15.0

    _dur = field_validator("refresh_interval", "mark_interval", "gap_after", mode="before")(positive_duration_option)

    _nets = field_validator("gateways")(network_list)

    @model_validator(mode="after")
    def _sane(self) -> GatewayConfig:
        if not self.path.startswith("/") or self.path != self.path.rstrip("/") or "?" in self.path:
            raise ValueError("path must start with / and end without / or ?")
        if self.gap_after <= self.mark_interval:
            raise ValueError("gap_after must be longer than mark_interval (a mark is up to mark_interval old)")
        return self


class CredentialsConfig(_Model):
    cloudtrail: CloudTrailConfig = CloudTrailConfig()
    aws: AwsIamConfig = AwsIamConfig()
    gateway: GatewayConfig = GatewayConfig()


_E164 = re.compile(r"^\+[1-9]\d{6,14}$")
_MAILBOX = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")


class Mailbox(_Model):
    """An owned free-mail mailbox (``address``, the canary's e-mail value) whose provider forwards
    mail to ``forward_to`` at a canary mail domain (where the contact sources receive it)."""

    address: str
    forward_to: str

    @field_validator("address", "forward_to")
    @classmethod
    def _addr(cls, v: str) -> str:
        local, _, domain = v.strip().rpartition("@")
        out = f"{local}@{domain.lower().rstrip('.')}"
        if not _MAILBOX.match(out):
            raise ValueError(f"{v!r} is not an e-mail address")
        return out


class SeedingConfig(_Model):
    """``[seeding]``: where canary customers' contact points come from, and seeding limits.
    ``email_domains`` (default: ``contact.mail_domains``) must deliver to canary; ``phone_numbers`` are
    E.164 numbers we own, single (``"+15550100001"``) or ranges (``"+15550100000-+15550100099"``)."""

    email_domains: tuple[str, ...] = ()
    mailboxes: tuple[Mailbox, ...] = ()  # owned free-mail mailboxes forwarding to us; used before email_domains
    phone_numbers: tuple[str, ...] = ()
    lock_timeout: float = 5.0
    follow_foreign_keys: bool = True  # give canary customers plausible child rows (orders, addresses)
    max_children: int = Field(default=20, ge=0, le=1000)  # per canary and child table
    trickle_interval: float = Field(default=300.0, gt=0)  # how often the scheduler writes due trickle canaries

    _dur = field_validator("lock_timeout", "trickle_interval", mode="before")(duration_option)

    @field_validator("email_domains")
    @classmethod
    def _domains(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        out = tuple(d.strip().lower().rstrip(".") for d in v)
        for d in out:
            if not re.fullmatch(r"(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}", d):
                raise ValueError(f"{d!r} is not a domain name")
        return out

    @field_validator("phone_numbers")
    @classmethod
    def _phones(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for item in v:
            lo, _, hi = item.replace(" ", "").partition("-+")
            hi = "+" + hi if hi else lo
            if not (_E164.match(lo) and _E164.match(hi)) or len(lo) != len(hi) or int(hi[1:]) < int(lo[1:]):
                raise ValueError(f"{item!r} is not an E.164 number or an ascending range '+first-+last'")
            if int(hi[1:]) - int(lo[1:]) >= 100_000:
                raise ValueError(f"{item!r}: a range may hold at most 100000 numbers")
        return v

    def phone_pool(self) -> tuple[str, ...]:
        """Every owned number, ranges expanded, in E.164 form."""
        out: list[str] = []
        for item in self.phone_numbers:
            lo, _, hi = item.replace(" ", "").partition("-+")
            first, last = int(lo[1:]), int(hi or lo[1:])
            out.extend(f"+{n}" for n in range(first, last + 1))
        return tuple(dict.fromkeys(out))


class NodeConfig(_Model):
    """A datastore node (replica, other primary) whose log reaches canary by file, syslog or HTTP.
    ``name`` is the node name in events (syslog HOSTNAME / HTTP ``node`` must equal it)."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
    datastore: str
    log_dir: Path | None = None  # tail this node's own log directory (``jsonlog_dir`` still accepted)
    #: the format of this node's log, in log_dir and at POST /ingest/pglog?node=<name> (and its prefix)
    log_format: LogFormatName = "jsonlog"
    log_line_prefix: str = Field(default="%m [%p] ", max_length=1000)
    log_pattern: str = ""
    dsn: Secret | None = None  # for the heartbeat on this node (a standby is read-only: DO + RAISE LOG works)
    #: the addresses this node replicates from the primary with (CIDRs): its WAL sender is expected,
    #: and a standby seen on the primary from here has its log ingested
    replication_from: tuple[str, ...] = ()

    _nets = field_validator("replication_from")(network_list)

    @model_validator(mode="before")
    @classmethod
    def _old_dir_name(cls, data: object) -> object:
        return _log_dir_alias(data)

    @property
    def jsonlog_dir(self) -> Path | None:
        """The tailed log directory, whatever its format (the name readers used before ``log_dir``)."""
        return self.log_dir


class BucketConfig(_Model):
    """An S3-compatible bucket where exports land (ListObjectsV2 + GetObject, signed with SigV4)."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")
    endpoint: str  # e.g. "https://s3.eu-west-1.amazonaws.com" or a MinIO URL
    bucket: str
    prefix: str = ""
    region: str = "us-east-1"
    access_key_id: Secret
    secret_access_key: Secret


class CloudLogTarget(_Model):
    """Where the lines of one cloud log stream come from: the datastore and node its events name, and
    how that server writes its log (``format``: a :func:`canary.postgres.formats.record_decoder` name;
    ``log_line_prefix``: the server's setting, for the formats that use it)."""

    datastore: str
    node: str = ""  # default: the datastore's node name
    format: str = Field(default="stderr", pattern=r"^[a-z][a-z0-9_]{0,31}$")
    log_line_prefix: str = Field(default="", max_length=1000)


def _https_or_loopback(url: str) -> bool:
    """Keys that authenticate log deliveries are fetched over TLS, or from this host."""
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return True
    if parts.scheme != "http" or not parts.hostname:
        return False
    try:
        return ipaddress.ip_address(parts.hostname).is_loopback
    except ValueError:
        return parts.hostname == "localhost"


class FirehoseStream(CloudLogTarget):
    """``[[coverage.firehose.streams]]``: a CloudWatch Logs group (exact name, or a pattern with ``*``
    and ``?``) whose subscription filter feeds the Firehose stream, e.g. ``/aws/rds/instance/shop-db/postgresql``."""

    log_group: str = Field(min_length=1, max_length=512)


class FirehoseConfig(_Model):
    """``[coverage.firehose]``: the Amazon Data Firehose HTTP endpoint destination (CloudWatch Logs of
    RDS / Aurora -> subscription filter -> Firehose -> POST ``path``), guarded by ``access_key``
    (the stream's configured access key, sent as ``X-Amz-Firehose-Access-Key``)."""

    path: str = "/ingest/firehose"
    access_key: Secret | None = None  # enables the endpoint
    #: Firehose's own ceiling is 64 MiB before compression; it drops a batch answered 413 for good
    max_body: int = Field(default=64 * 1024 * 1024, ge=1024, le=1024 * 1024 * 1024)
    streams: tuple[FirehoseStream, ...] = ()

    @model_validator(mode="after")
    def _guarded(self) -> FirehoseConfig:
        if not self.path.startswith("/"):
            raise ValueError("path must start with /")
        if self.streams and self.access_key is None:
            raise ValueError("streams need access_key (the Firehose stream's HTTP endpoint access key)")
        return self


class PubSubDatabase(CloudLogTarget):
    """``[[coverage.pubsub.databases]]``: a Cloud SQL instance by its ``resource.labels.database_id``
    (``project:instance``). Cloud SQL writes its server log as stderr lines with its own prefix."""

    database_id: str = Field(pattern=r"^[^:\s]{1,128}:[^:\s]{1,128}$")
    log_line_prefix: str = Field(default="%m [%p]: [%l-1] db=%d,user=%u ", max_length=1000)


class PubSubConfig(_Model):
    """``[coverage.pubsub]``: a Pub/Sub push subscription's endpoint (Cloud SQL -> Cloud Logging sink
    -> Pub/Sub topic -> push to ``path``), authenticated by the OIDC token Pub/Sub signs: RS256 under
    the keys of ``jwks_url`` (or ``jwks_file``), issued by ``issuer`` for ``audience`` (and, when set,
    for ``service_account``, with ``email_verified``)."""

    path: str = "/ingest/pubsub"
    audience: str = ""  # the push subscription's OIDC audience; enables the endpoint
    issuer: str = "https://accounts.google.com"
    service_account: str = ""  # the push subscription's service account e-mail (the token's email claim)
    jwks_url: str = "https://www.googleapis.com/oauth2/v3/certs"
    jwks_file: Path | None = None  # keys read from a file instead of jwks_url
    jwks_max_age: float = 3600.0  # keys are fetched again after this
    jwks_min_interval: float = 30.0  # at most one fetch per interval for tokens naming an unknown key
    leeway: int = Field(default=60, ge=0, le=600)  # seconds of clock skew allowed on exp / iat / nbf
    #: a Pub/Sub message is at most 10 MB (base64 in JSON: about 13.4 MB)
    max_body: int = Field(default=16 * 1024 * 1024, ge=1024, le=1024 * 1024 * 1024)
    databases: tuple[PubSubDatabase, ...] = ()

    _dur = field_validator("jwks_max_age", "jwks_min_interval", mode="before")(duration_option)

    @field_validator("jwks_file")
    @classmethod
    def _expand(cls, v: Path | None) -> Path | None:
        return v.expanduser() if v is not None else None

    @model_validator(mode="after")
    def _guarded(self) -> PubSubConfig:
        if not self.path.startswith("/"):
            raise ValueError("path must start with /")
        if self.databases and not self.audience:
            raise ValueError("databases need audience (the push subscription's OIDC token audience)")
        if self.audience and self.jwks_file is None and not _https_or_loopback(self.jwks_url):
            raise ValueError("jwks_url must be https:// (http:// only to a loopback address), or give jwks_file")
        return self


class LogStagingConfig(_Model):
    """``[coverage.log_staging]``: stderr lines of cloud log deliveries (Firehose, Pub/Sub) that may
    belong to an unfinished entry wait in the control store (:mod:`canary.postgres.staging`). An entry
    with no line for ``quiet`` (``firehose_quiet`` for Firehose streams) is processed as it stands (an
    entry that ends with its STATEMENT line, as canary's read lines do, or is followed by the next one,
    needs no wait); nothing waits longer than ``max_age``. At most
    ``stream_lines`` lines wait per stream and ``max_lines`` in all (the oldest beyond are dropped,
    counted, and raise a HEALTH event); processed lines are remembered for ``remember`` so that a
    redelivery is a no-op."""

    quiet: float = 10.0
    #: the quiet of Firehose streams (RDS: no %l, so lines are grouped in stream order): Firehose holds
    #: lines up to its buffering interval (60 s by default, up to 900 s), so the rest of an entry cut at
    #: the end of one delivery comes with the next; set it above the stream's buffering interval
    firehose_quiet: float = 120.0
    max_age: float = 300.0
    stream_lines: int = Field(default=5000, ge=10, le=1_000_000)
    max_lines: int = Field(default=50_000, ge=10, le=10_000_000)
    remember: float = 600.0

    _dur = field_validator("quiet", "firehose_quiet", "max_age", "remember", mode="before")(positive_duration_option)

    @model_validator(mode="after")
    def _ordered(self) -> LogStagingConfig:
        if self.max_age < max(self.quiet, self.firehose_quiet):
            raise ValueError("max_age must be at least quiet and firehose_quiet")
        if self.max_lines < self.stream_lines:
            raise ValueError("max_lines must be at least stream_lines")
        return self


class CoverageConfig(_Model):
    """``[coverage]``: replicas and other log paths, exported-file scanning, scheduled checks, the copy
    sweep."""

    nodes: tuple[NodeConfig, ...] = ()
    checks: bool = False  # scheduled checks: canaries + detection intact, heartbeat (dead man's switch), webhooks
    syslog_host: str = "127.0.0.1"
    syslog_udp_port: int | None = Field(default=None, ge=0, le=65535)
    syslog_tcp_port: int | None = Field(default=None, ge=0, le=65535)
    syslog_allow: tuple[str, ...] = ("127.0.0.0/8", "::1/128")
    ingest_token: Secret | None = None  # enables POST /ingest/jsonlog (Authorization: Bearer ...)
    ingest_max_body: int = Field(default=16 * 1024 * 1024, ge=1024, le=1024 * 1024 * 1024)
    watch_dirs: tuple[Path, ...] = ()
    buckets: tuple[BucketConfig, ...] = ()
    scan_interval: float = 30.0
    scan_max_bytes: int = Field(default=64 * 1024**3, ge=1)
    check_interval: float = 60.0  # canaries present/unmodified, detection objects intact
    heartbeat_interval: float = 60.0
    heartbeat_timeout: float = 30.0  # a heartbeat must be ingested within this bound (dead man's switch)
    pgaudit_role: str = Field(default="canary_auditor", pattern=_IDENT.pattern)
    #: object-audit lines of sessions row security cannot cover (superusers, BYPASSRLS, ...): "all"
    #: reads and exports speak, or only "exports" (whole tables, COPY, dumps); other sessions' lines
    #: are always left to the tripwire
    privileged_reads: Literal["all", "exports"] = "all"
    webhook_urls: tuple[str, ...] = ()  # our mail/phone webhook URLs, checked reachable
    webhook_timeout: float = 10.0
    #: the copy sweep (canary/health/sweep.py): canary e-mails / phones copied into other tables,
    #: materialized views and databases of each datastore, within a budget per datastore and run
    sweep: bool = False
    sweep_interval: float = 3600.0
    sweep_max_seconds: float = 60.0
    sweep_max_bytes: int = Field(default=2 * 1024**3, ge=8192)  # buffer pages the sweep may touch, in bytes
    sweep_blocks: int = Field(default=1024, ge=1, le=131072)  # heap blocks read per query (8 MiB at 8 KiB pages)
    sweep_max_bytes_per_second: int = Field(default=64 * 1024**2, ge=0)  # I/O rate cap; 0: none
    firehose: FirehoseConfig = FirehoseConfig()  # Amazon RDS / Aurora logs via CloudWatch Logs -> Firehose
    pubsub: PubSubConfig = PubSubConfig()  # Cloud SQL logs via Cloud Logging -> Pub/Sub push
    log_staging: LogStagingConfig = LogStagingConfig()  # split stderr entries of both, assembled in the store

    _dur = field_validator("scan_interval", "check_interval", "heartbeat_interval", "heartbeat_timeout", "webhook_timeout",
                     "sweep_interval", "sweep_max_seconds", mode="before")(positive_duration_option)

    _nets = field_validator("syslog_allow")(network_list)

    @field_validator("watch_dirs")
    @classmethod
    def _expand(cls, v: tuple[Path, ...]) -> tuple[Path, ...]:
        return tuple(p.expanduser() for p in v)


#: the networks whose addresses are ours (enrichment marks them internal and skips geo lookups): RFC 1918,
#: loopback, link-local (IPv4 169.254/16, IPv6 fe80::/10), RFC 6598 shared space (carrier NAT, also VPN
#: overlays such as Tailscale), IPv6 unique local (fc00::/7) and loopback
DEFAULT_INTERNAL_NETWORKS = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "127.0.0.0/8", "169.254.0.0/16",
                             "100.64.0.0/10", "::1/128", "fe80::/10", "fc00::/7")


def split_server(server: str) -> tuple[str, int]:
    """A DNS server ``"10.0.0.2"``, ``"10.0.0.2:5353"``, ``"::1"`` or ``"[::1]:5353"`` -> (address, port);
    ValueError for anything else."""
    host, port = server, 53
    if server.startswith("["):
        host, _, rest = server[1:].partition("]")
        if rest:
            if not rest.startswith(":") or not rest[1:].isdigit():
                raise ValueError(f"not a DNS server address: {server!r}")
            port = int(rest[1:])
    elif server.count(":") == 1:
        host, _, text = server.partition(":")
        if not text.isdigit():
            raise ValueError(f"not a DNS server address: {server!r}")
        port = int(text)
    ipaddress.ip_address(host)
    if not 0 < port < 65536:
        raise ValueError(f"port out of range in {server!r}")
    return host, port


class EnrichmentConfig(_Model):
    """``[enrichment]``: what alerts and SIEM events say about a client address (canary/enrich.py)."""

    #: a MaxMind City or Country database (GeoLite2-City.mmdb, GeoIP2-City.mmdb, ...); unset: no geolocation
    city_db: Path | None = None
    #: a MaxMind ASN or ISP database (GeoLite2-ASN.mmdb, GeoIP2-ISP.mmdb); unset: no autonomous system
    asn_db: Path | None = None
    #: reverse DNS (PTR, shown only when forward-confirmed) through the system's resolvers or rdns_nameservers,
    #: for addresses in internal_networks (their zones are the company's)
    rdns: bool = True
    #: also for other addresses. Off by default: the PTR query reaches the DNS server of whoever holds the
    #: address's reverse zone, and one arriving just after they touched data tells them it was a canary
    rdns_external: bool = False
    #: a lookup (PTR and its forward check) taking longer is abandoned: an alert waits at most this long for it
    rdns_timeout: float = 0.5
    rdns_nameservers: tuple[str, ...] = ()  # "10.0.0.2", "10.0.0.2:5353", "[::1]:53"; empty: /etc/resolv.conf
    internal_networks: tuple[str, ...] = DEFAULT_INTERNAL_NETWORKS
    cache_size: int = Field(default=4096, ge=1, le=1_000_000)  # addresses remembered (least recently used go)
    cache_ttl: float = 3600.0

    @field_validator("city_db", "asn_db")
    @classmethod
    def _db(cls, v: Path | None) -> Path | None:
        if v is None:
            return None
        v = v.expanduser()
        if not v.is_file():
            raise ValueError(f"database file {v} does not exist")
        return v

    _dur = field_validator("rdns_timeout", "cache_ttl", mode="before")(duration_option)

    @field_validator("rdns_nameservers")
    @classmethod
    def _servers(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for server in v:
            split_server(server)
        return v

    _nets = field_validator("internal_networks")(network_list)

    @model_validator(mode="after")
    def _bounds(self) -> EnrichmentConfig:
        if not 0 < self.rdns_timeout <= 10:
            raise ValueError("rdns_timeout must be positive and at most 10s")
        if not 0 < self.cache_ttl <= 7 * 86400:
            raise ValueError("cache_ttl must be positive and at most 7d")
        return self


class Config(_Model):
    canary: CoreConfig = CoreConfig()
    control: ControlConfig = ControlConfig()
    listener: ListenerConfig = ListenerConfig()
    alerting: AlertingConfig = AlertingConfig()
    honeypot: HoneypotConfig = HoneypotConfig()
    credentials: CredentialsConfig = CredentialsConfig()
    contact: ContactConfig = ContactConfig()
    coverage: CoverageConfig = CoverageConfig()
    seeding: SeedingConfig = SeedingConfig()
    datastores: tuple[DatastoreConfig, ...] = ()
    sinks: tuple[SinkConfig, ...] = ()
    api: ApiConfig = ApiConfig()
    enrichment: EnrichmentConfig = EnrichmentConfig()
    source_path: Path | None = None

    @model_validator(mode="after")
    def _rule_sinks(self) -> Config:
        names = {s.name for s in self.sinks}
        for i, rule in enumerate(self.alerting.rules):
            unknown = [s for s in rule.sinks if s not in names]
            if unknown:
                raise ValueError(f"alerting.rules[{i}].sinks: no sink named {', '.join(map(repr, unknown))}")
        return self

    @model_validator(mode="after")
    def _unique_names(self) -> Config:
        sections: tuple[tuple[str, tuple[str, ...]], ...] = (
            ("datastores", tuple(d.name for d in self.datastores)), ("sinks", tuple(s.name for s in self.sinks)))
        for section, names_ in sections:
            seen: set[str] = set()
            for i, name in enumerate(names_):
                if name in seen:
                    raise ValueError(f"{section}[{i}].name: duplicate name {name!r}")
                seen.add(name)
        names = {d.name for d in self.datastores}
        nodes = {d.node_name for d in self.datastores}
        for i, node in enumerate(self.coverage.nodes):
            if node.datastore not in names:
                raise ValueError(f"coverage.nodes[{i}].datastore: no datastore named {node.datastore!r}")
            if node.name in nodes:
                raise ValueError(f"coverage.nodes[{i}].name: duplicate node name {node.name!r}")
            nodes.add(node.name)
        return self

    @model_validator(mode="after")
    def _cloud_log_targets(self) -> Config:
        names = {d.name for d in self.datastores}
        targets: list[tuple[str, CloudLogTarget]] = [
            *((f"coverage.firehose.streams[{i}]", t) for i, t in enumerate(self.coverage.firehose.streams)),
            *((f"coverage.pubsub.databases[{i}]", t) for i, t in enumerate(self.coverage.pubsub.databases))]
        for where, target in targets:
            if target.datastore not in names:
                raise ValueError(f"{where}.datastore: no datastore named {target.datastore!r}")
        return self

    def datastore(self, name: str) -> DatastoreConfig:
        for ds in self.datastores:
            if ds.name == name:
                return ds
        raise ConfigError("datastores", f"no datastore named {name!r}")


def _loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def from_mapping(data: Mapping[str, Any], source_path: Path | None = None) -> Config:
    """Validate a parsed configuration; raise one :class:`ConfigError` listing every problem."""
    try:
        cfg = Config.model_validate({**data, "source_path": source_path})
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            msg = str(err["msg"]).removeprefix("Value error, ")
            key = _loc(err["loc"])
            if err["type"] == "extra_forbidden":
                msg = "unknown key"
            problems.append((key, msg))
        first_key = problems[0][0]
        text = "; ".join(f"{k}: {m}" if k else m for k, m in problems)
        raise ConfigError(first_key, f"invalid configuration: {text}" if len(problems) > 1 else problems[0][1]) from None
    validate_plugins(cfg)
    return cfg


def load(path: Path | str | None = None) -> Config:
    """Load the configuration from ``path``, ``$CANARY_CONFIG`` or the default locations.

    With no file anywhere, the defaults apply (embedded control store, no datastores).
    """
    candidates = [Path(path)] if path else ([Path(os.environ[ENV_CONFIG])] if os.environ.get(ENV_CONFIG) else [])
    explicit = bool(candidates)
    if not explicit:
        candidates = [p.expanduser() for p in DEFAULT_CONFIG_PATHS]
    for candidate in candidates:
        candidate = candidate.expanduser()
        if not candidate.exists():
            if explicit:
                raise ConfigError("", f"configuration file {candidate} does not exist")
            continue
        try:
            data = tomllib.loads(candidate.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError("", f"{candidate}: not valid TOML: {exc}") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError("", f"cannot read {candidate}: {exc}") from None
        return from_mapping(data, candidate.resolve())
    return from_mapping({})
