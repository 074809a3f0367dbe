"""Canary contact points: unique e-mail addresses and phone numbers from pools that route back to us,
and owned numbers rendered in a table's phone shape."""

from __future__ import annotations

import math
import random
import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from canary.errors import SeedError
from canary.seeding.synth.shapes import MIN_SHARED


@dataclass
class ContactAllocator:
    """Hands out unique canary contact points from pools that route back to us.

    ``email_domains``: domains whose mail canary receives; ``mailboxes``: owned free-mail addresses
    forwarding to us; ``phone_numbers``: E.164 numbers we own.
    ``used`` holds values already allocated (by earlier deployments); every value is handed out once.
    With empty pools, contact points are synthetic (they then cannot alert on contact).
    """

    email_domains: Sequence[str] = ()
    phone_numbers: Sequence[str] = ()
    used: set[str] = field(default_factory=set)
    rng: random.Random = field(default_factory=random.Random)
    mailboxes: Sequence[str] = ()  # owned free-mail addresses, handed out whole at the table's provider shares (follow)
    beyond_mailboxes: int = 0  # e-mail values handed out after the mailboxes ran out
    domain_rows: Mapping[str, float] = field(default_factory=dict)  # the table's e-mail domains -> sampled rows (follow)
    _decided: bool = False  # next_mailbox chose the next e-mail value's mailbox (_chosen; None: none)
    _chosen: str | None = None
    _blocks: dict[str, list[str]] | None = None  # free owned numbers by block (all but the last 4 digits)
    _block_use: Counter[str] = field(default_factory=Counter)
    _block_area: dict[str, tuple[str | None, float]] = field(default_factory=dict)  # block -> (area code, table's rows with it)
    _domain_use: Counter[str] = field(default_factory=Counter)

    def follow(self, domain_rows: Mapping[str, float]) -> None:
        """Hand owned mailboxes out at the table's own provider shares (``domain_rows``: sampled rows
        per e-mail domain) rather than all first: see :meth:`next_mailbox`."""
        self.domain_rows = dict(domain_rows)

    def email(self, local: str, fallback_domain: str, redigit: Callable[[str], str] | None = None) -> str:
        """``local@domain``, unique; pool domains are used evenly (the least used so far first), so
        that each holds as few canaries as the pool allows. An owned mailbox is handed out whole,
        each once, when :meth:`next_mailbox` chooses one for this value. A local part already taken
        gets other trailing digits of the same length (its shape stays), else digits appended; drawn
        by ``redigit`` (local part -> another one, digits as the table's carry them) when given."""
        box = self.next_mailbox()
        self._decided, self._chosen = False, None
        if box is not None:
            self.used.add(box.lower())
            return box
        if self.mailboxes and not self._free_boxes():
            self.beyond_mailboxes += 1
        digits = re.search(r"\d+$", local)
        for attempt in range(50):
            if attempt == 0:
                cand_local = local
            elif redigit is not None and attempt < 40:
                cand_local = redigit(local)
            elif digits is not None and attempt < 40:  # taken: other digits of the same length keep its shape
                cand_local = local[:digits.start()] + "".join(self.rng.choice("0123456789") for _ in digits.group(0))
            else:
                cand_local = f"{local}{self.rng.randint(1, 9999)}"
            domain = self._least_used_domain() if self.email_domains else fallback_domain
            value = f"{cand_local}@{domain}"
            if value.lower() not in self.used:
                self.used.add(value.lower())
                self._domain_use[domain] += 1
                return value
        raise SeedError("cannot allocate a unique canary e-mail address (pool of domains too small?)")

    def renamed(self, old: str, local: str) -> str:
        """``old`` (an address :meth:`email` handed out) with ``local`` as its local part at the same
        domain, when that is free (a canary that took its co-resident's surname); else ``old``."""
        value = f"{local}@{old.rpartition('@')[2]}"
        if value.lower() in self.used:
            return old
        self.used.discard(old.lower())
        self.used.add(value.lower())
        return value

    def next_mailbox(self) -> str | None:
        """The owned mailbox :meth:`email` hands out next (None: an address at a pool domain), decided
        once per value. Without the table's shares (:meth:`follow`), the first free one in configured
        order. With them, a domain is drawn as often as the table's rows have it: the canary takes a
        free mailbox there; a domain fewer than ``MIN_SHARED`` sampled rows have (the long tail of
        small domains, which owned domains blend into) gives a pool-domain address. A provider the
        table has often but with no free mailbox lends its draw to the providers with free mailboxes
        and the long tail, each in proportion to its share times how near its size is (the smaller
        of the two sizes over the larger): all of it to the provider nearest its size would crowd
        that one, all of it in proportion to the shares would crowd the largest (bench: the first
        tells by how common the canary's domain is, the second by the domain's share; this measures
        between both). A mailbox at a domain no sampled row has is taken only when nothing else is left."""
        if self._decided:
            return self._chosen
        free = self._free_boxes()
        choice: str | None = None
        if free and self.domain_rows:
            domains = sorted(self.domain_rows)
            drawn = self.rng.choices(domains, [self.domain_rows[d] for d in domains])[0]
            rows = self.domain_rows[drawn]
            if drawn in free:
                choice = free[drawn][0]
            elif rows >= MIN_SHARED:
                held = [d for d in free if self.domain_rows.get(d, 0.0) > 0]
                tail = sum(n for d, n in self.domain_rows.items() if n < MIN_SHARED and d not in free)
                weights = [self.domain_rows[d] * min(rows, self.domain_rows[d]) / max(rows, self.domain_rows[d]) for d in held]
                weights.append(tail / rows)  # the long tail's domains hold about one row each
                if sum(weights) > 0:
                    pick = self.rng.choices([*held, ""], weights)[0]
                    choice = free[pick][0] if pick else None
                else:  # the table's own providers' mailboxes ran out and it has no long tail
                    choice = next(iter(free.values()))[0]
        elif free:
            choice = next(iter(free.values()))[0]
        self._decided, self._chosen = True, choice
        return choice

    def _free_boxes(self) -> dict[str, list[str]]:
        """Free owned mailboxes by domain (lower case), each domain's in configured order."""
        out: dict[str, list[str]] = {}
        for box in self.mailboxes:
            if box.lower() not in self.used:
                out.setdefault(box.rpartition("@")[2].lower(), []).append(box)
        return out

    def _least_used_domain(self) -> str:
        low = min(self._domain_use[d] for d in self.email_domains)
        return self.rng.choice([d for d in self.email_domains if self._domain_use[d] == low])

    def phone(self, area: Callable[[str], tuple[str | None, float]] | None = None) -> str | None:
        """An owned E.164 number not used before, or None when no pool is configured. Numbers are
        spread over the pool's blocks evenly (the block with the fewest canaries so far first), so
        no block of the numbering plan fills up with canaries (the table's rows seldom share one). With
        ``area`` (an owned number -> its area code as the table writes it and the table's rows with that
        code), the area code of the next block is drawn among those of the blocks with the fewest
        canaries, as often as the table's rows have it: canaries' area codes are then as common in the
        table as real rows' are as far as the pool's blocks allow (spread over the blocks alone, they
        follow the pool's mix, and an operator's pool holds codes few customers have as readily as the
        common ones). A code the table lacks is taken only when no other one is left among those blocks."""
        if not self.phone_numbers:
            return None
        if self._blocks is None:
            self._blocks = {}
            for p in self.phone_numbers:
                if p not in self.used:
                    self._blocks.setdefault(p[:-4], []).append(p)
            for numbers in self._blocks.values():
                self.rng.shuffle(numbers)
        free = [b for b, numbers in self._blocks.items() if numbers]
        if not free:
            raise SeedError(
                f"the phone pool is exhausted: all {len(self.phone_numbers)} owned numbers are already canary contact points"
            )
        low = min(self._block_use[b] for b in free)
        free = [b for b in free if self._block_use[b] == low]
        if area is not None:
            for b in free:
                if b not in self._block_area:
                    self._block_area[b] = area(self._blocks[b][0])
            rows: dict[str | None, float] = {}
            for b in free:
                code, n = self._block_area[b]
                rows[code] = n
            codes = sorted((c for c, n in rows.items() if n > 0), key=str)
            if codes:
                code = self.rng.choices(codes, [rows[c] for c in codes])[0]
                free = [b for b in free if self._block_area[b][0] == code]
        block = self.rng.choice(sorted(free))
        self._block_use[block] += 1
        value = self._blocks[block].pop()
        self.used.add(value)
        return value


