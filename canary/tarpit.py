"""A per-peer tarpit: an allowance of probing commands per window, beyond which answers slow down
progressively, and the crossing is reported once per window.

Shared by everything an attacker can probe one value at a time: the MX (RCPT / VRFY / EXPN) and the
credential honeypots (a credential presented). The answers themselves stay the same for canaries and
other values (no oracle); the tarpit only makes walking a list slow and loud.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from canary.proxies import peer_key


@dataclass
class _Peer:
    start: float
    started_at: dt.datetime
    counts: dict[str, int] = field(default_factory=dict)
    carry: int = 0  # the previous window's excess: a peer that keeps probing stays slowed down
    reported: bool = False
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def total(self) -> int:
        return sum(self.counts.values()) + self.carry


@dataclass(frozen=True, slots=True)
class Pace:
    """What one counted command costs its peer: a delay, and whether it crossed the allowance."""

    peer: str
    delay: float
    crossed: bool
    counts: dict[str, int]
    window_start: dt.datetime
    lock: asyncio.Lock


class Tarpit:
    """Per-peer allowance of probing commands (``kinds``: RCPT / VRFY / EXPN, a credential presented) in
    a fixed window; a peer is an IPv4 address or an IPv6 /64 (:func:`canary.proxies.peer_key`).

    Beyond ``limit`` commands in ``window`` seconds the n-th extra reply waits ``n * step`` seconds, at
    most ``max_delay``; one peer's waits are served one at a time (a lock per peer), so opening more
    connections does not buy a peer more replies, and no other peer waits. A window that ended over
    the limit passes its excess to the next one (a peer cannot wait out the ramp and start afresh
    while it keeps probing); a peer quiet for a whole window starts clean. State is kept for the
    ``peers`` most recently active peers (LRU): spoofed or rotating addresses evict the oldest
    entries instead of growing memory. It counts commands, never their addresses, so it treats
    canaries and other addresses alike."""

    def __init__(self, limit: int, window: float, step: float, max_delay: float, peers: int, *,
                 kinds: Sequence[str], clock: Callable[[], float] = time.monotonic) -> None:
        self.limit, self.window, self.step, self.max_delay, self.peers = limit, window, step, max_delay, peers
        self.kinds = tuple(kinds)
        self._clock = clock
        self._state: OrderedDict[str, _Peer] = OrderedDict()

    def __len__(self) -> int:
        return len(self._state)

    def count(self, ip: str | None, kind: str) -> Pace:
        key = peer_key(ip)
        now = self._clock()
        peer = self._state.get(key)
        if peer is None or now - peer.start >= self.window:
            carry = max(0, peer.total - self.limit) if peer is not None and now - peer.start < 2 * self.window else 0
            peer = _Peer(start=now, started_at=dt.datetime.now(dt.timezone.utc), counts=dict.fromkeys(self.kinds, 0),
                         carry=carry, lock=peer.lock if peer is not None else asyncio.Lock())
        self._state[key] = peer
        self._state.move_to_end(key)
        while len(self._state) > self.peers:
            self._state.popitem(last=False)
        peer.counts[kind] = peer.counts.get(kind, 0) + 1
        excess = peer.total - self.limit
        crossed = excess > 0 and not peer.reported
        peer.reported = peer.reported or crossed
        delay = min(self.max_delay, self.step * excess) if excess > 0 else 0.0
        return Pace(key, delay, crossed, dict(peer.counts), peer.started_at, peer.lock)

    @staticmethod
    async def wait(pace: Pace) -> None:
        if pace.delay > 0:
            async with pace.lock:
                await asyncio.sleep(pace.delay)
