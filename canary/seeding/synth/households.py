"""Households: canaries that share an address share a surname as often as the table's co-residents do.

Real rows come in households: of the rows whose address exactly two or three rows hold, most share
their surname with a co-resident (the independent bench table: 66%). A canary reaches that class only
by sharing a fresh address with another canary (:class:`FrequencyMatch` joins), and two canaries
drawn apart are strangers: "an address two or three rows hold, and no co-resident has my surname"
flagged 9-16% of canaries against 4% of real rows, a rule anyone with SELECT applies without labels.

The rate is the table's own, measured on the whole table, not the sample: both members of a pair are
rarely in a 2,000-row sample, so the seeder looks up the co-residents of the sampled rows whose
address two or three rows hold (:meth:`Households.asked`, one scan) and hands their names back
(:meth:`Households.learn`). A canary that joins canaries' address then takes one of their surnames at
that rate (:meth:`Households.surname_for`); one whose person is fixed (an owned mailbox names it) keeps
its own.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from canary.seeding.synth.frequency import Counts, surname_key

#: how many rows hold an address for its rows to count as a household (the class a join reaches)
HOUSEHOLD_ROWS = (2, 3)
#: sampled household rows below which the rate is not trusted (no renaming then)
MIN_HOUSEHOLD_ROWS = 20


@dataclass
class Households:
    """The table's share of household rows with a co-resident of their surname, and the surnames of
    the canaries drawn so far per address only canaries hold."""

    address: str  # the address column
    name: str  # the full-name column
    rate: float | None = None  # None until learnt (or when the sample has too few household rows)
    rows: int = 0  # sampled household rows the rate is measured on
    residents: dict[str, list[str]] = field(default_factory=dict)  # address -> canaries' surnames there

    def asked(self, counts: Counts, sample: Sequence[Mapping[str, str | None]]) -> list[str]:
        """The addresses whose rows :meth:`learn` needs: the sampled rows' whose address two or three
        rows of the whole table hold (``counts``: rows per address)."""
        out = {a for a in (r.get(self.address) for r in sample) if a is not None and counts[a] in HOUSEHOLD_ROWS}
        return sorted(out)

    def learn(self, sample: Sequence[Mapping[str, str | None]], residents: Iterable[tuple[str, str | None]]) -> None:
        """The rate, from ``residents`` ((address, full name) of every row of the table at the addresses
        :meth:`asked` named): of the sampled rows at those addresses, the share that has another
        row there with its surname (a row's own name counts once, so a household of two "Kim"s counts
        and a lone "Kim" does not)."""
        at: dict[str, list[str | None]] = {}
        for address, name in residents:
            at.setdefault(address, []).append(surname_key(name))
        shared = total = 0
        for r in sample:
            a = r.get(self.address)
            if a is None or not 2 <= len(at.get(a, ())) <= HOUSEHOLD_ROWS[-1]:
                continue
            own = surname_key(r.get(self.name))
            total += 1
            shared += own is not None and at[a].count(own) >= 2
        self.rows = total
        self.rate = shared / total if total >= MIN_HOUSEHOLD_ROWS else None

    def surname_for(self, rng: random.Random, address: str | None, real: int, sure: bool = False) -> str | None:
        """The surname a canary drawn to ``address`` (``real``: rows of the table holding it) takes
        from the canaries already there, at the table's rate (``sure``: always, a join another canary
        left as kin); None to keep its own (no household to join, no rate, or the draw says a stranger)."""
        if address is None or real or self.rate is None:
            return None
        there = self.residents.get(address)
        if not there or (not sure and rng.random() >= self.rate):
            return None
        return rng.choice(there)

    def add(self, address: str | None, surname: str) -> None:
        """A canary with ``surname`` now lives at ``address``."""
        if address is not None and surname:
            self.residents.setdefault(address, []).append(surname)
