"""Syslog per RFC 5424 over UDP (RFC 5426), TCP (RFC 6587 octet counting) or TLS (RFC 5425), with
the message either as plain text plus structured data, or as ArcSight CEF.

Frame: ``<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID [SD-ELEMENT] MSG``. Structured-data
values escape ``"``, ``\\`` and ``]``. Over TCP and TLS each message is sent as ``MSG-LEN SP MSG``
so a newline inside the message cannot split it. UDP datagrams are capped (``udp_max_bytes``).

CEF: ``CEF:0|Vendor|Product|Version|SignatureID|Name|Severity|Extension``; header fields escape
``\\`` and ``|``, extension values escape ``\\`` and ``=`` and encode line breaks as ``\\n``/``\\r``,
so attacker-supplied text (a query, a user name) cannot forge fields. What is known about the client
address goes in ``shost`` (sourceHostName: the forward-confirmed reverse-DNS name) and ``cs6`` (label
``sourceContext``: country, city, AS); the ATT&CK technique ids in ``cs5`` (label ``attackTechniques``,
comma-separated) -- the CEF dictionary has no ATT&CK key, and cs1-cs6 with their ``csNLabel`` are its
device custom strings. RFC 5424 structured data carries the ids as ``attack="T1078 T1552"``.

A TCP/TLS connection is kept open between alerts and re-opened when the receiver closed it.
"""

from __future__ import annotations

import asyncio
import builtins
import datetime as dt
import os
import re
import ssl
from pathlib import Path
from typing import Any, ClassVar, Literal

import aiohttp
from pydantic import BaseModel, ConfigDict, Field, field_validator

from canary.alerts import Alert
from canary.errors import DeliveryError
from canary.events import Severity
from canary.sinks._context import from_line, technique_ids
from canary.sinks._tls import client_tls_context

FACILITIES = {
    "kern": 0, "user": 1, "mail": 2, "daemon": 3, "auth": 4, "syslog": 5, "lpr": 6, "news": 7, "uucp": 8,
    "cron": 9, "authpriv": 10, "ftp": 11, "ntp": 12, "security": 13, "console": 14, "solaris-cron": 15,
    **{f"local{i}": 16 + i for i in range(8)},
}
#: RFC 5424 severities: 2 critical, 3 error, 4 warning, 6 informational.
SYSLOG_SEVERITY = {Severity.CRITICAL: 2, Severity.ERROR: 3, Severity.WARNING: 4, Severity.INFO: 6}
#: CEF severity is 0-10 (10 most severe).
CEF_SEVERITY = {Severity.CRITICAL: 10, Severity.ERROR: 8, Severity.WARNING: 5, Severity.INFO: 3}
BOM = "\ufeff"
_PRINTUSASCII = re.compile(r"[^\x21-\x7e]")
VERSION = "0.1.0"


def _header_token(value: str, limit: int) -> str:
    """HOSTNAME / APP-NAME / PROCID / MSGID: printable US-ASCII without spaces, or ``-``."""
    cleaned = _PRINTUSASCII.sub("_", value)[:limit]
    return cleaned or "-"


def sd_escape(value: object) -> str:
    """RFC 5424 section 6.3.3: escape ``"``, ``\\`` and ``]`` in PARAM-VALUE."""
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


def cef_header_escape(value: object) -> str:
    """CEF header fields: escape ``\\`` and ``|``; line breaks are not allowed (become spaces)."""
    text = str(value).replace("\\", "\\\\").replace("|", "\\|")
    return text.replace("\r", " ").replace("\n", " ")


def cef_value_escape(value: object) -> str:
    """CEF extension values: escape ``\\`` and ``=``; encode CR/LF as ``\\r``/``\\n``."""
    text = str(value).replace("\\", "\\\\").replace("=", "\\=")
    return text.replace("\r\n", "\\n").replace("\r", "\\r").replace("\n", "\\n")


def cef_message(alert: Alert, vendor: str, product: str) -> str:
    ext: list[tuple[str, object]] = [
        ("rt", int(alert.last_seen.timestamp() * 1000)),
        ("start", int(alert.first_seen.timestamp() * 1000)),
        ("act", alert.action),
        ("externalId", alert.dedup_key),
        ("cnt", alert.event_count),
        ("cn1Label", "canaryCount"), ("cn1", alert.canary_count),
        ("cn2Label", "incidentId"), ("cn2", alert.incident_id),
        ("msg", alert.summary),
    ]
    user = alert.actor.get("user") or alert.actor.get("role") or alert.actor.get("sender") or alert.actor.get("caller")
    if user:
        ext.append(("suser", user))
    if alert.origin.get("client_addr"):
        ext.append(("src", alert.origin["client_addr"]))
    if alert.origin.get("application_name"):
        ext.append(("requestClientApplication", alert.origin["application_name"]))
    if alert.origin.get("node"):
        ext.append(("dvchost", alert.origin["node"]))
    if alert.canaries:
        ext += [("cs1Label", "canaries"), ("cs1", ", ".join(f"{c.get('label')} x{c.get('count')}" for c in alert.canaries))]
    query = alert.evidence.get("query") or alert.evidence.get("statement")
    if query:
        ext += [("cs2Label", "query"), ("cs2", query)]
    if alert.drill:
        ext += [("cs3Label", "drill"), ("cs3", alert.drill)]
    if alert.link:
        ext += [("cs4Label", "incidentUrl"), ("cs4", alert.link)]
    if alert.attack:
        ext += [("cs5Label", "attackTechniques"), ("cs5", ",".join(technique_ids(alert)))]
    if alert.enrichment.get("rdns"):
        ext.append(("shost", alert.enrichment["rdns"]))
    if alert.enrichment.get("address"):
        ext += [("cs6Label", "sourceContext"), ("cs6", from_line(alert))]
    header = "|".join(cef_header_escape(v) for v in (vendor, product, VERSION, f"canary:{alert.kind}:{alert.action}", alert.title))
    extension = " ".join(f"{k}={cef_value_escape(v)}" for k, v in ext)
    return f"CEF:0|{header}|{CEF_SEVERITY[alert.severity]}|{extension}"


