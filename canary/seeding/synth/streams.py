"""One random stream per concern of a seeding, each forked by name from one seed.

A seeding draws positions, child rows, names, locations and contact points. Were they all one stream,
a change in how many numbers one concern takes (one more try at a location) would shift every draw
after it: the next row's name, the orders' times. Forked streams keep each concern's draws the same
when another concern changes, so a seeding is reproducible piece by piece and two versions of one
concern can be compared on the same rows (paired), not on reshuffled ones.

A stream is ``random.Random`` seeded with the text "<seed>/<concern>" (hashed with SHA-512 by
:mod:`random`, so it does not depend on ``PYTHONHASHSEED``). Nothing here is secret beyond the seed: the
seeder derives that from the master key (:meth:`PostgresSeeder._target_rng`).
"""

from __future__ import annotations

import random


class Streams:
    """Named random streams forked from one seed (a fresh one from the OS when None)."""

    def __init__(self, seed: int | None) -> None:
        self.seed = random.SystemRandom().getrandbits(128) if seed is None else seed

    def __call__(self, concern: str) -> random.Random:
        """A new stream for ``concern``: the same numbers each time for the same seed and name."""
        return random.Random(f"{self.seed}/{concern}")

    @classmethod
    def drawn(cls, rng: random.Random) -> Streams:
        """Streams whose seed is drawn from ``rng`` (128 bits: two seedings never share one by chance)."""
        return cls(rng.getrandbits(128))
