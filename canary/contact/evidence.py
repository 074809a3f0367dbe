"""Contacts recorded: the raw message kept encrypted, a replay cache shared by every listener, the
canary a recipient address belongs to, and one committed event per canary contacted; and probes: a
canary address named to the MX (RCPT, VRFY, EXPN) without a message delivered to it, a warning
grouped per peer, and a peer's flood of such commands (counts only).

Evidence holds what the sender controls: subject, URLs, attachment hashes, the claimed Received chain
head, verdicts, the sender and the peer; never the canary's own address or number.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from canary.contact.mime import (
    ParsedMail,
    address_domain,
    in_domains,
    mail_address,
    mailbox,
    parse_mail_async,
    redact,
)
from canary.contact.senders import KnownSenders
from canary.contact.verdicts import Verdicts
from canary.events import DetectionEvent, EventKind, Severity, event_key
from canary.store.registry import CanaryRecord
from canary.typing import SourceContext

MAIL_EVIDENCE = "evidence:mail"
#: Failures of the control store while committing: the input is not acknowledged (4xx/5xx, retry).
COMMIT_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, RuntimeError, asyncio.TimeoutError)

#: One-statement prefix: this statement's (implicit) transaction commits without waiting for its
#: WAL flush. Used for rows that an acknowledged, synchronously committed event always follows.
_ASYNC_COMMIT = "WITH cfg AS (SELECT set_config('synchronous_commit', 'off', true))"


# -- storage ----------------------------------------------------------------------------------------
async def store_raw(runtime: SourceContext, source: str, raw: bytes) -> int:
    """Keep the raw message encrypted; returns its id (a redelivered message keeps its first id).

    Committed without waiting for the WAL flush: the caller always commits the events that reference
    it synchronously before acknowledging, and that flush covers this earlier WAL record too, so the
    evidence is durable whenever the acknowledgement is, at one fsync per message instead of two."""
    digest = hashlib.sha256(raw).digest()
    blob = runtime.keyring.encrypt(raw, MAIL_EVIDENCE)
    row_id: int = await runtime.pool.fetchval(
        f"""
        {_ASYNC_COMMIT}
        INSERT INTO contact_messages (source, digest, raw_enc, size, key_id)
        SELECT $1, $2, $3, $4, $5 FROM cfg
        ON CONFLICT (digest) DO UPDATE SET digest = EXCLUDED.digest
        RETURNING id
        """,
        source, digest, blob, len(raw), runtime.keyring.key_id,
    )
    return row_id


async def load_raw(runtime: SourceContext, evidence_id: int) -> bytes | None:
    blob = await runtime.pool.fetchval("SELECT raw_enc FROM contact_messages WHERE id = $1", evidence_id)
    return runtime.keyring.decrypt(blob, MAIL_EVIDENCE) if blob is not None else None


@dataclass
class ReplayCache:
    """Seen provider tokens/nonces in the control store, shared by every listener, expiring."""

    provider: str
    ttl: float
    purge_every: int = 500
    _count: int = field(default=0, init=False)

    async def first_use(self, pool: asyncpg.Pool, token: str) -> bool:
        """True the first time ``token`` is presented within the TTL, False for a replay."""
        self._count += 1
        if self._count % self.purge_every == 0:
            await pool.execute("DELETE FROM contact_replay WHERE expires_at < now()")
        # no WAL flush wait: the event commit that follows flushes it; a token lost in a crash before
        # that commit belongs to a request that was not acknowledged (and events are idempotent)
        row = await pool.fetchval(
            f"""
            {_ASYNC_COMMIT}
            INSERT INTO contact_replay (provider, token, expires_at)
            SELECT $1, $2, now() + make_interval(secs => $3) FROM cfg
            ON CONFLICT (provider, token) DO UPDATE SET expires_at = EXCLUDED.expires_at
                WHERE contact_replay.expires_at < now()
            RETURNING 1
            """,
            self.provider, token[:200], self.ttl,
        )
        return row is not None

    async def forget(self, pool: asyncpg.Pool, token: str) -> None:
        """Drop a token whose request was not committed, so the provider's retry is accepted."""
        await pool.execute("DELETE FROM contact_replay WHERE provider = $1 AND token = $2", self.provider, token[:200])


