"""What the credential sources share: the secrets a honeypot was presented (as blind-index lookups
in :func:`canary.store.registry.recognise`), keyed fingerprints for evidence, and the admission that
keeps a honeypot reachable under a connection flood (:class:`ConnectionGate`: per-peer and global caps
that shed the connection idle the longest instead of refusing a new one). The background reporter that
commits detections after an attacker-facing answer was sent, and the HEALTH event that pages when a
gate has to shed or refuse, are the kernel's (:mod:`canary.pressure`): the MX and the HTTP port use them too."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Generic, Protocol, TypeVar

import structlog

from canary.crypto import Keyring
from canary.store.registry import ValueKind

log = structlog.get_logger("canary.credentials")

#: Value kinds a secret presented to a honeypot (header, query, password) may be.
PRESENTED_KINDS: tuple[ValueKind, ...] = (ValueKind.TOKEN, ValueKind.AWS_KEY_ID, ValueKind.AWS_SECRET)


def fingerprint(keyring: Keyring, value: str) -> str:
    """A keyed fingerprint of a presented secret for evidence: correlatable, not reversible offline."""
    return keyring.blind_index(value, "fingerprint:presented").hex()


def presented_candidates(values: Sequence[str], kinds: Sequence[str] = PRESENTED_KINDS, limit: int = 8) -> list[tuple[str, str]]:
    """Every (kind, value) pair to look up for secrets presented to a honeypot, bounded."""
    seen: list[str] = []
    for v in values:
        if v and v not in seen and len(v) <= 4096:
            seen.append(v)
    return [(kind, v) for v in seen[:limit] for kind in kinds]


# -- connection admission: honeypots that cannot be starved -----------------------------------------
class Sheddable(Protocol):
    """A connection the gate may close to make room: ``sheddable`` is false only while it is being
    answered (a SCRAM proof being checked, an HTTP request waiting out its floor), true while it waits
    for its client or is already closing. ``shed`` closes it; False if it was already closing (its
    slot was free anyway: not counted as a shed)."""

    @property
    def sheddable(self) -> bool: ...

    def shed(self) -> bool: ...


C = TypeVar("C", bound=Sheddable)


class ConnectionGate(Generic[C]):
    """Admission for a honeypot's connections. A new connection is never turned away while some held
    connection is waiting for its client: beyond ``max_per_peer`` connections from one peer (address or
    IPv6 /64) that peer's connection idle the longest is shed, beyond ``max_connections`` the one idle
    the longest of all. Idle means "since it opened or last completed a message", not "since its last
    byte", so trickling bytes does not keep a connection fresh, and a real client mid-handshake (it
    has just completed a message) is the last to go. An attacker holding N idle connections therefore
    only loses them; to push out a real probe it must open more than the cap's worth of connections
    within the probe's own few-millisecond handshake. Only when every held connection is being
    answered is the new one refused. ``on_pressure(reason, peer)`` hears of every shed and refusal.

    Connections are kept in order of last progress (``OrderedDict``), so finding the one idle the
    longest and recording progress cost O(1) apart from skipping connections being answered."""

    def __init__(self, max_connections: int, max_per_peer: int, on_pressure: Callable[[str, str], None]) -> None:
        self.max_connections = max_connections
        self.max_per_peer = max_per_peer
        self.on_pressure = on_pressure
        self._all: OrderedDict[C, str] = OrderedDict()
        self._peers: dict[str, OrderedDict[C, None]] = {}

    def __len__(self) -> int:
        return len(self._all)

    def __iter__(self) -> Iterator[C]:
        return iter(list(self._all))

    def peer_count(self, peer: str) -> int:
        return len(self._peers.get(peer, ()))

    def admit(self, conn: C, peer: str) -> bool:
        """Make room for ``conn`` from ``peer`` (shedding if need be) and hold it; False: refused."""
        held = self._peers.get(peer)
        if held is not None and len(held) >= self.max_per_peer and not self._shed(held, "shed_peer_cap", peer):
            self.on_pressure("refused_peer_cap", peer)
            return False
        if len(self._all) >= self.max_connections and not self._shed(self._all, "shed_global_cap", peer):
            self.on_pressure("refused_global_cap", peer)
            return False
        self._all[conn] = peer
        self._peers.setdefault(peer, OrderedDict())[conn] = None
        return True

    def _shed(self, held: Mapping[C, object], reason: str, peer: str) -> bool:
        victim = next((c for c in held if c.sheddable), None)
        if victim is None:
            return False
        victim_peer = self._all.get(victim, peer)
        self.release(victim)
        if victim.shed():
            self.on_pressure(reason, victim_peer)
        return True

    def progress(self, conn: C) -> None:
        """``conn`` completed a message: it becomes the last to be shed."""
        peer = self._all.get(conn)
        if peer is None:
            return
        self._all.move_to_end(conn)
        self._peers[peer].move_to_end(conn)

    def release(self, conn: C) -> None:
        """``conn`` is gone (idempotent)."""
        peer = self._all.pop(conn, None)
        if peer is None:
            return
        held = self._peers[peer]
        held.pop(conn, None)
        if not held:
            del self._peers[peer]
