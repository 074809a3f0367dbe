"""Romanisation of Korean names, as people spell them in e-mail addresses and handles.

Hangul syllables are decomposed into initial, vowel and final jamo and written in the Revised
Romanization (``민준`` -> ``minjun``); common personal spellings are offered as variants (``joon``,
``yun`` / ``yoon``), and surnames use their customary spellings (``김`` -> ``kim``, ``이`` -> ``lee``,
``박`` -> ``park``) before the RR form. Non-Hangul text is lower-cased Latin letters only.
"""

from __future__ import annotations

import random
import re

_INITIALS = ("g", "kk", "n", "d", "tt", "r", "m", "b", "pp", "s", "ss", "", "j", "jj", "ch", "k", "t", "p", "h")
_VOWELS = ("a", "ae", "ya", "yae", "eo", "e", "yeo", "ye", "o", "wa", "wae", "oe", "yo", "u", "wo", "we", "wi", "yu", "eu", "ui", "i")
_FINALS = ("", "k", "k", "k", "n", "n", "n", "t", "l", "k", "m", "l", "l", "l", "p", "l", "m", "p", "p", "t", "t", "ng", "t", "t",
           "k", "t", "p", "t")

#: customary spellings of common surnames, most usual first (the RR form is always a variant too)
SURNAME_SPELLINGS: dict[str, tuple[str, ...]] = {
    "김": ("kim",), "이": ("lee", "yi", "rhee"), "박": ("park", "pak"), "최": ("choi", "choe"), "정": ("jung", "jeong", "chung"),
    "강": ("kang",), "조": ("cho",), "윤": ("yoon",), "장": ("jang", "chang"), "임": ("lim", "im"), "한": ("han",),
    "오": ("oh",), "서": ("seo", "suh"), "신": ("shin",), "권": ("kwon",), "황": ("hwang",), "안": ("ahn",), "송": ("song",),
    "전": ("jeon", "jun", "chun"), "홍": ("hong",), "유": ("yoo", "ryu"), "고": ("ko",), "문": ("moon",), "양": ("yang",),
    "손": ("son", "sohn"), "배": ("bae",), "백": ("baek", "paik"), "허": ("heo", "huh"), "남": ("nam",), "심": ("shim",),
    "노": ("noh", "roh"), "하": ("ha",), "곽": ("kwak",), "성": ("sung",), "차": ("cha",), "주": ("joo",), "우": ("woo",),
    "구": ("koo",), "민": ("min",), "류": ("ryu",), "나": ("na",), "진": ("jin",), "지": ("ji",), "엄": ("um", "eom"),
    "채": ("chae",), "원": ("won",), "천": ("chun",), "방": ("bang",), "공": ("kong",), "현": ("hyun",), "함": ("ham",),
    "변": ("byun",), "염": ("yeom",), "여": ("yeo",), "추": ("choo",), "도": ("do",), "석": ("seok",), "선": ("sun",),
    "설": ("seol",), "길": ("gil",), "연": ("yeon",), "표": ("pyo",), "명": ("myung",), "남궁": ("namgung",),
    "황보": ("hwangbo",), "제갈": ("jegal",), "선우": ("sunwoo",),
}
# personal spellings of a syllable's RR form (pattern -> replacement), e.g. 준 jun -> joon, 현 hyeon -> hyun
_VARIANTS: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(a), b) for a, b in (
        (r"eong$", "ung"), (r"yeong$", "young"), (r"eo(?=[a-z])", "u"), (r"u(n|ng)?$", r"oo\1"), (r"ui$", "ee"),
        (r"^g(?=[aeiouy])", "k"), (r"^d(?=[aeiouy])", "t"), (r"^b(?=[aeiouy])", "p"), (r"^s(?=i)", "sh"),
    )
)
_HANGUL = re.compile(r"[\uac00-\ud7a3]")


def syllable(ch: str) -> str:
    """The Revised Romanization of one Hangul syllable (``준`` -> ``jun``); other text lower-cased."""
    o = ord(ch) - 0xAC00
    if not 0 <= o < 11172:
        return re.sub(r"[^a-z]", "", ch.lower())
    return _INITIALS[o // 588] + _VOWELS[(o % 588) // 28] + _FINALS[o % 28]


def rr(text: str) -> str:
    """Revised Romanization of a Hangul word, syllable by syllable (``서연`` -> ``seoyeon``)."""
    return "".join(syllable(ch) for ch in text)


def syllable_spellings(ch: str) -> tuple[str, ...]:
    """The RR form of one syllable first, then personal variants (``준``: ``jun``, ``joon``)."""
    base = syllable(ch)
    out = [base]
    for rx, rep in _VARIANTS:
        alt = rx.sub(rep, base, count=1)
        if alt != base:
            out.append(alt)
    return tuple(dict.fromkeys(out))


def spellings(text: str, *, surname: bool = False) -> tuple[str, ...]:
    """Spellings people use for ``text``: customary surname spellings first, the RR form, then
    spellings with one syllable in a personal variant. Latin text: itself, lower-cased."""
    if not _HANGUL.search(text):
        latin = re.sub(r"[^a-z]", "", text.lower())
        return (latin,) if latin else ()
    out: list[str] = list(SURNAME_SPELLINGS.get(text, ())) if surname else []
    parts = [syllable(ch) for ch in text]
    out.append("".join(parts))
    for i, ch in enumerate(text):
        for alt in syllable_spellings(ch)[1:]:
            out.append("".join(parts[:i] + [alt] + parts[i + 1:]))
    return tuple(dict.fromkeys(s for s in out if s))


def spell(text: str, rng: random.Random, *, surname: bool = False) -> str:
    """One spelling of ``text``: customary surname spelling, else each syllable in its RR form
    most of the time and a personal variant otherwise (``서연`` -> ``seoyeon`` / ``seoyun``)."""
    if not _HANGUL.search(text):
        return re.sub(r"[^a-z]", "", text.lower())
    usual = SURNAME_SPELLINGS.get(text, ()) if surname else ()
    if usual:
        return usual[0] if rng.random() < 0.85 or len(usual) == 1 else rng.choice(usual[1:])
    return "".join(alts[0] if rng.random() < 0.6 else rng.choice(alts) for alts in (syllable_spellings(ch) for ch in text))