_COUNTRY_CODES = {"ko_KR": "82", "ja_JP": "81", "en_US": "1"}


def format_phone(e164: str, template: str, locale: str) -> str:
    """Render an owned E.164 number (``+821055500123``) in a table's phone shape (``999-9999-9999``).

    Digits of the template are filled from the international form when the template starts with
    ``+`` or has as many digits as it (``1-999-999-9999``), else from the national form (trunk
    prefix ``0`` for KR/JP). If the digit counts differ, the
    national form is returned with the template's separator style as far as it fits.
    """
    digits = re.sub(r"\D", "", e164)
    cc = _COUNTRY_CODES.get(locale, "")
    national = digits[len(cc):] if cc and digits.startswith(cc) else digits
    if locale in ("ko_KR", "ja_JP"):
        national = "0" + national
    source = digits if template.startswith("+") else national
    if source is national and template.count("9") == len(digits) != len(national):
        source = digits  # the country code written without its plus (a North American "1-312-..." or "13125550123")
    if template.count("9") == len(source):
        it = iter(source)
        return "".join(next(it) if ch == "9" else ch for ch in template)
    # different length: keep the template's separator style, fill its digit groups from the right and
    # put leftover digits in a leading group ("999-9999" + 5550100123 -> "555-010-0123")
    groups = re.findall(r"9+|[^9]+", template.lstrip("+"))
    seps = [g for g in groups if not g.startswith("9")]
    sizes = [len(g) for g in groups if g.startswith("9")]
    sep = seps[0] if seps else ""
    parts: list[str] = []
    rest = source
    for size in reversed(sizes):
        if not rest:
            break
        parts.insert(0, rest[-size:])
        rest = rest[:-size]
    if rest:
        parts.insert(0, rest)
    return ("+" if template.startswith("+") else "") + sep.join(parts)