class Options(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    host: str
    port: int = Field(default=514, ge=1, le=65535)
    transport: Literal["udp", "tcp", "tls"] = "udp"
    format: Literal["rfc5424", "cef"] = "rfc5424"
    facility: str = "authpriv"
    hostname: str = Field(default_factory=lambda: os.uname().nodename)
    app_name: str = "canary"
    enterprise_id: str = Field(default="32473", pattern=r"^\d+(\.\d+)*$")  # SD-ID name@<PEN>
    ca_file: Path | None = None
    udp_max_bytes: int = Field(default=2048, ge=480, le=65000)
    cef_vendor: str = "canary"
    cef_product: str = "canary"
    timeout: float = Field(default=10.0, gt=0, le=120)

    @field_validator("facility")
    @classmethod
    def _facility(cls, v: str) -> str:
        if v not in FACILITIES:
            raise ValueError(f"unknown facility {v!r}; one of {', '.join(FACILITIES)}")
        return v


def format_message(alert: Alert, options: Options, now: dt.datetime | None = None) -> bytes:
    """One RFC 5424 SYSLOG-MSG (without transport framing)."""
    pri = FACILITIES[options.facility] * 8 + SYSLOG_SEVERITY[alert.severity]
    ts = (now or dt.datetime.now(dt.timezone.utc)).astimezone(dt.timezone.utc).isoformat(timespec="microseconds")
    ts = ts.replace("+00:00", "Z")
    head = " ".join([
        f"<{pri}>1", ts, _header_token(options.hostname, 255), _header_token(options.app_name, 48),
        _header_token(str(os.getpid()), 128), _header_token(f"incident.{alert.action}", 32),
    ])
    params = {"incident": alert.incident_id, "dedup": alert.dedup_key, "action": alert.action, "seq": alert.sequence,
              "kind": alert.kind, "severity": alert.severity, "canaries": alert.canary_count, "events": alert.event_count,
              **({"link": alert.link} if alert.link else {}),
              **({"attack": " ".join(technique_ids(alert))} if alert.attack else {})}
    sd = f"[canary@{options.enterprise_id} " + " ".join(f'{k}="{sd_escape(v)}"' for k, v in params.items()) + "]"
    if options.format == "cef":
        body = cef_message(alert, options.cef_vendor, options.cef_product)
    else:
        body = BOM + alert.summary
    return f"{head} {sd} {body}".encode()


def frame(message: bytes) -> bytes:
    """RFC 6587 / RFC 5425 octet counting: ``MSG-LEN SP SYSLOG-MSG``."""
    return str(len(message)).encode() + b" " + message


class _Datagram(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.error: Exception | None = None

    def error_received(self, exc: Exception) -> None:
        self.error = exc


class SyslogSink:
    type: ClassVar[str] = "syslog"
    Options: ClassVar[builtins.type[BaseModel]] = Options

    def __init__(self, name: str, options: Any, http: aiohttp.ClientSession) -> None:
        self.name = name
        self.options: Options = options
        self._lock = asyncio.Lock()
        self._stream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    def __repr__(self) -> str:
        o = self.options
        return f"SyslogSink(name={self.name!r}, {o.transport}://{o.host}:{o.port}, format={o.format!r})"

    async def send(self, alert: Alert) -> None:
        o = self.options
        message = format_message(alert, o)
        try:
            if o.transport == "udp":
                await asyncio.wait_for(self._send_udp(message[: o.udp_max_bytes].decode("utf-8", "ignore").encode()), o.timeout)
            else:
                async with self._lock:
                    await asyncio.wait_for(self._send_stream(frame(message)), o.timeout)
        except asyncio.TimeoutError:
            await self.close()
            raise DeliveryError(self.name, f"syslog {o.transport}://{o.host}:{o.port} timed out") from None
        except (OSError, ssl.SSLError) as exc:
            await self.close()
            raise DeliveryError(self.name, f"syslog {o.transport}://{o.host}:{o.port}: {type(exc).__name__}: "
                                           f"{exc.strerror or exc}") from None

    async def _send_udp(self, message: bytes) -> None:
        loop = asyncio.get_running_loop()
        transport, protocol = await loop.create_datagram_endpoint(_Datagram, remote_addr=(self.options.host, self.options.port))
        try:
            transport.sendto(message)
            await asyncio.sleep(0)
            if protocol.error is not None:
                raise protocol.error
        finally:
            transport.close()

    async def _send_stream(self, data: bytes) -> None:
        o = self.options
        if self._stream is not None and (self._stream[0].at_eof() or self._stream[1].is_closing()):
            await self.close()  # the receiver closed it since the last alert
        if self._stream is None:
            context = await asyncio.to_thread(client_tls_context, o.ca_file) if o.transport == "tls" else None
            self._stream = await asyncio.open_connection(o.host, o.port, ssl=context,
                                                         server_hostname=o.host if context else None)
        writer = self._stream[1]
        writer.write(data)
        await writer.drain()

    async def close(self) -> None:
        if self._stream is not None:
            writer = self._stream[1]
            self._stream = None
            writer.close()
            try:
                await writer.wait_closed()
            except (OSError, ssl.SSLError):
                pass


SINK = SyslogSink
