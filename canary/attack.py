"""MITRE ATT&CK (Enterprise) techniques for what canary detects, so every sink shows an analyst which
technique a detection is evidence of.

Each event kind maps to the technique whose use it proves, refined by the source and the evidence
(an AWS key is a cloud account, a token at the gateway an application access token, an RCPT probe is
reconnaissance of e-mail addresses). HEALTH events are no technique: they are about canary itself.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from canary.events import EventKind

#: the ATT&CK release whose ids and names these are
ATTACK_VERSION = "16.1"


@dataclasses.dataclass(frozen=True, slots=True)
class Tactic:
    uid: str
    name: str


COLLECTION = Tactic("TA0009", "Collection")
INITIAL_ACCESS = Tactic("TA0001", "Initial Access")
RECONNAISSANCE = Tactic("TA0043", "Reconnaissance")
DEFENSE_EVASION = Tactic("TA0005", "Defense Evasion")
PERSISTENCE = Tactic("TA0003", "Persistence")
PRIVILEGE_ESCALATION = Tactic("TA0004", "Privilege Escalation")
LATERAL_MOVEMENT = Tactic("TA0008", "Lateral Movement")
CREDENTIAL_ACCESS = Tactic("TA0006", "Credential Access")


@dataclasses.dataclass(frozen=True, slots=True)
class Technique:
    uid: str  # T1078 or T1078.004
    name: str  # "Valid Accounts" or "Valid Accounts: Cloud Accounts"
    tactics: tuple[Tactic, ...]

    @property
    def url(self) -> str:
        return "https://attack.mitre.org/techniques/" + self.uid.replace(".", "/") + "/"

    def to_json(self) -> dict[str, Any]:
        """``{"id", "name", "tactics": [{"id", "name"}], "url"}``: what sinks that have no ATT&CK fields of
        their own show."""
        return {"id": self.uid, "name": self.name, "url": self.url,
                "tactics": [{"id": t.uid, "name": t.name} for t in self.tactics]}


_VALID_ACCOUNTS_TACTICS = (DEFENSE_EVASION, PERSISTENCE, PRIVILEGE_ESCALATION, INITIAL_ACCESS)

DATA_FROM_REPOSITORIES = Technique("T1213", "Data from Information Repositories", (COLLECTION,))
DATA_STAGED = Technique("T1074", "Data Staged", (COLLECTION,))
PHISHING = Technique("T1566", "Phishing", (INITIAL_ACCESS,))
SPEARPHISHING_VOICE = Technique("T1566.004", "Phishing: Spearphishing Voice", (INITIAL_ACCESS,))
GATHER_EMAIL_ADDRESSES = Technique("T1589.002", "Gather Victim Identity Information: Email Addresses", (RECONNAISSANCE,))
VALID_ACCOUNTS = Technique("T1078", "Valid Accounts", _VALID_ACCOUNTS_TACTICS)
CLOUD_ACCOUNTS = Technique("T1078.004", "Valid Accounts: Cloud Accounts", _VALID_ACCOUNTS_TACTICS)
APPLICATION_ACCESS_TOKEN = Technique(
    "T1550.001", "Use Alternate Authentication Material: Application Access Token", (DEFENSE_EVASION, LATERAL_MOVEMENT))
UNSECURED_CREDENTIALS = Technique("T1552", "Unsecured Credentials", (CREDENTIAL_ACCESS,))
DISABLE_OR_MODIFY_TOOLS = Technique("T1562.001", "Impair Defenses: Disable or Modify Tools", (DEFENSE_EVASION,))

#: the value kinds of credentials that are application tokens rather than accounts
_TOKEN_VALUES = frozenset({"token", "api_key", "session_token", "refresh_token", "stored_token"})


def techniques(kind: EventKind | str, source: str = "", evidence: Mapping[str, Any] | None = None) -> tuple[Technique, ...]:
    """The ATT&CK techniques an event of ``kind`` from ``source`` with ``evidence`` is evidence of
    (empty for HEALTH)."""
    ev = evidence or {}
    kind = EventKind(kind)
    signal = str(ev.get("signal") or "")
    if kind is EventKind.READ:
        return (DATA_FROM_REPOSITORIES,)
    if kind is EventKind.EXPORTED:
        if signal in ("export_file", "copy_sweep"):  # canary values found in a file or a copied table
            return (DATA_FROM_REPOSITORIES, DATA_STAGED)
        return (DATA_FROM_REPOSITORIES,)
    if kind is EventKind.CONTACTED:
        if ev.get("probe"):  # RCPT / VRFY / EXPN naming canary addresses: enumeration, not yet a mail
            return (GATHER_EMAIL_ADDRESSES,)
        if ev.get("channel") == "voice":
            return (SPEARPHISHING_VOICE,)
        return (PHISHING,)
    if kind is EventKind.USED:
        value_kind = str(ev.get("value_kind") or ev.get("credential_kind") or "")
        if source == "cloudtrail" or value_kind.startswith("aws"):
            return (CLOUD_ACCOUNTS,)
        if source == "gateway" or value_kind in _TOKEN_VALUES:
            return (APPLICATION_ACCESS_TOKEN, UNSECURED_CREDENTIALS)
        return (VALID_ACCOUNTS, UNSECURED_CREDENTIALS)
    if kind is EventKind.TAMPER:
        return (DISABLE_OR_MODIFY_TOOLS,)
    return ()


def attack_json(kind: EventKind | str, source: str = "", evidence: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    return [t.to_json() for t in techniques(kind, source, evidence)]