@dataclass(frozen=True, slots=True)
class MailboxNeeds:
    """What owned mailboxes a table needs for its canaries to blend at its own provider shares
    (:func:`mailbox_needs`): ``sizing`` lines for ``plan`` whatever is configured, ``warnings`` for a
    configured pool that stands out, and ``on_domains``: canaries expected at owned mail domains."""

    sizing: tuple[str, ...]
    warnings: tuple[str, ...]
    on_domains: int


def mailbox_needs(target: str, domain_rows: Mapping[str, float], canaries: int, mailboxes: Sequence[str],
                  k: int = MIN_SHARED, shown: int = 8) -> MailboxNeeds:
    """How many owned mailboxes each provider needs so that canaries' domains are as common in the
    table as real rows' are (the way :meth:`ContactAllocator.next_mailbox` hands them out): a provider
    holding 30% of the table's addresses (``domain_rows``: sampled rows per domain) needs 30% of the
    canaries' mailboxes there; the share of domains fewer than ``k`` sampled rows have (the long tail)
    goes to owned mail domains. Says plainly which configured domain stands out and why: a provider
    with fewer mailboxes than its share (its canaries move to other providers, making those more
    common among canaries than in the table), and mailboxes at a domain no sampled row has (a canary
    there is the only customer at its provider)."""
    total = sum(domain_rows.values())
    if not total or canaries <= 0:
        return MailboxNeeds((), (), canaries)
    have = Counter(box.rpartition("@")[2].lower() for box in mailboxes)
    common = sorted((d for d, n in domain_rows.items() if n >= k), key=lambda d: (-domain_rows[d], d))
    tail = sum(n for d, n in domain_rows.items() if n < k and d not in have) / total
    sizing: list[str] = []
    warnings: list[str] = []
    for i, d in enumerate(common):
        share = domain_rows[d] / total
        need = round(canaries * share)
        margin = need + math.ceil(2 * math.sqrt(need))  # canaries are drawn at random: room for a busy provider
        blends = have[d] >= need
        if (i < shown and need) or have[d]:
            sizing.append(f"{target}: {d} holds {share:.0%} of the table's addresses: {need} of {canaries} canaries' mailboxes "
                          f"belong there (about {margin} to be safe); {have[d]} configured: "
                          + (("blends" if blends else "STANDS OUT") if mailboxes else "none (owned mail domains take them)"))
        if have and not blends and need >= 2:
            warnings.append(f"{target}: {d} holds {share:.0%} of the table's addresses but has {have[d]} owned mailboxes for "
                            f"the {need} canaries its share needs; the other {need - have[d]} go to the providers nearest its "
                            f"size (and owned domains), which then hold more canaries than their share ([seeding].mailboxes)")
    rest = [d for d in common[shown:] if not have[d]]
    if rest:
        share = sum(domain_rows[d] for d in rest) / total
        sizing.append(f"{target}: {len(rest)} more providers of at least {k} sampled customers each, {share:.0%} of the table "
                      f"together: {round(canaries * share)} canaries' mailboxes belong there; without, they go to the "
                      f"configured providers nearest their size (which then hold more than their share)")
    on_domains = math.ceil(canaries * tail)
    sizing.append(f"{target}: {tail:.0%} of the table's addresses are at small domains (the long tail, each fewer than {k} "
                  f"sampled customers): {on_domains} canaries belong at owned mail domains ([seeding].email_domains)")
    for d in sorted(have):
        if d not in domain_rows:
            warnings.append(f"{target}: the {have[d]} owned mailbox{'es' if have[d] != 1 else ''} at {d} STAND OUT: no sampled "
                            f"customer of the table is "
                            f"at {d}, so a canary there is alone at its provider; they are used only once the table's own "
                            f"providers' mailboxes ran out in a table without small domains ([seeding].mailboxes)")
    # without mailboxes every canary is at an owned domain; with them, the long tail's share and those beyond the pool
    # (a provider without mailboxes lends a little to the long tail, too: next_mailbox)
    beyond = max(0, canaries - on_domains - len(mailboxes))
    return MailboxNeeds(tuple(sizing), tuple(warnings), on_domains + beyond if mailboxes else canaries)