# -- recipients ---------------------------------------------------------------------------------------
async def canary_for_address(runtime: SourceContext, address: str, domains: Sequence[str]) -> CanaryRecord | None:
    """The canary owning an address in a canary mail domain (``local+tag@`` also matches ``local@``),
    in any spelling an MTA delivers to the same mailbox (:func:`~canary.contact.mime.mailbox`: a
    quoted local part, the domain's A-label or root dot), so no spelling reaches a canary unseen.

    The lookups made depend on the address's spelling only (``local+tag@`` always costs two, the
    second not skipped when the first finds a canary), so the time taken says nothing of the answer."""
    if not in_domains(address_domain(address), domains):
        return None
    local, _, domain = mailbox(address, domains).rpartition("@")
    address = f"{local}@{domain}"
    candidates = [address] + ([f"{local.split('+', 1)[0]}@{domain}"] if "+" in local else [])
    found = [await runtime.registry.by_value("email", a) for a in candidates]
    return next((c for c in found if c is not None), None)


# -- events -------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class MailFacts:
    """What a mail source knows about one delivery, beyond the message itself."""

    source: str
    raw: bytes
    mail_from: str  # envelope sender ("" for a bounce)
    client_ip: str | None
    helo: str | None
    verdicts: Verdicts
    provider_id: str | None = None  # provider's message id (webhooks)
    received: str | None = None  # the trusted hop: our own Received line, or the provider's topmost
    extra: Mapping[str, Any] = field(default_factory=dict)
    contact_points: Sequence[str] = ()  # the canary recipients' addresses: redacted from the evidence


async def record_mail(
    runtime: SourceContext, facts: MailFacts, canaries: Sequence[CanaryRecord], known: KnownSenders,
    parsed: ParsedMail | None = None,
) -> list[DetectionEvent]:
    """Store the raw message (encrypted) and commit one event per canary recipient. Returns after commit."""
    parsed = parsed or await parse_mail_async(facts.raw)
    evidence_id = await store_raw(runtime, facts.source, facts.raw)
    sender = mail_address(facts.mail_from) or parsed.from_addr or "<>"
    envelope = mail_address(facts.mail_from)
    rule = known.match_mail(envelope or parsed.from_addr, facts.client_ip, facts.verdicts,
                            spf_domain=address_domain(envelope) if envelope else (facts.helo or "").lower() or None)
    ident = facts.provider_id or parsed.message_id or hashlib.sha256(facts.raw).hexdigest()
    now = dt.datetime.now(dt.timezone.utc)
    evidence: dict[str, Any] = {
        **parsed.evidence(), **facts.verdicts.to_json(), "received": facts.received, "raw_evidence_id": evidence_id,
        "size": len(facts.raw), "provider_id": facts.provider_id, **facts.extra,
    }
    if parsed.malformed:
        evidence["malformed"] = parsed.malformed
    if rule:
        evidence.update(expected=True, known_sender_rule=rule)
    evidence = redact(evidence, facts.contact_points)
    # a sender may spell the canary's own address (From: or MAIL FROM: it): the actor, the group and
    # so the incident title never do
    actor = redact({"sender": sender, "from": parsed.from_addr}, facts.contact_points)
    events = [
        DetectionEvent(
            kind=EventKind.CONTACTED, source=facts.source, key=event_key("mail", ident, c.id),
            group=f"mail:{actor['sender']}", canary_id=c.id, observed_at=now, actor=actor,
            origin={"client_addr": facts.client_ip, "helo": facts.helo},
            evidence=evidence, severity=Severity.INFO if rule else Severity.CRITICAL,
        )
        for c in canaries
    ]
    await asyncio.gather(*(runtime.submit(e) for e in events))
    return events


#: Probe kinds: the SMTP command that named an address without a message being delivered to it.
PROBES = ("rcpt", "vrfy", "expn")
#: A peer naming more addresses than allowed within the window (a report about the peer, no canary).
FLOOD = "rcpt_flood"


