"""SPF (RFC 7208) and DKIM (RFC 6376) verdicts of a delivery, through an injected blocking
resolver run in worker threads."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from dataclasses import dataclass
from email import policy
from email.parser import BytesParser
from typing import Any, Protocol

import dkim
import spf


class Resolver(Protocol):
    """Blocking DNS lookups (run in a worker thread). Values: TXT -> tuples of byte strings,
    A/AAAA/PTR -> strings, MX -> (preference, exchange). Raises TimeoutError on temporary failure."""

    def lookup(self, name: str, qtype: str, timeout: float) -> list[Any]: ...


class DnspythonResolver:
    """The system resolver through dnspython."""

    def lookup(self, name: str, qtype: str, timeout: float) -> list[Any]:
        import dns.exception
        import dns.resolver

        try:
            answer = dns.resolver.resolve(name, qtype, lifetime=timeout, raise_on_no_answer=False, search=False)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return []
        except (dns.exception.Timeout, dns.resolver.NoNameservers, dns.resolver.NoResolverConfiguration) as exc:
            raise TimeoutError(f"DNS {qtype} {name}: {type(exc).__name__}") from None
        out: list[Any] = []
        for rdata in answer.rrset or ():
            if qtype in ("A", "AAAA"):
                out.append(rdata.address)
            elif qtype == "MX":
                out.append((rdata.preference, rdata.exchange.to_text(True)))
            elif qtype == "PTR":
                out.append(rdata.target.to_text(True))
            elif qtype == "TXT":
                out.append(tuple(rdata.strings))
        return out


@dataclass(frozen=True, slots=True)
class Verdicts:
    spf: str = "none"
    spf_reason: str = ""
    dkim: str = "none"
    dkim_domain: str | None = None
    by: str = "canary"  # who computed them: canary, or the provider that received the mail

    def to_json(self) -> dict[str, Any]:
        return {"spf": self.spf, "spf_reason": self.spf_reason[:200], "dkim": self.dkim,
                "dkim_domain": self.dkim_domain, "verdicts_by": self.by}


class _SpfQuery(spf.query):  # type: ignore[misc]
    """pyspf with lookups through an injected resolver (pyspf's own DNS layer is module-global)."""

    def __init__(self, resolver: Resolver, **kw: Any) -> None:
        self._resolver = resolver
        self._answers: dict[tuple[str, str], list[Any]] = {}
        super().__init__(**kw)

    def dns(self, name: str, qtype: str, cnames: Any = None, ignore_void: bool = False) -> list[Any]:
        if not name:
            raise spf.PermError("empty DNS name")
        name = str(name).rstrip(".").lower()
        if not all(0 < len(label) < 64 for label in name.split(".")):
            return []
        key = (name, qtype)
        if key in self._answers:
            result = self._answers[key]
        else:
            try:
                result = self._resolver.lookup(name, qtype, self.timeout)
            except TimeoutError as exc:
                raise spf.TempError(str(exc)) from None
            self._answers[key] = result
        if not result and not ignore_void:
            self.void_lookups += 1
            if self.void_lookups > spf.MAX_VOID_LOOKUPS:
                raise spf.PermError(f"void lookup limit of {spf.MAX_VOID_LOOKUPS} exceeded")
        return result


def check_spf(resolver: Resolver, ip: str, mail_from: str, helo: str, timeout: float) -> tuple[str, str]:
    """SPF (RFC 7208) result and explanation for a client IP, envelope sender and HELO. Blocking."""
    q = _SpfQuery(resolver, i=ip, s=mail_from or f"postmaster@{helo}", h=helo or "unknown", timeout=timeout,
                   querytime=timeout)
    result, _code, explanation = q.check()
    return str(result), str(explanation)


_DKIM_D = re.compile(rb"(?:^|;)\s*d\s*=\s*([^;\s]+)")


def check_dkim(resolver: Resolver, raw: bytes, timeout: float) -> tuple[str, str | None]:
    """DKIM (RFC 6376) verdict of the first signature and its signing domain. Blocking."""
    msg = BytesParser(policy=policy.compat32).parsebytes(raw, headersonly=True)
    sig = msg.get("DKIM-Signature")
    if sig is None:
        return "none", None
    m = _DKIM_D.search(re.sub(rb"\s+", b"", str(sig).encode("utf-8", "replace")))
    domain = m.group(1).decode("ascii", "replace").lower() if m else None

    def dnsfunc(name: bytes, timeout: float = timeout) -> bytes | None:
        try:
            records = resolver.lookup(name.decode("ascii").rstrip("."), "TXT", timeout)
        except TimeoutError as exc:
            raise dkim.DnsTimeoutError(str(exc)) from None
        return b"".join(records[0]) if records else None

    try:
        ok = dkim.DKIM(raw, timeout=int(max(timeout, 1))).verify(dnsfunc=dnsfunc)
    except dkim.DnsTimeoutError:
        return "temperror", domain
    except dkim.ValidationError as exc:  # RFC 8601: a body that no longer matches its hash is a fail
        return ("fail" if "body hash mismatch" in str(exc) else "permerror"), domain
    except (dkim.DKIMException, ValueError, IndexError, KeyError):
        return "permerror", domain
    return ("pass" if ok else "fail"), domain


async def mail_verdicts(
    resolver: Resolver, raw: bytes, *, client_ip: str | None, mail_from: str, helo: str, timeout: float
) -> Verdicts:
    """SPF and DKIM in worker threads, each bounded by ``timeout`` (``temperror`` when it runs out)."""

    async def bounded(fn: Callable[..., Any], *args: Any, default: Any) -> Any:
        try:
            return await asyncio.wait_for(asyncio.to_thread(fn, *args), timeout + 0.5)
        except asyncio.TimeoutError:
            return default

    dkim_task = bounded(check_dkim, resolver, raw, timeout, default=("temperror", None))
    if client_ip:
        spf_task = bounded(check_spf, resolver, client_ip, mail_from, helo, timeout, default=("temperror", "timed out"))
        (spf_result, spf_reason), (dkim_result, domain) = await asyncio.gather(spf_task, dkim_task)
    else:
        (dkim_result, domain), spf_result, spf_reason = await dkim_task, "none", "no client address"
    return Verdicts(spf=spf_result, spf_reason=spf_reason, dkim=dkim_result, dkim_domain=domain)
