"""Known senders: configured rules that mark a contact expected (it is recorded, not paged), and the
pipeline's suppress rule that honours the mark."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from canary.config import KnownSenderRule
from canary.contact.mime import address_domain, in_domains
from canary.contact.verdicts import Verdicts
from canary.events import DetectionEvent, EventKind


class KnownSenders:
    """Configurable rules marking expected contacts. An e-mail sender only matches when its domain is
    authenticated (SPF pass for the envelope domain or DKIM pass for the domain): a forged From of
    the company's own domain still pages. Caller numbers are taken as presented by the carrier."""

    def __init__(self, rules: Sequence[KnownSenderRule]) -> None:
        self.rules = list(rules)
        self._nets = {r.name: [ipaddress.ip_network(n, strict=False) for n in r.networks] for r in self.rules}

    @staticmethod
    def _sender_matches(pattern: str, sender: str) -> bool:
        pattern = pattern.lower()
        if pattern.startswith("@"):
            return in_domains(address_domain(sender), [pattern[1:]])
        return sender == pattern

    def match_mail(self, sender: str | None, ip: str | None, verdicts: Verdicts, spf_domain: str | None = None) -> str | None:
        """The rule that marks this mail expected. ``spf_domain`` is the identity SPF checked (the
        envelope sender's domain, or the HELO name for a bounce); default: the sender's domain."""
        authenticated: set[str] = set()
        if verdicts.spf == "pass" and (spf_domain or sender):
            authenticated.add((spf_domain or address_domain(sender or "")).lower())
        if verdicts.dkim == "pass" and verdicts.dkim_domain:
            authenticated.add(verdicts.dkim_domain)
        addr = ipaddress.ip_address(ip) if ip else None
        for rule in self.rules:
            if addr is not None and any(addr in n for n in self._nets[rule.name]):
                return rule.name
            if sender and any(self._sender_matches(p, sender) for p in rule.senders):
                if any(in_domains(address_domain(sender), [d]) or in_domains(d, [address_domain(sender)])
                       for d in authenticated):
                    return rule.name
        return None

    def match_caller(self, caller: str | None) -> str | None:
        if not caller:
            return None
        for rule in self.rules:
            for p in rule.callers:
                if (p.endswith("*") and caller.startswith(p[:-1])) or caller == p:
                    return rule.name
        return None


def expected_contact(event: DetectionEvent) -> str | None:
    """Suppression rule for the pipeline: contacts marked expected by a known-sender rule do not page."""
    if event.kind is EventKind.CONTACTED and event.evidence.get("expected") is True:
        rule = event.evidence.get("known_sender_rule")
        return f"known-sender:{rule}" if rule else "known-sender"
    return None