def probe_group(peer: str) -> str:
    """The incident group of one probing peer: its probes and its flood report are one incident."""
    return f"smtp-probe:{peer}"


async def record_probes(
    runtime: SourceContext, *, source: str, session: str, peer: str, client_ip: str | None, helo: str | None,
    sender: str | None, named: Sequence[tuple[str, CanaryRecord]], counts: Mapping[str, int],
) -> list[DetectionEvent]:
    """Commit one lower-severity event per (probe kind, canary) named in one SMTP session without a
    message delivered to it; returns after commit.

    Grouped per peer (``peer`` is the tarpit's key: the IPv4 address or IPv6 /64), so a peer walking a
    list of addresses is one incident growing by canary, not one page per address. Keyed by the
    session, so a canary named twice in a session (or flushed twice) is one event. The evidence holds
    the command and counts only, never an address: the canary's address is a secret."""
    now = dt.datetime.now(dt.timezone.utc)
    events = [
        DetectionEvent(
            kind=EventKind.CONTACTED, source=source, key=event_key("smtp-probe", session, probe, c.id),
            group=probe_group(peer), canary_id=c.id, observed_at=now,
            actor={"sender": sender} if sender else {}, origin={"client_addr": client_ip, "helo": helo},
            evidence={"probe": probe, "peer": peer, "helo": helo, "counts": dict(counts)},
            severity=Severity.WARNING,
        )
        for probe, c in named
    ]
    await asyncio.gather(*(runtime.submit(e) for e in events))
    return events


async def record_flood(
    runtime: SourceContext, *, source: str, peer: str, client_ip: str | None, helo: str | None,
    window_start: dt.datetime, counts: Mapping[str, int], limit: int, window: float,
) -> DetectionEvent:
    """Commit the report that a peer named more addresses than ``limit`` within one window (once per
    peer and window: the key is the peer and the window's start). Counts only: whether any of the
    addresses is a canary is for the probe events, decided after the session."""
    event = DetectionEvent(
        kind=EventKind.CONTACTED, source=source, key=event_key(FLOOD, peer, window_start.isoformat()),
        group=probe_group(peer), canary_id=None, observed_at=dt.datetime.now(dt.timezone.utc),
        origin={"client_addr": client_ip, "helo": helo},
        evidence={"probe": FLOOD, "signal": FLOOD, "peer": peer, "helo": helo, "counts": dict(counts),
                  "limit": limit, "window": window},
        severity=Severity.WARNING,
    )
    await runtime.submit(event)
    return event


async def record_phone(
    runtime: SourceContext, *, source: str, channel: str, canary: CanaryRecord, caller: str | None, ident: str,
    known: KnownSenders, country: str | None = None, text: str | None = None, call_status: str | None = None,
    recording_url: str | None = None, extra: Mapping[str, Any] | None = None, contact_point: str | None = None,
) -> DetectionEvent:
    """Commit one SMS / call event (returns after commit). ``contact_point`` (the canary number) is
    redacted from the evidence and from the caller (a spoofed caller id)."""
    rule = known.match_caller(caller)
    evidence: dict[str, Any] = {
        "channel": channel, "provider_id": ident, "text": text, "call_status": call_status,
        "recording_url": recording_url, **(extra or {}),
    }
    evidence = {k: v for k, v in evidence.items() if v not in (None, "")}
    if rule:
        evidence.update(expected=True, known_sender_rule=rule)
    evidence = redact(evidence, [contact_point] if contact_point else [])
    caller = redact(caller, [contact_point] if contact_point else [])  # a spoofed caller id may be the canary's number
    event = DetectionEvent(
        kind=EventKind.CONTACTED, source=source, key=event_key(source, channel, ident, canary.id),
        group=f"phone:{caller or 'unknown'}", canary_id=canary.id, observed_at=dt.datetime.now(dt.timezone.utc),
        actor={"caller": caller}, origin={"country": country} if country else {}, evidence=evidence,
        severity=Severity.INFO if rule else Severity.CRITICAL,
    )
    await runtime.submit(event)
    return event
