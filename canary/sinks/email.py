"""E-mail over SMTP (aiosmtplib): STARTTLS on submission port 587 by default, implicit TLS on 465
with ``tls = "implicit"``; certificates are verified (``ca_file`` adds a private CA).

SMTP replies are translated at this boundary: ``4xx`` and connection failures are retried by the
outbox, ``5xx`` (recipient or sender refused, authentication failed) are permanent. The password
is a :class:`Secret` and never appears in errors. One message per notification; the incident's
dedup key is in ``Message-ID``-derived headers so mail clients thread updates of one incident.

The message is ``multipart/alternative``: a plain-text body and an HTML body with the same lines, every
value HTML-escaped (attacker text cannot add markup or links); both name the ATT&CK techniques and what is
known about the client address (``ATT&CK: T1078 Valid Accounts``, ``From: 203.0.113.7 (KR, Seoul, ...)``).
"""

from __future__ import annotations

import asyncio
import builtins
import email.utils
import html
import re
import ssl
from email.message import EmailMessage
from pathlib import Path
from typing import Any, ClassVar, Literal

import aiohttp
import aiosmtplib
import structlog
from pydantic import BaseModel, ConfigDict, Field, field_validator

from canary.alerts import Alert, AlertAction
from canary.errors import DeliveryError
from canary.secret import Secret, resolve_secret
from canary.sinks._context import attack_line, from_line
from canary.sinks._tls import client_tls_context

log = structlog.get_logger("canary.sinks.email")

_ADDRESS = r"^[^@\s<>]+@[^@\s<>]+$"
_SUBJECT = {AlertAction.TRIGGER: "", AlertAction.UPDATE: "[ESCALATED] ", AlertAction.ACKNOWLEDGE: "[ACK] ",
            AlertAction.RESOLVE: "[RESOLVED] "}


