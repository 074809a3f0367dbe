"""Location columns (state, city, address / street, postcode) composed from parts that several
sampled rows share, so canaries keep the table's address grammar and region mix."""

from __future__ import annotations

import random
import re
import string
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import pairwise

from canary.seeding.catalog import TableInfo
from canary.seeding.synth.shapes import MIN_SHARED, Semantic, Weighted, semantic_of

_PLACE_FIRST = (Semantic.STATE, Semantic.CITY)
_PLACE_TEXT = (Semantic.ADDRESS, Semantic.STREET)
_PLACE_LAST = (Semantic.POSTCODE,)
_DIGITS_DASHES = re.compile(r"[\d-]+")
# distinct sampled words on each side of a word's place for a new word to go there (Parts.open): the
# independent bench table's streets and towns have 14-300, the slots that gave canaries misspellings of
# a closed class ("San _ Diego", "Glenwood _ Des", "Unit" before a number) 1-3
OPEN_SLOT = 10
#: the share of sampled words in a place of the address that no other row writes, below which a new
#: word never goes there (a street's type: 0.1% against 4-9% for street and town names; bench, independent table)
NEW_WORD_SHARE = 0.01
Token = tuple[int, str | None]  # (index into Splicer.columns, text; None for NULL)


@dataclass(frozen=True, slots=True)
class Parts:
    """What new values of the location columns are made of, so that a canary's location can hold a
    word or a postcode no other row holds as often as real rows do (a new apartment complex, a
    postcode of the same district nobody in the table has yet): beginnings and endings of words
    that at least ``k`` distinct sampled words share, and leading digits that ``k`` sampled values
    of a digit column (a postcode) share."""

    vocabulary: frozenset[str]  # the sampled address words (without digits: numbers are drawn anew anyway)
    beginnings: frozenset[str]  # word beginnings of at least ``piece`` characters k distinct words share
    endings: Mapping[str, Weighted]  # last character -> word endings (``piece`` letters and more) k distinct words share (by how many)
    digits: Mapping[int, frozenset[str]]  # column index -> leading digits k sampled values share
    longest: int  # longest sampled word
    piece: int = 2  # letters a new word's beginning and ending each have at least (:meth:`word`): half a typical word
    run: int = 2  # letters of a run (:attr:`runs`): ``piece``, 3 at most
    runs: frozenset[str] = frozenset()  # runs of ``run`` letters (case-folded) k distinct words have
    fillers: Mapping[str, int] = field(default_factory=dict)  # a word's slot ("<" left or ">" right neighbour) -> distinct words there
    news: Mapping[tuple[int, int, int], float] = field(default_factory=dict)  # a word's place (_place_in) -> share of words there no other sampled word is

    @classmethod
    def of(cls, rows: Sequence[tuple[Token, ...]], text_index: int, k: int, texts: Sequence[Sequence[str]]) -> Parts:
        """From the sampled rows' tokens and their address words in reading order (``texts``)."""
        vocabulary = {t for row in rows for i, t in row if i == text_index and t and not any(ch.isdigit() for ch in t)}
        cores = {_core(w).casefold() for w in vocabulary}
        lengths = sorted(len(c) for c in cores if c)
        piece = max(2, lengths[len(lengths) // 2] // 2) if lengths else 2
        run = min(piece, 3)
        runs = Counter(r for c in cores for r in {c[i:i + run] for i in range(len(c) - run + 1)})
        begins: Counter[str] = Counter()
        ends: Counter[str] = Counter()
        for w in vocabulary:
            begins.update(w[:c] for c in range(piece, len(w)))
            ends.update(w[c:] for c in range(1, len(w)))
        endings: dict[str, Counter[str]] = {}
        for e, n in ends.items():
            if n >= k and len(_core(e)) >= piece:
                endings.setdefault(e[-1], Counter())[e] = n
        digits: dict[int, Counter[str]] = {}
        for row in rows:
            for i, t in row:
                if i != text_index and t and t.isascii() and sum(ch.isdigit() for ch in t) * 2 > len(t):
                    d = re.sub(r"\D", "", t)
                    digits.setdefault(i, Counter()).update(d[:c] for c in range(1, len(d)))
        return cls(frozenset(vocabulary), frozenset(b for b, n in begins.items() if n >= k),
                   {ch: Weighted.of(c) for ch, c in endings.items()},
                   {i: frozenset(p for p, n in c.items() if n >= k) for i, c in digits.items()},
                   max((len(w) for w in vocabulary), default=0), piece, run, frozenset(r for r, n in runs.items() if n >= k),
                   _slot_fillers(texts), _new_word_shares(texts, k))

    def word(self, word: str, rng: random.Random) -> str | None:
        """A new word like ``word``: one of its beginnings that k words share, then an ending with
        its last character that k words share (None when none makes a word the sample lacks). Each
        part is at least :attr:`piece` letters, the word's letters are letters only where ``word``'s
        are, and every run of :attr:`run` letters in it is one k words have: cut anywhere, the parts
        made stubs and letters no word runs together ("Wr", "Jle", "Stsburg"), 2.4% of canaries'
        addresses against none of the real rows' (bench, independent table)."""
        core = _core(word)
        cuts = [c for c in range(self.piece, len(core) + 1) if word[:c] in self.beginnings]
        ends = self.endings.get(word[-1:])
        if not cuts or not ends:
            return None
        for _ in range(16):
            cut = rng.choice(cuts)
            ending = str(ends.pick(rng))
            got = word[:cut] + ending
            new = _core(got)
            if (got == word or got in self.vocabulary or len(got) > self.longest
                    or (core.isalpha() and not new.isalpha()) or not self._runs_known(new)):
                continue
            return got
        return None

    def open(self, words: Sequence[str], at: int) -> bool:
        """Whether the word at ``at`` of an address (``words``) sits where many different words do on
        both sides (:data:`OPEN_SLOT` distinct sampled words after its left neighbour and before its
        right one): a street's or a town's name, where real rows' lone words are. A street type, a
        unit's word or half of a two-word town has a handful of words beside its neighbours, so a new
        word there reads as a misspelling nobody makes: "Santon Diego", "Glenwood Avence", "Uniant
        1850" (0.5% of canaries against 0.02% of real rows, bench rule closed_slot_word). And where the
        sampled rows' words in its place of the address (:func:`_place_in`: its comma field, the words
        after and before it there) are words no other row writes at least :data:`NEW_WORD_SHARE` of the
        time: a street's type has 25 types around it, each written by hundreds ("22 W 29th Avence":
        0.5-1% of canaries' street lines ended in a word no real row's does, bench rule street_line_end_rare)."""
        return (all(self.fillers.get(slot, 0) >= OPEN_SLOT for slot in _slots(words, at))
                and self.news.get(_place_in(words, at), 0.0) >= NEW_WORD_SHARE)

    def _runs_known(self, core: str) -> bool:
        """Whether every run of :attr:`run` letters of ``core`` is one at least k sampled words have."""
        folded = core.casefold()
        return all(folded[i:i + self.run] in self.runs for i in range(len(folded) - self.run + 1))

    def number(self, index: int, value: str, rng: random.Random) -> str | None:
        """``value`` (a postcode) with the digits after its longest shared leading digits drawn anew."""
        shared = self.digits.get(index)
        digits = re.sub(r"\D", "", value)
        keep = max((c for c in range(1, len(digits)) if shared and digits[:c] in shared), default=0)
        if not keep or keep >= len(digits):
            return None
        fresh = digits[:keep] + "".join(rng.choice(string.digits) for _ in range(len(digits) - keep))
        if fresh == digits:
            return None
        it = iter(fresh)
        return "".join(next(it) if ch.isdigit() else ch for ch in value)


@dataclass(frozen=True, slots=True)
class Splicer:
    """Composes a row's location columns (state, city, address / street, postcode) from parts of
    several sampled rows, so canaries have the table's own address grammar and region mix.

    Each sampled row becomes one token sequence, coarse to fine: state, city, the words of the
    address (reversed when the table writes addresses fine-first, "12 Main St, Springfield"), then the
    postcode. Generation follows a random row's tokens while at least ``k`` sampled rows share the
    prefix (country, region, district, street...); every later token comes from a randomly chosen row
    among those sharing that prefix and with the same token class (digits masked, or the word's
    ending), so parts stay consistent where many people share them (a postcode of the same district)
    and no one's address is copied: a result held by fewer than ``k`` sampled rows (whatever its case)
    is rejected. A result is written in the case style of the row whose shape the walk followed
    (:meth:`_cased`), a number after a street's name has as many digits as that street's numbers
    (:meth:`_number_class`), and a result with a common word where fewer than k sampled rows put it
    in its field is rejected (:meth:`_in_place`). The sequences live only in memory for one seeding run.
    """

    columns: tuple[str, ...]
    rows: tuple[tuple[Token, ...], ...]
    reverse: bool
    text_index: int  # the column whose words are tokens (address / street)
    common: frozenset[Token]  # digit-masked tokens at least k sampled rows use, whatever their case
    held: Mapping[tuple[str | None, ...], int]  # address words -> sampled rows holding that address
    k: int = MIN_SHARED
    parts: Parts | None = None  # what new words and postcodes are made of
    echoes: frozenset[int] = frozenset()  # columns (a postcode) the number at the address's coarse end repeats
    styles: tuple[str, ...] = ()  # per sampled row, how its address is cased (:func:`_style`)
    #: a word (case-folded) -> its commonest spelling in mixed-case addresses, and all of its spellings there
    spelled: Mapping[str, tuple[str, frozenset[str]]] = field(default_factory=dict)
    #: a word -> the classes of the numbers after it by their digits' punctuation ("12," vs "12"), at least k (:meth:`_number_class`)
    numbers: Mapping[tuple[str, str], Sequence[Token]] = field(default_factory=dict)
    #: a word many sampled rows hold -> where it stands in its comma-separated field (:func:`_places_of`), how often
    places: Mapping[str, Counter[tuple[int, int]]] = field(default_factory=dict)
    #: the coarse fields (a town and state: words without numbers, as rows share them) of the sampled
    #: addresses with commas, so an address without them can be read the same way (:meth:`_town_end`)
    towns: frozenset[tuple[str, ...]] = frozenset()
    #: sampled row -> the number at its address's coarse end, where :attr:`rows` holds it digit-masked
    #: (a postcode the address repeats, which :meth:`echo` writes anew: :func:`_unechoed`)
    echoed: Mapping[int, Token] = field(default_factory=dict)
    #: :attr:`places` of the addresses written without commas (one field each: "719 S Beiler St Jasper IA
    #: 51785" puts "St" where no address with commas does)
    flat_places: Mapping[str, Counter[tuple[int, int]]] = field(default_factory=dict)
    #: the words at least k sampled street lines end with (:class:`LineEnds`), where such words end nearly
    #: all of them (a street's type); None where lines end in words of an open class
    line_ends: LineEnds | None = None
    memo: dict[tuple[Token, ...], Mapping[Token, list[int]]] = field(default_factory=dict, compare=False, repr=False)
    #: (prefix, position) -> the tokens the rows sharing the prefix have there, by class (memoised: on a
    #: table of distinct addresses every walk leaves the shared prefix at once and would otherwise
    #: classify every sampled row's tokens again)
    pools: dict[tuple[tuple[Token, ...], int], Mapping[Token, list[Token]]] = field(default_factory=dict, compare=False, repr=False)
    classes: dict[Token, Token] = field(default_factory=dict, compare=False, repr=False)
    ends: dict[int, tuple[str, ...]] = field(default_factory=dict, compare=False, repr=False)  # row -> _field_ends
    spreads: dict[tuple[tuple[Token, ...], int, Token], int] = field(default_factory=dict, compare=False, repr=False)
    by_ending: dict[tuple[tuple[Token, ...], int, Token], list[Token]] = field(default_factory=dict, compare=False, repr=False)
    words_by_ending: dict[tuple[tuple[Token, ...], int, Token], tuple[list[Token], int]] = field(default_factory=dict, compare=False, repr=False)
    fine: dict[tuple[Token, ...], int | None] = field(default_factory=dict, compare=False, repr=False)
    follows: dict[tuple[tuple[Token, ...], int, Token, Token], list[Token] | None] = field(default_factory=dict, compare=False, repr=False)
    #: per position j: (the word before it, class) -> the tokens at j of every sampled row after that word
    after: dict[int, dict[tuple[Token, Token], list[Token]]] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def of(cls, info: TableInfo, sample: Sequence[Mapping[str, str | None]], k: int = MIN_SHARED) -> Splicer | None:
        sems = {c.name: semantic_of(c) for c in info.columns if c.category == "S"}
        first = [n for sem in _PLACE_FIRST for n, s in sems.items() if s == sem]
        text = [n for n, s in sems.items() if s in _PLACE_TEXT][:1]
        last = [n for sem in _PLACE_LAST for n, s in sems.items() if s == sem]
        columns = tuple(first + text + last)
        if not text or len(sample) < 10 * k:
            return None
        words = [(v or "").split(" ") for v in (r.get(text[0]) for r in sample) if v]
        if len(words) < 10 * k or sum(len(w) for w in words) < 3 * len(words):
            return None  # short values: nothing to compose from
        exact = Counter(w for ws in words for w in set(ws))  # the coarse end is the one whose words many rows share
        reverse = sum(exact[ws[-1]] for ws in words) > sum(exact[ws[0]] for ws in words)
        rows = []
        t_index = columns.index(text[0])
        for r in sample:
            seq: list[Token] = []
            for i, name in enumerate(columns):
                v = r.get(name)
                if i == t_index and v is not None:
                    parts = v.split(" ")
                    seq.extend((i, p) for p in (reversed(parts) if reverse else parts))
                else:
                    seq.append((i, v))
            rows.append(tuple(seq))
        counts = Counter(m for row in rows for m in {(t[0], _mask(t[1]).casefold()) for t in row if t[1] is not None})
        held = Counter(_folded(t for i, t in row if i == t_index) for row in rows)
        echoes = frozenset(i for i, name in enumerate(columns) if i != t_index and _echoed(sample, text[0], name, reverse))
        styles = tuple(_style(r.get(text[0])) for r in sample)
        spellings: dict[str, Counter[str]] = {}
        for r, st in zip(sample, styles, strict=True):
            if st == "mixed":
                for w in (r.get(text[0]) or "").split(" "):
                    core = w.rstrip(",.;")
                    if core and not any(ch.isdigit() for ch in core):
                        spellings.setdefault(core.casefold(), Counter())[core] += 1
        spelled = {w: (c.most_common(1)[0][0], frozenset(c)) for w, c in spellings.items()}
        common = frozenset(t for t, n in counts.items() if n >= k)
        after: dict[tuple[str, str], list[Token]] = {}
        for row in rows:
            for a, b in pairwise(row):
                if a[0] == b[0] == t_index and a[1] and b[1] and not _numeric(a[1]) and _numeric(b[1]):
                    m = (t_index, _mask(b[1]).casefold())
                    if m in common:
                        after.setdefault((_norm(a)[1] or "", _skeleton(b[1])), []).append(m)
        numbers = {w: ms for w, ms in after.items() if len(ms) >= k}
        fields: dict[bool, list[str]] = {True: [], False: []}
        for r in sample:
            v = r.get(text[0])
            if v:
                fields["," in v].append(v)
        places, flat = _word_places(fields[True], k), _word_places(fields[False], k)
        walked, echoed = _unechoed(rows, sample, text[0], t_index) if echoes else (rows, {})
        return cls(columns, tuple(walked), reverse, t_index, common, held, k, Parts.of(rows, t_index, k, words), echoes,
                   styles, spelled, numbers, places, _towns(rows, t_index, reverse), echoed, flat, LineEnds.of(fields[True], k))

    def coarse_number(self, text: str | None) -> int:
        """1 when ``text`` (an address) has a number at its coarse end (a ZIP after the state), else 0:
        a trait the frequency match keeps at the real rows' share. The addresses a novel walk makes
        with a shape no row has end in a ZIP more often than real rows with one do (bench,
        independent table: 21% of them against 16%), so a match on the shape alone over-drew them."""
        if not text:
            return 0
        word = text.split(" ")[-1 if self.reverse else 0]
        return int(_numeric(word) and _has_digit(word))

    def comma_less(self, text: str | None) -> int:
        """1 when ``text`` (an address) is written without commas, else 0: a trait the frequency match
        keeps at the real rows' share (bench, independent table: 1% of canaries against 3.4% of real
        rows, whose few towns and streets give a novel walk a new shape less often)."""
        return int(bool(text) and "," not in str(text))

    def coarse_short(self, text: str | None) -> int:
        """1 when the word at ``text``'s coarse end (a number there aside) is two letters at most (a
        state's code, not its name: "CA" against "California"; a sido as "서울" against "서울특별시"),
        else 0: a trait the frequency match keeps at the real rows' share (bench, independent table:
        0.5% of canaries with a state spelt out against 2.8% of real rows)."""
        if not text:
            return 0
        ws = [w for w in text.split(" ") if w and not _numeric(w)]
        if not ws:
            return 0
        return int(len(ws[-1 if self.reverse else 0].strip(",.;")) <= 2)

    def echo(self, place: Mapping[str, str | None]) -> dict[str, str | None]:
        """``place`` with the number at its address's coarse end (a ZIP after the state) made the
        postcode's own, where the table's addresses repeat their postcode there (:attr:`echoes`):
        composed from two rows, or with a postcode drawn anew, they would disagree, which few real
        rows do and a thief checks without labels."""
        out = dict(place)
        text = self.columns[self.text_index]
        for i in self.echoes:
            value, code = out.get(text), out.get(self.columns[i])
            if value and code and "," in value:
                out[text] = self._numbered(value, code) or value
        return out

    def _numbered(self, value: str, code: str, was: str | None = None) -> str | None:
        """``value`` (an address) with the digits of its coarse end's number those of ``code``; with
        ``was``, only where the number repeated that (the postcode before a new one was drawn: "12 Oak
        St Springfield IL 62704" has no town field, and its ZIP would otherwise keep the old one).
        None where there is no such number."""
        ws = value.split(" ")
        at = len(ws) - 1 if self.reverse else 0
        word = ws[at]
        core = word.rstrip(",.;")
        digits = re.sub(r"\D", "", code)
        if not core or not digits or not _DIGITS_DASHES.fullmatch(core):
            return None
        if was is not None and not _repeats(core, re.sub(r"\D", "", was).lstrip("0")):
            return None
        n = sum(ch.isdigit() for ch in core)
        it = iter(digits.zfill(n)[:n] if len(digits) < n else digits[:n])
        ws[at] = "".join(next(it) if ch.isdigit() else ch for ch in core) + word[len(core):]
        return " ".join(ws)

    def freshen(self, place: Mapping[str, str | None], rng: random.Random, word: bool,
                unseen: Callable[[str, str], bool] | None = None) -> dict[str, str | None] | None:
        """``place`` (composed) with one part no sampled row has: with ``word``, a word of the address
        made of a beginning and an ending many words share, else a postcode's trailing digits drawn
        anew, until ``unseen(column, value)`` says no row of the table holds it (None when that does
        not work out). Real rows hold words and postcodes nobody else has; canaries whose every part
        comes from a sampled row never would. The word at the address's coarse end (its region or
        state) is kept: real rows' new words are streets and buildings, not regions."""
        if self.parts is None:
            return None
        out = dict(place)
        if not word:
            numbers = [i for i, c in enumerate(self.columns) if i in self.parts.digits and out.get(c)]
            if not numbers:
                return None
            i = rng.choice(numbers)
            col = self.columns[i]
            for _ in range(8):
                got = self.parts.number(i, str(out[col]), rng)
                if got is not None and (unseen is None or unseen(col, got)):
                    out[col] = got
                    out = self.echo(out)
                    value, was = out.get(self.columns[self.text_index]), place.get(col)
                    if value and was and not (i in self.echoes and "," in value):  # one the echo left that repeated it follows
                        out[self.columns[self.text_index]] = self._numbered(value, got, was=was) or value
                    return None if self._held(out.get(self.columns[self.text_index])) else out
            return None
        text = self.columns[self.text_index]
        value = out.get(text)
        if not value:
            return None
        ws = value.split(" ")
        at = [j for j, w in enumerate(ws) if w and not any(ch.isdigit() for ch in w)] or [j for j, w in enumerate(ws) if w]
        if len(at) > 1:  # the coarse end's word (a region, a state) is one of a few everybody shares: never a new one
            at.remove(at[-1] if self.reverse else at[0])
        at = [j for j in at if self.parts.open(ws, j)]
        rng.shuffle(at)
        for j in at[:3]:
            got = self.parts.word(ws[j], rng)
            if got is not None:
                # in the address's own case: its beginning and ending come from two words, maybe cased
                # apart ("MorINGTON"), so it is spelled as one word the style's way
                ws[j] = _restyle(got.lower(), _style(value), self.spelled)
                out[text] = " ".join(ws)
                out = self.echo(out)
                return None if self._held(out.get(text)) else out
        return None

    def _cls(self, tok: Token) -> Token:
        got = self.classes.get(tok)
        if got is None:
            got = self.classes[tok] = self._classify(tok)
        return got

    def _classify(self, tok: Token) -> Token:
        """A token's class, what the walk may put in its place: its digit-masked form where at least k
        sampled rows use it whatever its case (``ST,`` is ``St,``, a street's type: a class of its own
        in one case made the rows of upper-case tables fill their type with any word ending in a
        comma, a town's or a unit's: "20 VIEW WALNUTDALE, MANSFIELD, MN", 3% of canaries' street lines
        without a type against none of real rows'), else its ending (:func:`_ending`)."""
        if tok[1] is None:
            return tok
        m = (tok[0], _mask(tok[1]).casefold())
        if m in self.common:
            return m
        return _ending(tok)

    def _cls_at(self, row: int, j: int) -> Token:
        """The class of sampled row ``row``'s token at ``j`` (:meth:`_cls`); a rare word's with its
        place in its comma field too (:func:`_field_ends`). Rows are
        aligned from the address's coarse end, so where one street line has a word more than another
        ("848 E Fischer Ter #411," against "1037 8th Ter #376,"), a rare street type took any rare word
        of the same ending from the rows beside it: "247 6th Fischer #411", a street line without a
        type, which no real row has (bench: 1% of canaries)."""
        tok = self.rows[row][j]
        cls = self._cls(tok)
        return self._ending_at(row, j) if cls == _ending(tok) else cls

    def _pool(self, prefix: tuple[Token, ...], cands: Sequence[int], j: int) -> Mapping[Token, list[Token]]:
        hit = self.pools.get((prefix, j))
        if hit is None:
            grouped: dict[Token, list[Token]] = {}
            for c in cands:
                row = self.rows[c]
                if len(row) > j:
                    grouped.setdefault(self._cls_at(c, j), []).append(row[j])
            hit = self.pools[(prefix, j)] = grouped
        return hit

    def value(self, row: int, column: str) -> str | None:
        """Sampled row ``row``'s value of ``column`` (one of :attr:`columns`), as the table wrote it."""
        at = self.columns.index(column)
        got = [t for i, t in self._unmasked(self.rows[row], row) if i == at]
        if at != self.text_index:
            return got[0] if got else None
        if not got or got[0] is None:
            return None
        return " ".join(str(w) for w in (reversed(got) if self.reverse else got))

    def compose(self, rng: random.Random, novel: bool = False,
                within: Collection[int] | None = None) -> dict[str, str | None] | None:
        """Values for the location columns, or None if no new combination came up. With ``novel``, an
        address whose street comes from the rows of a wider region than the walk shared (a street
        name common in the table on a district the sample never pairs it with): most of a table's
        addresses are the only one of their kind, where the parts of the few sampled rows of one
        district add up to one of theirs far more often. With ``within`` (indexes of sampled rows),
        the walk follows those rows where any of them shares its prefix (a location in the same
        bucket as they are: the state an owned number's area code goes with)."""
        for attempt in range(10):
            seq = self._walk(rng, redraw=attempt >= 3, wide=novel, within=within)
            if seq is None:
                continue
            words = tuple(t for i, t in seq if i == self.text_index)
            if 0 < self.held.get(_folded(words), 0) < self.k:
                continue  # a sampled row's own address
            if novel and (not words or words[0] is None):
                continue
            out: dict[str, str | None] = {}
            for i, t in seq:
                if i != self.text_index:
                    out[self.columns[i]] = t
            if words and words[0] is not None:
                out[self.columns[self.text_index]] = " ".join(str(w) for w in (reversed(words) if self.reverse else words))
            else:
                out[self.columns[self.text_index]] = None
            out = self.echo(out)
            if self._held(out.get(self.columns[self.text_index])):
                continue  # the postcode repeated in it made it a sampled row's own address
            if not self._in_place(out.get(self.columns[self.text_index])):
                continue
            if self.line_ends is not None and not self.line_ends.allows(out.get(self.columns[self.text_index])):
                continue
            return out
        return None

    def _in_place(self, text: str | None) -> bool:
        """Whether each word many sampled rows hold stands where at least k of them (and one in a
        hundred) have it in their comma-separated fields (:func:`_places_of`). The parts of several rows'
        addresses put together can put a word where nobody writes it: a street type in the middle of a
        street's name ("29 East Street Lane"), one alone in a field of its own ("100 Oak St SE, Dr,
        Seattle"); the word is then as common as it is, but the address's own shape is one no real
        row has. An address without commas is measured against those the sample writes so: against
        the others, 59% of the compositions written so were thrown away, and 1% of canaries had an
        address without commas against 3.4% of real rows (bench, independent table)."""
        places = self.places if text is None or "," in text else self.flat_places
        for w, at in _places_of(text):
            seen = places.get(w)
            if seen is not None and seen[at] < max(self.k, seen.total() / 100):
                return False
        return True

    def _held(self, text: str | None) -> bool:
        """Whether ``text`` is an address fewer than k (but some) sampled rows hold."""
        if not text:
            return False
        ws = text.split(" ")
        return 0 < self.held.get(_folded(reversed(ws) if self.reverse else ws), 0) < self.k

    def _walk(self, rng: random.Random, redraw: bool = False, wide: bool = False,
              within: Collection[int] | None = None) -> tuple[Token, ...] | None:
        """One token sequence (None when the row it follows cannot be split: :meth:`_fine_start`);
        with ``redraw``, the numbers of the rare part are drawn afresh (when the parts of other rows
        keep adding up to a sampled row's own address); with ``wide``, the
        first token that leaves the shared prefix comes from the rows sharing all of it but its last
        token, too (a street of this city that the sample has in another district only)."""
        rows = self.rows
        cands: Sequence[int] = range(len(rows))
        levels: list[Sequence[int]] = [cands]  # levels[n]: the rows sharing the first n tokens
        out: list[Token] = []
        i = 0
        while True:
            inside = [c for c in cands if c in within] if within is not None else ()
            at = rng.choice(inside or cands)
            r = rows[at]
            if i >= len(r):
                return self._cased(self._unmasked(out, at), at)
            same = self._group(tuple(out), cands, i)[_norm(r[i])]
            if len(same) >= self.k:
                out.append(r[i])
                cands = same
                levels.append(cands)
                i += 1
                continue
            # coarse fields of the address (a city before the comma that ends the street line) are
            # taken whole from this row: a town the sample holds fewer than k times is still a real
            # town; its parts spliced with another's would be a city nobody lives in
            fine = self._fine_start(r)
            if fine is None:  # written without commas in a town no row with commas names: no telling its town from its street
                return None
            while i < fine:
                out.append(r[i])
                cands = self._group(tuple(out[:-1]), cands, i)[_norm(r[i])]
                levels.append(cands)
                i += 1
            # the next token from the rows sharing the prefix (a house number on this street), the
            # ones after it from those sharing it but its last token (the rest of an address in this
            # district), each from wider groups (the region, the table) until at least k different
            # tokens of its class are there to choose from: the few rows of one street would
            # otherwise hand one row's parts over whole
            prefix = tuple(out)
            if wide and prefix:  # the last token the walk followed (a street), from the wider region's
                out[-1] = self._wider(prefix[:-1], levels, len(prefix) - 1, rng, at) or out[-1]
                if _norm(out[-1]) != _norm(prefix[-1]):
                    # the rest (a postcode) from the rows of the token taken (a town's): from those of the
                    # token left, a town with another's ZIP area made a (town, ZIP area) pair no row has
                    # (bench rule postal3_alone_in_locality: 19-23% of canaries against 12% of real rows)
                    n = len(prefix) - 1
                    levels[n + 1] = self._group(prefix[:-1], levels[n], n).get(_norm(out[-1])) or levels[n + 1]
                    prefix = tuple(out)
            for j in range(i, len(r)):
                cls = self._cls_at(at, j)
                if (j > i or wide) and out and r[j][0] == self.text_index and _numeric(r[j][1]):  # a novel walk's street is not r's
                    cls = self._number_class(out[-1], j, cls, rng)
                if r[j][0] != self.text_index and r[j][1] is not None:
                    # another column's part (a postcode) from the rows sharing the most of the prefix:
                    # it names no one, and from a wider region it would not fit (another city's ZIP)
                    out.append(self._nearest(prefix, levels, j, cls, rng) or r[j])
                    continue
                level = len(prefix) if j == i or len(prefix) < 2 else len(prefix) - 1
                while level > 0 and r[j][1] is not None and self._spread(prefix[:level], levels[level], j, cls) < self.k:
                    level -= 1
                # and from the rows holding the word before it where k different words follow that one:
                # words go together (a dong and the apartment complex named after it)
                follow = self._follow(prefix[:level], levels[level], j, out[-1], cls) if j > i else None
                col, text = rng.choice(follow or self._pool(prefix[:level], levels[level], j)[cls])
                if wide and j == i:
                    col, text = self._wider(prefix, levels, j, rng, at) or (col, text)
                out.append((col, _redraw_digits(text, rng) if redraw and text is not None and col == self.text_index else text))
            return self._cased(self._unmasked(out, at), at)

    def _unmasked(self, seq: Sequence[Token], row: int) -> tuple[Token, ...]:
        """``seq`` (a walk that last followed sampled row ``row``) with the number at its address's
        coarse end, where that is masked (:attr:`echoed`), as ``row`` writes it: a ZIP of its town
        where the composed postcode is NULL, which :meth:`echo` otherwise rewrites as that postcode."""
        at = self.text_index
        if row not in self.echoed or len(seq) <= at or seq[at] != self.rows[row][at]:
            return tuple(seq)
        return (*seq[:at], self.echoed[row], *seq[at + 1:])

    def _number_class(self, prev: Token, j: int, cls: Token, rng: random.Random) -> Token:
        """The class (digits masked: how many) of a number after the word ``prev`` (a house number after
        its street's name): one of those the sampled rows write after that word, where at least k do
        (a street's numbers run to as many digits as its length allows: a number taken with its length
        from the row the walk follows, on another row's street, makes a (number, street) pair rarer than
        real rows' are); else ``cls`` (the followed row's)."""
        if prev[0] != self.text_index or prev[1] is None or _numeric(prev[1]):
            return cls
        same = self.numbers.get((_norm(prev)[1] or "", _skeleton(cls[1])))  # only how many digits: "12," is no house number
        if not same:
            return cls
        pick = rng.choice(same)
        return pick if pick in self._pool((), range(len(self.rows)), j) else cls

    def _cased(self, seq: tuple[Token, ...], row: int) -> tuple[Token, ...]:
        """``seq`` with its address words written the way the sampled row ``row`` (the one whose
        structure the walk followed) writes its address: all upper case, all lower case, or mixed,
        each word then spelled the way mixed-case addresses commonly spell it. The parts of an address
        come from several rows, and a table's rows each keep one style: a word of an upper-case row
        in a title-case address ("Los ANGELES") is what no real row holds."""
        if not self.styles:
            return seq
        style = self.styles[row]
        out = []
        for col, text in seq:
            if col == self.text_index and text is not None:
                text = _restyle(text, style, self.spelled)
            out.append((col, text))
        return tuple(out)

    def _follow(self, prefix: tuple[Token, ...], cands: Sequence[int], j: int, prev: Token, cls: Token) -> list[Token] | None:
        """The tokens of class ``cls`` at ``j`` of the rows sharing ``prefix`` whose token before it
        is the word ``prev`` (whatever its case), when they are at least k different ones; else those of the
        whole sample, again only when k different ones (None otherwise: the class's pool decides).
        Drawing each word from its own pool would combine one row's dong with another's apartment
        complex: a pair of words no real row has, and the (locality, postcode) pairs built on it
        rarer than real rows'. At least k different words to choose from, so no row's pair of
        words is handed over as the only one (memoised)."""
        if prev[1] is None or any(ch.isdigit() for ch in prev[1]):
            return None  # numbers are drawn anew: nothing goes with one (following them would chain one row's words)
        p = _norm(prev)
        key = (prefix, j, cls, p)
        if key in self.follows:
            return self.follows[key]
        got: list[Token] | None = None
        if prefix:  # the rows sharing the prefix (with none, that is the whole sample: below)
            got = [self.rows[c][j] for c in cands if len(self.rows[c]) > j
                   and _norm(self.rows[c][j - 1]) == p and self._cls_at(c, j) == cls]
            if len({_norm(t) for t in got}) < self.k:
                got = None
        if got is None:
            got = self._after(j).get((p, cls))
        self.follows[key] = got
        return got

    def _after(self, j: int) -> dict[tuple[Token, Token], list[Token]]:
        """Position ``j``'s tokens of the whole sample by the word before them and their class, where they
        are at least k different words (one pass over the sample per position)."""
        index = self.after.get(j)
        if index is None:
            found: dict[tuple[Token, Token], list[Token]] = {}
            for c, r in enumerate(self.rows):
                if len(r) > j:
                    found.setdefault((_norm(r[j - 1]), self._cls_at(c, j)), []).append(r[j])
            index = self.after[j] = {key: toks for key, toks in found.items() if len({_norm(t) for t in toks}) >= self.k}
        return index

    def _wider(self, prefix: tuple[Token, ...], levels: Sequence[Sequence[int]], j: int, rng: random.Random,
               row: int) -> Token | None:
        """A token for position ``j`` ending like sampled row ``row``'s there in the same place
        of its comma field (:meth:`_ending_at`: a street's type is not a neighbourhood's name, "623 N
        Wilfield Elmridgeville, Dayton, OH") from the rows sharing all of ``prefix`` but
        its last token, when the rows sharing all of it have k different such tokens there (an open
        vocabulary like a district's streets, not the districts of a city); else None. Never a
        number, nor for one: a token ending like a highway's number ("27,") would otherwise be a
        street's suffix or a PO box's number from the wider region ("55 Hill 9559, Peoria"), and a
        unit's number ("6D,") the street's type ("18 Oak 6D, River Valley": 0.6% of novel walks)."""
        # a number at the coarse end (a ZIP the walk reads masked, _unechoed) is no region: "99999, MA"
        # cut to "99999" would take a town of any state ("..., Jasper, MA")
        tok = self.rows[row][j]
        coarse = len(prefix) > self.text_index and _numeric(prefix[self.text_index][1])
        if tok[1] is None or len(prefix) - coarse < 2 or _has_digit(tok[1]):
            return None
        ending = self._ending_at(row, j)
        if self._words(prefix, levels[len(prefix)], j, ending)[1] < self.k:
            return None
        wider = self._words(prefix[:-1], levels[len(prefix) - 1], j, ending)[0]
        return rng.choice(wider) if wider else None

    def _ending_at(self, row: int, j: int) -> Token:
        """Sampled row ``row``'s token at ``j`` as :meth:`_wider` matches it: its ending, and for an
        address word its place in its comma field (:func:`_field_ends`)."""
        tok = self.rows[row][j]
        got = _ending(tok)
        if tok[0] != self.text_index or tok[1] is None:
            return got
        return (got[0], f"{got[1]}@{self._ends_of(row)[j]}")

    def _ends_of(self, row: int) -> tuple[str, ...]:
        """:func:`_field_ends` of sampled row ``row`` (memoised)."""
        ends = self.ends.get(row)
        if ends is None:
            ends = self.ends[row] = _field_ends(self.rows[row], self.text_index, self.reverse)
        return ends

    def _words(self, prefix: tuple[Token, ...], cands: Sequence[int], j: int, ending: Token) -> tuple[list[Token], int]:
        """:meth:`_endings` without tokens holding digits (numbers, units), and how many different tokens
        they are (memoised: a novel walk asks on every composition, and filtering a region's streets each
        time is O(streets))."""
        key = (prefix, j, ending)
        got = self.words_by_ending.get(key)
        if got is None:
            words = [t for t in self._endings(prefix, cands, j, ending) if not _has_digit(t[1])]
            got = self.words_by_ending[key] = (words, len({_norm(t) for t in words}))
        return got

    def _endings(self, prefix: tuple[Token, ...], cands: Sequence[int], j: int, ending: Token) -> list[Token]:
        """The tokens at ``j`` of the rows sharing ``prefix`` that end like ``ending`` in the same place of
        their comma field (:meth:`_ending_at`; memoised)."""
        key = (prefix, j, ending)
        got = self.by_ending.get(key)
        if got is None:
            got = self.by_ending[key] = [self.rows[c][j] for c in cands if len(self.rows[c]) > j and self._ending_at(c, j) == ending]
        return got

    def _nearest(self, prefix: tuple[Token, ...], levels: Sequence[Sequence[int]], j: int, cls: Token,
                 rng: random.Random) -> Token | None:
        """A token of class ``cls`` at ``j`` from the rows sharing the longest part of ``prefix`` that
        has one (None when no row has one)."""
        for level in range(len(prefix), -1, -1):
            pool = self._pool(prefix[:level], levels[level], j).get(cls)
            if pool:
                return rng.choice(pool)
        return None

    def _fine_start(self, row: tuple[Token, ...]) -> int | None:
        """Where the finest comma-separated field of a row's address starts (its street line); the
        fields before it are coarse (a city, a state). Without commas: after its longest beginning
        that is a town rows with commas write (:attr:`towns`); None when there is none and the
        table's addresses have towns (which of its words are the town then is unknown)."""
        if row in self.fine:
            return self.fine[row]
        got = _comma_fine_start(row, self.text_index, self.reverse)
        if got is None:
            got = self._town_end(row)
        self.fine[row] = got
        return got

    def _town_end(self, row: tuple[Token, ...]) -> int | None:
        """Where the street line of an address without commas starts: after the longest beginning
        of its words (numbers aside: a ZIP) that is the coarse fields of a row with commas
        (``Philadelphia PA 19104`` ends like ``..., Philadelphia, PA``), else where its text starts.
        Without this the walk drew a comma-less address's state, town and ZIP each from another row
        ("Los Angeles CA 47695" with postcode 79509): 3.6% of real rows are written so, 0.5% of
        canaries were, and those broken."""
        text = [j for j, (i, _) in enumerate(row) if i == self.text_index]
        if not text:
            return 0
        key: list[str] = []
        got = None if self.towns else text[0]
        for j in text:
            word = _norm(row[j])[1] or ""
            if _numeric(word):
                continue
            key.append(word)
            if tuple(key) in self.towns:
                got = j + 1
        return got

    def _spread(self, prefix: tuple[Token, ...], cands: Sequence[int], j: int, cls: Token) -> int:
        """How many different tokens of class ``cls`` the rows sharing ``prefix`` have at ``j`` (whatever
        their case: "OAK" and "Oak" are one street, and counted as two they kept the walk among fewer rows)."""
        key = (prefix, j, cls)
        got = self.spreads.get(key)
        if got is None:
            got = self.spreads[key] = len({_norm(t) for t in self._pool(prefix, cands, j).get(cls, ())})
        return got

    def _group(self, prefix: tuple[Token, ...], cands: Sequence[int], i: int) -> Mapping[Token, list[int]]:
        """Rows sharing ``prefix``, grouped by their next token (memoised: walks share prefixes)."""
        hit = self.memo.get(prefix)
        if hit is None:
            groups: dict[Token, list[int]] = {}
            for c in cands:
                if len(self.rows[c]) > i:
                    groups.setdefault(_norm(self.rows[c][i]), []).append(c)
            hit = self.memo[prefix] = groups
        return hit


#: share of the sampled street lines (those ending in a word) whose last word k of them end with, above
#: which the words a line ends with are a closed class (a street's types: St, Ave, Rd...)
CLOSED_ENDS = 0.95


@dataclass(frozen=True, slots=True)
class LineEnds:
    """How sampled street lines end: the last word of an address's first comma-separated field, its
    unit aside (trailing tokens with digits, and a word at least k lines put right before those: "Apt.
    20", "#7", "Ste 100"). Where k or more lines end with each of nearly all such words, a composed
    line must end with one of them: a walk that joins two streets' names without the type ("747
    Fourth Doyle Apt. 20", "123 Lincoln #7") ends its line with a word no real row ends one with, which
    a thief counts without any label."""

    ends: frozenset[str]
    units: frozenset[str]

    @classmethod
    def of(cls, texts: Sequence[str], k: int) -> LineEnds | None:
        before_unit = Counter(w for t in texts if (w := _unit_word(_line_words(t))))
        units = frozenset(w for w, n in before_unit.items() if n >= k)
        ends = Counter(e for t in texts if (e := _line_end(_line_words(t), units)))
        common = frozenset(e for e, n in ends.items() if n >= k)
        total = sum(ends.values())
        if total < 10 * k or sum(ends[e] for e in common) < CLOSED_ENDS * total:
            return None
        return cls(common, units)

    def allows(self, text: str | None) -> bool:
        """Whether ``text`` (an address) has no street line or one ending like k sampled ones."""
        if not text or "," not in text:
            return True
        end = _line_end(_line_words(text), self.units)
        return not end or end in self.ends


def _line_words(text: str) -> list[str]:
    """The words of an address's first comma-separated field (its street line), case-folded."""
    return text.split(",")[0].casefold().split() if "," in text else []


def _before_number(words: Sequence[str]) -> tuple[int, bool]:
    """(how many words of a street line come before its trailing tokens with digits, whether a word
    there precedes a number: "Apt. 20" does, "#7" carries its own sign)."""
    j = len(words)
    while j and _has_digit(words[j - 1]):
        j -= 1
    return j, 1 < j < len(words) and words[j][:1].isdigit()


def _unit_word(words: Sequence[str]) -> str | None:
    """The word right before a line's trailing number ("apt." of "12 Oak St Apt. 20"), None without one."""
    j, numbered = _before_number(words)
    return words[j - 1] if numbered else None


def _line_end(words: Sequence[str], units: Collection[str]) -> str | None:
    """A street line's last word without its unit (trailing tokens with digits and a unit word before
    a number: :func:`_unit_word`) and trailing dots; None where it ends in a number or a parenthesised part (a highway's, a
    Korean address's dong) or has one word."""
    j, numbered = _before_number(words)
    if numbered and words[j - 1] in units:  # ("Box #7" is no unit's)
        j -= 1
    if j < 2:
        return None
    last = words[j - 1].rstrip(".")
    return None if not last or last.startswith("(") or _has_digit(last) else last


def _field_ends(row: tuple[Token, ...], text_index: int, reverse: bool) -> tuple[str, ...]:
    """Per token of a sampled row, for an address word, its place in its comma field as the walk
    compares words: how many words follow it there (3 at most), whether any precedes it, and whether
    the field is the first (the street line): "1037 8th Ter #376, Los Angeles, CA" gives 3-s 2bs 1bs
    0bs, 1-f 0bf, 0-f ("" for other columns' parts). Finer (how many precede it) made the rows of one
    street line's length alone a word's peers, and novel walks found a new shape a third less often."""
    text = [j for j, (i, _) in enumerate(row) if i == text_index]
    order = list(reversed(text)) if reverse else text  # the address's words as written
    fields: list[list[int]] = [[]]
    for j in order:
        fields[-1].append(j)
        if (row[j][1] or "").endswith(","):
            fields.append([])
    out = [""] * len(row)
    for at, words in enumerate(fields):
        for n, j in enumerate(words):
            out[j] = f"{min(len(words) - 1 - n, 3)}{'b' if n else '-'}{'s' if at == 0 else 'f'}"
    return tuple(out)


def _comma_fine_start(row: tuple[Token, ...], text_index: int, reverse: bool) -> int | None:
    """:meth:`Splicer._fine_start` of a row whose address has commas (None for one without)."""
    text = [j for j, (i, t) in enumerate(row) if i == text_index]
    commas = [j for j in text if (row[j][1] or "").endswith(",")]
    if not text or not commas:
        return None
    if reverse:
        return commas[-1]
    # written coarse first: the fields before the one holding the first number (its street
    # line); the fields after it are finer still (a unit, a parenthesised dong and building),
    # never a town to keep whole (that copied one row's street, number and unit)
    got = text[0]
    for j in text:
        word = row[j][1] or ""
        if any(ch.isdigit() for ch in word):
            break
        if word.endswith(","):
            got = j + 1
    return min(got, text[-1])


def _towns(rows: Iterable[tuple[Token, ...]], text_index: int, reverse: bool) -> frozenset[tuple[str, ...]]:
    """The coarse fields of the rows whose addresses have commas, each as its words without numbers
    (:func:`_norm`), in walk order (:attr:`Splicer.towns`)."""
    out: set[tuple[str, ...]] = set()
    for row in rows:
        end = _comma_fine_start(row, text_index, reverse)
        if end:
            words = tuple(_norm(t)[1] or "" for t in row[:end] if t[0] == text_index and not _numeric(t[1]))
            if words:
                out.add(words)
    return frozenset(out)


def _unechoed(rows: Sequence[tuple[Token, ...]], sample: Sequence[Mapping[str, str | None]], text: str,
              t_index: int) -> tuple[list[tuple[Token, ...]], dict[int, Token]]:
    """``rows`` with the number at the coarse end of each address with a town field (a ZIP after the
    state, in a table whose addresses repeat their postcode there: :func:`_echoed`) digit-masked, and
    those numbers by row. The walk groups rows by their tokens from the coarse end on, and a ZIP is
    shared by fewer than k sampled rows: an address written "..., Springfield, IL 62704" was spliced
    only from its own town's rows of that ZIP, so a novel walk found no wider street for it (bench,
    independent table: 13% of such novel walks had an address shape no row has, 28% of those without
    a ZIP, and 5% of canaries ended in a ZIP against 14% of real rows). Masked, they share their town
    with the other rows written so, and :meth:`Splicer.echo` writes the composed postcode there."""
    walked = list(rows)
    echoed: dict[int, Token] = {}
    for n, (row, r) in enumerate(zip(rows, sample, strict=True)):
        value = r.get(text)
        if not value or "," not in value or len(row) <= t_index:
            continue
        tok = row[t_index]
        if tok[0] == t_index and _numeric(tok[1]) and _has_digit(tok[1]):
            echoed[n] = tok
            walked[n] = (*row[:t_index], (t_index, _mask(tok[1])), *row[t_index + 1:])
    return walked, echoed


def _repeats(number: str, code: str) -> bool:
    """Whether an address's ``number`` repeats postcode digits ``code`` (leading zeros aside; a ZIP+4
    or a lost leading zero on either side still does)."""
    a = re.sub(r"\D", "", number).lstrip("0")
    return bool(a) and bool(code) and (a.startswith(code) or code.startswith(a))


def _echoed(sample: Sequence[Mapping[str, str | None]], text: str, column: str, reverse: bool) -> bool:
    """Whether the sampled rows whose address ends (at its coarse end) in a number nearly all repeat
    ``column``'s value there (``..., Springfield, IL 62704`` with postcode 62704; a lost leading zero
    or a ZIP+4 of either still repeats it): at least 9 in 10 of at least ``10 * MIN_SHARED`` such rows.
    Only addresses with a town field (a comma) count: in ``12 Oak St Unit 12`` the number is a unit, and
    a table whose unit numbers happen to equal their postcodes would have every composed unit rewritten
    (a composition that then matched a sampled row's address was thrown away and tried again: 10,000
    canaries into such a table took 67 s instead of 22 s)."""
    held = same = 0
    for r in sample:
        value, code = r.get(text), r.get(column)
        if not value or not code or "," not in value:  # a postcode sits in a town field, after the street line
            continue
        word = value.split(" ")[-1 if reverse else 0].rstrip(",.;")
        if not word or not _DIGITS_DASHES.fullmatch(word) or not any(ch.isdigit() for ch in word):
            continue
        held += 1
        same += _repeats(word, re.sub(r"\D", "", code).lstrip("0"))
    return held >= 10 * MIN_SHARED and same >= 0.9 * held


def coarse_key(text: str | None) -> str | None:
    """The place of an address as an insider counts it: its last two comma-separated fields without
    digits or dashes, in lower case (``12 Main St, Springfield, IL`` -> ``springfield|il``; a Korean
    address's unit and parenthesised dong and building), "" for an address without a comma. How
    many rows share it tells how common a canary's town is: a composed address must be in a town
    as common as a real row's, not only on a street as common."""
    if not text:
        return text
    if "," not in text:
        return ""
    return "|".join(_DIGITS_DASHES.sub("", f).strip().lower() for f in text.rsplit(",", 2)[-2:])


def _word_places(texts: Iterable[str], k: int) -> dict[str, Counter[tuple[int, int]]]:
    """Per word at least 10 k times in ``texts`` (addresses), where it stands (:func:`_places_of`), how often."""
    places: dict[str, Counter[tuple[int, int]]] = {}
    for v in texts:
        for w, at in _places_of(v):
            places.setdefault(w, Counter())[at] += 1
    return {w: c for w, c in places.items() if c.total() >= 10 * k}


def _places_of(text: str | None) -> list[tuple[str, tuple[int, int]]]:
    """Each word of an address without digits (case-folded, its punctuation aside) with where it stands
    in its comma-separated field: (words before it, words after it), each at most 3."""
    out = []
    for f in (text or "").split(","):
        ws = f.split()
        for j, w in enumerate(ws):
            core = w.strip(".;#()").casefold()
            if core and not any(ch.isdigit() for ch in core):
                out.append((core, (min(j, 3), min(len(ws) - 1 - j, 3))))
    return out


def _skeleton(text: str | None) -> str:
    """A token without its digits (``"12,"`` -> ``","``)."""
    return re.sub(r"\d", "", text or "")


def _folded(words: Iterable[str | None]) -> tuple[str | None, ...]:
    """Address words as a key whatever their case (a sampled row's address in another case is still its own)."""
    return tuple(w.casefold() if w is not None else None for w in words)


def _style(text: str | None) -> str:
    """How an address is cased: "upper" (every letter), "lower" (every letter), else "mixed"."""
    letters = [ch for ch in text or "" if ch.isalpha()]
    if letters and all(ch.isupper() for ch in letters):
        return "upper"
    if letters and all(ch.islower() for ch in letters):
        return "lower"
    return "mixed"


def _restyle(word: str, style: str, spelled: Mapping[str, tuple[str, frozenset[str]]]) -> str:
    """``word`` in ``style`` (:func:`_style`); in "mixed", a word without digits as it is where
    mixed-case addresses spell it so (a lower-case state some of them write), else as they commonly
    spell it (``spelled``), else, when it is all in one case, capitalised."""
    if style == "upper":
        return word.upper()
    if style == "lower":
        return word.lower()
    core = word.rstrip(",.;")
    if not core or any(ch.isdigit() for ch in core):
        return word
    known = spelled.get(core.casefold())
    if known is not None:
        return word if core in known[1] else known[0] + word[len(core):]
    if core != core.upper() and core != core.lower():
        return word
    return core[:1].upper() + core[1:].lower() + word[len(core):]


def _core(word: str) -> str:
    """A word without its trailing punctuation ("Springfield," -> "Springfield")."""
    return word.rstrip(",.;")


def _norm(tok: Token) -> Token:
    """A token as rows share it, whatever its case and trailing punctuation ("Springfield," and
    "SPRINGFIELD" are one city)."""
    return tok if tok[1] is None else (tok[0], tok[1].rstrip(",.;").casefold())


def _ending(tok: Token) -> Token:
    """A token's coarse class: its column, an opening parenthesis, its last character."""
    return tok if tok[1] is None else (tok[0], "(" * tok[1].startswith("(") + "~" + tok[1][-1:])


def _numeric(text: str | None) -> bool:
    """Whether a token is a number (digits and dashes, its trailing punctuation aside: "27,", "12-3")."""
    return text is not None and bool(_DIGITS_DASHES.fullmatch(text.rstrip(",.;")))


def _slots(words: Sequence[str], at: int) -> tuple[str, str]:
    """The two slots of the word at ``at``: after its left neighbour, before its right one (digits
    masked, case folded: "after a house number", "before 'Diego'"; "^" and "$" at the ends)."""
    left = _mask(words[at - 1]).casefold() if at else "^"
    right = _mask(words[at + 1]).casefold() if at + 1 < len(words) else "$"
    return "<" + left, ">" + right


def _place_in(words: Sequence[str], at: int) -> tuple[int, int, int]:
    """Where the word at ``at`` of an address stands: its comma field's index, the words after it and
    before it in that field (each counted to 3: "12 Oak St, Dayton, OH": "St" is (0, 0, 2))."""
    field = sum(1 for w in words[:at] if w.endswith(","))
    start = at
    while start > 0 and not words[start - 1].endswith(","):
        start -= 1
    end = at
    while end < len(words) - 1 and not words[end].endswith(","):
        end += 1
    return min(field, 3), min(end - at, 3), min(at - start, 3)


def _new_word_shares(texts: Sequence[Sequence[str]], k: int) -> dict[tuple[int, int, int], float]:
    """Per place of an address (:func:`_place_in`) with at least 10 k sampled words (letters only), the
    share of them that no other sampled address writes (case folded)."""
    words = Counter(w.rstrip(",.;").casefold() for ws in texts for w in ws)
    seen: dict[tuple[int, int, int], list[int]] = {}
    for ws in texts:
        for at, w in enumerate(ws):
            core = w.rstrip(",.;")
            if core.isalpha():
                got = seen.setdefault(_place_in(ws, at), [0, 0])
                got[0] += 1
                got[1] += words[core.casefold()] == 1
    return {place: new / n for place, (n, new) in seen.items() if n >= 10 * k}


def _slot_fillers(texts: Sequence[Sequence[str]]) -> dict[str, int]:
    """How many distinct words (without digits) the sampled addresses write in each slot (:func:`_slots`)."""
    seen: dict[str, set[str]] = {}
    for words in texts:
        for at, word in enumerate(words):
            if word and not _has_digit(word):
                for slot in _slots(words, at):
                    seen.setdefault(slot, set()).add(word.casefold())
    return {slot: len(ws) for slot, ws in seen.items()}


def _has_digit(text: str | None) -> bool:
    return text is not None and any(ch.isdigit() for ch in text)


def _redraw_digits(text: str, rng: random.Random) -> str:
    """Digit runs replaced by random ones of the same length (a house number is no one's own)."""
    return re.sub(r"\d+", lambda m: str(rng.randint(10 ** (len(m.group(0)) - 1), 10 ** len(m.group(0)) - 1))
                  if m.group(0)[0] != "0" else "".join(rng.choice(string.digits) for _ in m.group(0)), text)


def _mask(text: str | None) -> str:
    return re.sub(r"\d", "9", text) if text else ""
