"""Canary contact points in datastore text, recognised by blind index, never by plaintext.

The copy sweep (:mod:`canary.health.sweep`) reads text out of a datastore's tables and asks, cell by
cell, whether it holds an active canary's e-mail address or phone number. The registry keeps only
HMAC blind indexes of those values (``canary_values.value_idx``, read key-free with
:func:`canary.store.registry.value_indexes`), so a candidate string is normalised, hashed with the
index key and looked up among those 16-byte digests. No canary value is decrypted, held in memory or
sent anywhere, and the text read is never logged.

Which strings are hashed (the prefilter: most cells of a table are names, addresses, codes and skip
the HMAC):

* e-mail: a cell that is an address (``local@domain.tld``); or, in a cell that contains ``@`` but is
  more than an address (JSON documents, ``Name <addr>``, free text), each address in it;
* phone: a cell that is a phone number (digits and ``+ ( ) . - /`` and spaces, 7 to 15 digits); or, in
  longer text, each phone-like run of digits. Registered phones are E.164 (``+15550100001``) while a
  table holds them in its own shape (``555-010-0001``, ``010-5550-0123``), so each candidate is hashed
  in international form (``+`` and its digits without leading zeros) and, unless it starts with
  ``+``, in national form for the country of each locale canaries were seeded in (country code and
  its digits without one trunk ``0``), as :func:`canary.seeding.synth.contacts.format_phone` writes
  them.

With ``prefilter=False`` (measured by ``bench/sweep.py``) every non-empty cell is hashed as an e-mail
address and, when it has digits, as a phone in every form: the same matches at a higher cost.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from canary.crypto import Keyring
from canary.store.registry import value_purpose

#: The kinds of canary values the sweep looks for.
KINDS = ("email", "phone")

#: Country calling code by seeding locale (the seeder's phone formatting uses the same table; a test
#: keeps the two equal).
COUNTRY_CODES: Mapping[str, str] = {"ko_KR": "82", "ja_JP": "81", "en_US": "1"}

MIN_TEXT = 6  # "a@b.co"; a phone has at least 7 digits
MAX_EMAIL = 254
MIN_DIGITS, MAX_DIGITS = 7, 15  # E.164 numbers have at most 15 digits

# bounded like RFC 5321 (local part <= 64, labels <= 63, a few labels) and anchored at the start of
# a local part, so a cell of long runs around an "@" costs linear time, not quadratic
_LOCAL = "A-Za-z0-9.!#$%&'*+/=?^_`|~-"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_EMAIL_IN_TEXT = re.compile(r"(?<![" + _LOCAL + r"])[" + _LOCAL + r"]{1,64}@" + _LABEL + r"(?:\." + _LABEL + r"){1,8}(?![A-Za-z0-9-])")
_EMAIL_CELL = re.compile(r"\s*(?:" + _EMAIL_IN_TEXT.pattern + r")\s*")
_PHONE_CELL = re.compile(r"\s*\+?[\d\s().\-/]{7,30}")
_PHONE_IN_TEXT = re.compile(r"(?<![\w+])\+?\d[\d ().\-/]{5,28}\d(?!\w)")
_NON_DIGIT = re.compile(r"\D+")
_DIGIT = re.compile(r"\d")


@dataclass
class Found:
    """What a scan found: ``canaries`` (canary id -> cells holding its values, in the order first found),
    ``columns`` (column index -> such cells), ``cells`` (cells with at least one canary
    value), ``hashed`` (HMACs computed)."""

    canaries: dict[int, int] = field(default_factory=dict)
    columns: dict[int, int] = field(default_factory=dict)
    cells: int = 0
    hashed: int = 0

    def add(self, other: Found) -> None:
        for cid, n in other.canaries.items():
            self.canaries[cid] = self.canaries.get(cid, 0) + n
        for col, n in other.columns.items():
            self.columns[col] = self.columns.get(col, 0) + n
        self.cells += other.cells
        self.hashed += other.hashed


def country_codes(locales: Iterable[str]) -> tuple[str, ...]:
    """The calling codes of these locales (unknown locales have none), without repeats."""
    return tuple(dict.fromkeys(COUNTRY_CODES[loc] for loc in locales if loc in COUNTRY_CODES))


class ValueMatcher:
    """Recognises active canaries' e-mail addresses and phone numbers in text by blind index.

    ``index`` is :func:`canary.store.registry.value_indexes` (digest -> (canary id, kind)). Pure CPU
    work: call :meth:`scan` in a worker thread."""

    def __init__(self, keyring: Keyring, index: Mapping[bytes, tuple[int, str]], *, codes: Sequence[str] = (),
                 prefilter: bool = True) -> None:
        self._index = dict(index)
        self._email: Callable[[str], bytes] = keyring.blind_indexer(value_purpose("email"))
        self._phone: Callable[[str], bytes] = keyring.blind_indexer(value_purpose("phone"))
        self.codes = tuple(codes)
        self.prefilter = prefilter

    def __repr__(self) -> str:  # never the digests
        return f"ValueMatcher(values={len(self._index)}, codes={self.codes!r}, prefilter={self.prefilter})"

    @property
    def empty(self) -> bool:
        return not self._index

    # -- candidates ------------------------------------------------------------------------------
    def _phone_forms(self, text: str) -> list[str]:
        """E.164 forms a phone-like string may stand for (international, then national per country)."""
        digits = _NON_DIGIT.sub("", text)
        if not MIN_DIGITS <= len(digits) <= MAX_DIGITS:
            return []
        forms = ["+" + digits.lstrip("0")]
        if not text.lstrip().startswith("+"):
            national = digits.removeprefix("0")  # one trunk 0
            for cc in self.codes:
                form = "+" + cc + national
                if len(form) <= MAX_DIGITS + 1 and form not in forms:
                    forms.append(form)
        return forms

    def _emails(self, text: str) -> list[str]:
        """E-mail candidates of one cell."""
        if not self.prefilter:
            stripped = text.strip()
            if not stripped:
                return []
            return [text, *(m.group() for m in _EMAIL_IN_TEXT.finditer(text) if m.group() != stripped)]
        if "@" not in text or len(text) < MIN_TEXT:
            return []
        if len(text) <= MAX_EMAIL and _EMAIL_CELL.fullmatch(text):
            return [text]
        return [m.group() for m in _EMAIL_IN_TEXT.finditer(text)]

    def _phones(self, text: str) -> list[str]:
        """Phone candidates (E.164 forms) of one cell."""
        if not self.prefilter:
            if not _DIGIT.search(text):
                return []
            digits = _NON_DIGIT.sub("", text)
            return ["+" + digits.lstrip("0"), *("+" + cc + digits.removeprefix("0") for cc in self.codes)]
        if len(text) < MIN_TEXT or _PHONE_IN_TEXT.search(text) is None:  # most cells: one failed search
            return []
        if _PHONE_CELL.fullmatch(text):
            return self._phone_forms(text)
        return [f for m in _PHONE_IN_TEXT.finditer(text) for f in self._phone_forms(m.group())]

    def candidates(self, text: str) -> list[tuple[str, str]]:
        """(kind, candidate) pairs of one cell, in the order they are hashed."""
        return [("email", c) for c in self._emails(text)] + [("phone", c) for c in self._phones(text)]

    # -- matching --------------------------------------------------------------------------------
    def match(self, text: str) -> list[tuple[int, str]]:
        """(canary id, kind) of each canary value in ``text`` (each once)."""
        found: list[tuple[int, str]] = []
        for kind, cand in self.candidates(text):
            hit = self._index.get(self._email(cand) if kind == "email" else self._phone(cand))
            if hit is not None and hit[1] == kind and hit not in found:
                found.append(hit)
        return found

    def scan(self, rows: Iterable[Sequence[str | None]]) -> Found:
        """Match every non-null cell of ``rows`` (one tuple of text per row, columns in a fixed order)."""
        result = Found()
        index, email, phone, emails, phones = self._index, self._email, self._phone, self._emails, self._phones
        canaries, columns = result.canaries, result.columns
        quick, phoneish = self.prefilter, _PHONE_IN_TEXT.search
        hashed = 0
        for row in rows:
            for col, text in enumerate(row):
                if text is None or quick and (len(text) < MIN_TEXT or "@" not in text and phoneish(text) is None):
                    continue  # the prefilter's fast path: neither an address nor digits that could be a phone
                here: set[int] | None = None
                for kind, cands, digest in (("email", emails(text), email), ("phone", phones(text), phone)):
                    for cand in cands:
                        hashed += 1
                        hit = index.get(digest(cand))
                        if hit is not None and hit[1] == kind:
                            here = here or set()
                            if hit[0] not in here:
                                here.add(hit[0])
                                canaries[hit[0]] = canaries.get(hit[0], 0) + 1
                if here:
                    columns[col] = columns.get(col, 0) + 1
                    result.cells += 1
        result.hashed = hashed
        return result
