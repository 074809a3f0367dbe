"""The two lines every human-facing sink adds to an alert: which ATT&CK techniques the incident is
evidence of (``alert.attack``, from canary.attack) and what is known about the client address
(``alert.enrichment``, from canary.enrich). Each sink escapes them for its own format."""

from __future__ import annotations

from canary.alerts import Alert
from canary.enrich import describe


def technique_ids(alert: Alert) -> list[str]:
    """``["T1078", "T1552"]``: the ids of the alert's techniques, in order."""
    return [str(t.get("id")) for t in alert.attack if t.get("id")]


def attack_line(alert: Alert) -> str:
    """``T1078 Valid Accounts, T1552 Unsecured Credentials`` (empty without techniques)."""
    return ", ".join(f"{t.get('id')} {t.get('name')}" for t in alert.attack if t.get("id"))


def from_line(alert: Alert) -> str:
    """``203.0.113.7 (KR, Seoul, AS4766 Korea Telecom)`` (empty without enrichment)."""
    return describe(alert.enrichment)