class Options(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    host: str
    port: int = Field(default=587, ge=1, le=65535)
    tls: Literal["starttls", "implicit"] = "starttls"
    ca_file: Path | None = None
    from_addr: str = Field(pattern=_ADDRESS)
    to: tuple[str, ...] = Field(min_length=1)
    username: str | None = None
    password: Secret | None = None
    subject_prefix: str = "[canary]"
    timeout: float = Field(default=15.0, gt=0, le=120)

    @field_validator("password", mode="before")
    @classmethod
    def _password(cls, v: object) -> Secret | None:
        return None if v is None else resolve_secret(v)

    @field_validator("to")
    @classmethod
    def _to(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for addr in v:
            if not re.match(_ADDRESS, addr):
                raise ValueError(f"not an e-mail address: {addr!r}")
        return v

    @field_validator("ca_file")
    @classmethod
    def _ca(cls, v: Path | None) -> Path | None:
        if v is not None and not v.expanduser().is_file():
            raise ValueError(f"CA file {v} does not exist")
        return v.expanduser() if v is not None else None


def _one_line(text: str) -> str:
    return " ".join(text.split())


def build_message(alert: Alert, options: Options) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = options.from_addr
    msg["To"] = ", ".join(options.to)
    msg["Subject"] = _one_line(f"{options.subject_prefix} {_SUBJECT[alert.action]}{alert.title}")[:250]
    msg["Date"] = email.utils.formatdate(localtime=False)
    domain = options.from_addr.rsplit("@", 1)[1]
    msg["Message-ID"] = f"<{alert.dedup_key}.{alert.sequence}@{domain}>"
    if alert.sequence:
        msg["In-Reply-To"] = msg["References"] = f"<{alert.dedup_key}.0@{domain}>"
    msg["X-Canary-Incident"] = str(alert.incident_id)
    msg["X-Canary-Action"] = str(alert.action)
    facts = [("Severity", str(alert.severity)), ("Canaries", f"{alert.canary_count} in {alert.event_count} event(s)"),
             ("ATT&CK", attack_line(alert)), ("From", from_line(alert)),
             ("First seen", alert.first_seen.isoformat()), ("Last seen", alert.last_seen.isoformat())]
    facts = [(k, v) for k, v in facts if v]
    sections = [(title, [(str(k), str(v)) for k, v in data.items() if v not in (None, "")])
                for title, data in (("Actor", alert.actor), ("Origin", alert.origin), ("Evidence", alert.evidence))]
    if alert.canaries:
        sections.append(("Canaries", [(str(c.get("label")), f"x {c.get('count')}") for c in alert.canaries]))
    sections = [(title, items) for title, items in sections if items]

    lines = [alert.summary, *([f"Incident: {alert.link}"] if alert.link else []), "", *(f"{k}: {v}" for k, v in facts)]
    for title, items in sections:
        lines += ["", f"{title}:", *(f"  {k}: {v}" if title != "Canaries" else f"  {k} {v}" for k, v in items)]
    if alert.drill:
        lines += ["", f"This is drill {alert.drill}."]
    msg.set_content("\n".join(lines) + "\n")
    msg.add_alternative(_html(alert, facts, sections), subtype="html")
    return msg


def _html(alert: Alert, facts: list[tuple[str, str]], sections: list[tuple[str, list[tuple[str, str]]]]) -> str:
    """The HTML body: the same content as the text body, every value escaped; the only link is ours."""
    e = html.escape
    rows = "".join(f"<tr><th align=\"left\">{e(k)}</th><td>{e(v)}</td></tr>" for k, v in facts)
    parts = [f"<h2>{e(alert.title)}</h2>", f"<p>{e(alert.summary)}</p>"]
    if alert.link:
        parts.append(f"<p><a href=\"{e(alert.link, quote=True)}\">Open incident {alert.incident_id}</a></p>")
    parts.append(f"<table>{rows}</table>")
    for title, items in sections:
        body = "".join(f"<tr><th align=\"left\">{e(k)}</th><td><code>{e(v)}</code></td></tr>" for k, v in items)
        parts.append(f"<h3>{e(title)}</h3><table>{body}</table>")
    if alert.drill:
        parts.append(f"<p><em>This is drill {e(alert.drill)}.</em></p>")
    return "<!DOCTYPE html><html><body>" + "".join(parts) + "</body></html>\n"


class EmailSink:
    type: ClassVar[str] = "email"
    Options: ClassVar[builtins.type[BaseModel]] = Options

    def __init__(self, name: str, options: Any, http: aiohttp.ClientSession) -> None:
        self.name = name
        self.options: Options = options

    def __repr__(self) -> str:
        return f"EmailSink(name={self.name!r}, host={self.options.host!r})"

    async def send(self, alert: Alert) -> None:
        o = self.options
        msg = build_message(alert, o)
        context = await asyncio.to_thread(client_tls_context, o.ca_file)
        try:
            errors, _ = await aiosmtplib.send(
                msg, hostname=o.host, port=o.port, use_tls=o.tls == "implicit", start_tls=o.tls == "starttls",
                tls_context=context, username=o.username, password=o.password.reveal() if o.password else None,
                timeout=o.timeout,
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [r.code for r in exc.recipients]
            raise DeliveryError(self.name, f"all recipients refused (SMTP {codes})", permanent=all(c >= 500 for c in codes)) from None
        except aiosmtplib.SMTPAuthenticationError as exc:
            raise DeliveryError(self.name, f"SMTP authentication failed ({exc.code})", permanent=True, status=exc.code) from None
        except aiosmtplib.SMTPResponseException as exc:
            raise DeliveryError(self.name, f"SMTP {exc.code}: {_one_line(exc.message)[:200]}", permanent=exc.code >= 500,
                                status=exc.code) from None
        except aiosmtplib.SMTPTimeoutError:
            raise DeliveryError(self.name, f"SMTP server {o.host}:{o.port} timed out after {o.timeout:.0f}s") from None
        except (aiosmtplib.SMTPException, OSError, ssl.SSLError) as exc:
            raise DeliveryError(self.name, f"SMTP to {o.host}:{o.port} failed: {type(exc).__name__}: "
                                           f"{_one_line(str(exc))[:200]}") from None
        if errors:  # some recipients accepted it: retrying would duplicate their copy, so report and go on
            log.warning("email.recipients_refused", sink=self.name, incident_id=alert.incident_id,
                        refused={addr: r.code for addr, r in errors.items()})


SINK = EmailSink
