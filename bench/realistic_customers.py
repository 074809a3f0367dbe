# ruff: noqa: SIM905 (word lists read best as one string)
"""Realistic Korean customer data for the distinguishability benchmark (stands in for production).

Written independently of the seeder (nothing from ``canary.seeding``), with the quirks
a real Korean shop's ``customers`` table has:

- names: surnames by census share (Kim ~21%, Lee ~15%, Park ~8%, ... a long tail incl. two-syllable
  surnames), given names from a heavy-tailed list of popular names by generation plus composed ones,
  a few single-syllable given names, foreigners in Latin script, the odd stray space;
- phones: mostly unique 010 mobiles in mixed formats (dashes, none, +82, spaces), legacy 011/016-019
  numbers, landlines (02, 031, 051...) shared within households, NULLs;
- addresses: road-name addresses composed from sido / sigungu / road / building number / apartment
  dong-ho / legal-dong parts, a share of old lot-number (jibun) addresses and abbreviated sido names,
  families sharing an address, NULLs; postal codes consistent with the region (some in the old
  six-digit form);
- e-mail: local parts from romanised names (several romanisations) or handles with digits (birth
  years, dates), domains with a realistic long tail (naver, gmail, daum, hanmail, nate, kakao, legacy
  portals, thousands of company and university domains, rare typos);
- created_at: growth over six years, weekly and daily seasonality, sale-day spikes, a legacy
  migration batch at midnight; updated_at: NULL, equal to created_at, a re-consent batch, or later;
- ids: assigned in creation order with gaps from deleted accounts, rolled-back inserts and sequence
  cache loss; orders with a heavy-tailed count per customer and prices in 100-won steps.
"""

from __future__ import annotations

import datetime as dt
import math
import random
from collections.abc import Sequence

import asyncpg

from canary.drills.shop import SCHEMA

# (hangul, romanisations, census share %)
#: the table's present (its history ends then) unless given: fixed, so that a bench run repeats
ANCHOR = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)

SURNAMES: tuple[tuple[str, tuple[str, ...], float], ...] = (
    ("김", ("kim", "gim"), 21.5), ("이", ("lee", "yi", "rhee", "i"), 14.7), ("박", ("park", "pak", "bak"), 8.4),
    ("최", ("choi", "choe"), 4.7), ("정", ("jung", "jeong", "chung"), 4.3), ("강", ("kang", "gang"), 2.4),
    ("조", ("cho", "jo"), 2.1), ("윤", ("yoon", "yun"), 2.0), ("장", ("jang", "chang"), 2.0), ("임", ("lim", "im"), 1.7),
    ("한", ("han",), 1.5), ("오", ("oh", "o"), 1.5), ("서", ("seo", "suh"), 1.4), ("신", ("shin", "sin"), 1.4),
    ("권", ("kwon", "gwon"), 1.4), ("황", ("hwang",), 1.4), ("안", ("ahn", "an"), 1.3), ("송", ("song",), 1.3),
    ("전", ("jeon", "jun", "chun"), 1.3), ("홍", ("hong",), 1.1), ("유", ("yoo", "yu", "ryu"), 1.1), ("고", ("ko", "go"), 0.9),
    ("문", ("moon", "mun"), 0.9), ("양", ("yang",), 0.9), ("손", ("son", "sohn"), 0.9), ("배", ("bae", "bai"), 0.8),
    ("백", ("baek", "paik"), 0.7), ("허", ("heo", "huh"), 0.6), ("남", ("nam",), 0.5), ("심", ("shim", "sim"), 0.5),
    ("노", ("noh", "roh", "no"), 0.4), ("하", ("ha",), 0.4), ("곽", ("kwak", "gwak"), 0.4), ("성", ("sung", "seong"), 0.4),
    ("차", ("cha",), 0.4), ("주", ("joo", "ju"), 0.4), ("우", ("woo", "u"), 0.4), ("구", ("koo", "gu"), 0.4),
    ("민", ("min",), 0.35), ("류", ("ryu", "yoo"), 0.35), ("나", ("na", "ra"), 0.3), ("진", ("jin",), 0.3),
    ("지", ("ji",), 0.3), ("엄", ("um", "eom"), 0.3), ("채", ("chae",), 0.25), ("원", ("won",), 0.25),
    ("천", ("chun", "cheon"), 0.25), ("방", ("bang",), 0.25), ("공", ("kong", "gong"), 0.2), ("현", ("hyun",), 0.2),
    ("함", ("ham",), 0.2), ("변", ("byun", "byeon"), 0.2), ("염", ("yeom",), 0.15), ("여", ("yeo",), 0.15),
    ("추", ("choo", "chu"), 0.12), ("도", ("do",), 0.12), ("소", ("so",), 0.1), ("석", ("seok",), 0.1),
    ("선", ("sun",), 0.1), ("설", ("seol",), 0.1), ("마", ("ma",), 0.08), ("길", ("gil", "kil"), 0.08),
    ("연", ("yeon",), 0.08), ("위", ("wi",), 0.06), ("표", ("pyo",), 0.05), ("명", ("myung",), 0.05),
    ("기", ("ki",), 0.05), ("반", ("ban",), 0.05), ("왕", ("wang",), 0.05), ("금", ("keum",), 0.05),
    ("옥", ("ok",), 0.05), ("육", ("yuk",), 0.04), ("인", ("in",), 0.04), ("맹", ("maeng",), 0.03),
    ("제", ("je",), 0.03), ("모", ("mo",), 0.03), ("탁", ("tak",), 0.02), ("국", ("kook",), 0.02),
    ("은", ("eun",), 0.02), ("편", ("pyeon",), 0.02), ("용", ("yong",), 0.02), ("봉", ("bong",), 0.01),
    ("남궁", ("namgung",), 0.01), ("황보", ("hwangbo",), 0.01), ("제갈", ("jegal",), 0.005),
    ("선우", ("sunwoo",), 0.005), ("사공", ("sagong",), 0.004), ("독고", ("dokgo",), 0.002),
)

# syllable -> romanisations (used for given names and e-mail local parts)
SYLLABLES: dict[str, tuple[str, ...]] = {
    "민": ("min",), "준": ("jun", "joon"), "서": ("seo",), "연": ("yeon", "yun"), "지": ("ji",), "훈": ("hoon", "hun"),
    "하": ("ha",), "은": ("eun",), "도": ("do",), "윤": ("yoon", "yun"), "현": ("hyun", "hyeon"), "우": ("woo", "u"),
    "수": ("soo", "su"), "영": ("young", "yeong"), "희": ("hee", "hui"), "정": ("jung", "jeong"), "숙": ("sook", "suk"),
    "미": ("mi",), "경": ("kyung", "gyeong"), "진": ("jin",), "성": ("sung", "seong"), "호": ("ho",), "철": ("chul", "cheol"),
    "재": ("jae",), "혜": ("hye",), "선": ("sun", "seon"), "주": ("joo", "ju"), "예": ("ye",), "시": ("si", "shi"),
    "유": ("yoo", "yu"), "채": ("chae",), "다": ("da",), "아": ("a",), "소": ("so",), "상": ("sang",), "동": ("dong",),
    "석": ("seok", "suk"), "태": ("tae",), "승": ("seung",), "용": ("yong",), "혁": ("hyuk", "hyeok"), "건": ("gun", "geon"),
    "원": ("won",), "빈": ("bin",), "규": ("kyu", "gyu"), "나": ("na",), "린": ("rin",), "율": ("yul",), "인": ("in",),
    "화": ("hwa",), "자": ("ja",), "순": ("soon", "sun"), "옥": ("ok",), "남": ("nam",), "기": ("ki", "gi"),
    "광": ("kwang",), "범": ("beom", "bum"), "욱": ("wook", "uk"), "람": ("ram",), "솔": ("sol",), "한": ("han",),
    "세": ("se",), "가": ("ga",), "보": ("bo",), "누": ("nu",), "명": ("myung", "myeong"),
    "일": ("il",), "종": ("jong",), "창": ("chang",), "형": ("hyung", "hyeong"), "대": ("dae",), "병": ("byung",),
    "춘": ("chun",), "말": ("mal",), "분": ("bun",), "덕": ("duk", "deok"), "란": ("ran",), "향": ("hyang",),
}
POPULAR_GIVEN = (  # popular given names across generations, most popular first
    "민준 서연 지훈 서현 도윤 지우 하준 하은 예준 민서 시우 수아 주원 지유 서준 윤서 지호 채원 건우 지민 현우 수빈 "
    "영수 영희 정숙 순자 영숙 미경 은정 현정 지영 성민 동현 상훈 정훈 성호 영호 미숙 경희 혜진 은영 수진 민정 지은 "
    "정희 미영 성진 준호 재훈 현주 선영 유진 은지 예은 다은 소연 승민 태현 준영 민재 우진 승현 재현 민지 유나 하윤 "
    "서윤 지안 이준 은우 선우 연우 유준 시윤 아린 하린 예린 나윤 수연 가은 보람 누리 한결 슬기 춘자 말순 덕희 옥순"
).split()
GIVEN_FIRST = "민 서 지 하 도 예 시 주 건 현 수 영 정 미 은 성 동 상 재 혜 유 승 태 준 우 다 소 가 채 나 윤 진 경 명 일 종 창 형 대 병".split()
GIVEN_SECOND = "준 연 훈 은 윤 우 현 아 원 호 민 희 숙 경 진 정 수 영 주 빈 린 율 서 인 화 자 순 옥 혁 건 기 석 용 철 규 람 솔 한 일 선 범 욱".split()
FOREIGN = ("John Smith", "Michael Brown", "Sarah Johnson", "Nguyen Van An", "Tran Thi Mai", "Wang Wei", "Li Na",
           "Zhang Wei", "Maria Garcia", "David Lee", "Emily Davis", "Tanaka Yuki", "Sato Haruto", "Ivan Petrov",
           "Anna Kim", "James Park", "Olga Ivanova", "Bui Thi Hoa", "Chen Jing", "Daniel Choi")
HANDLE_WORDS = ("sky", "happy", "blue", "love", "angel", "star", "dream", "sunny", "cool", "smile", "lucky", "moon",
                "sweet", "pink", "green", "music", "soccer", "game", "cute", "rain", "snow", "candy", "apple",
                "tiger", "dragon", "bear", "rabbit", "cat", "puppy", "jjang", "baby", "mom", "papa", "korea", "seoul",
                "busan", "coffee", "choco", "milk", "ocean", "wind", "flower", "rose", "lily", "forever", "only")
FREEMAIL = (("naver.com", 37.0), ("gmail.com", 24.0), ("hanmail.net", 8.0), ("daum.net", 7.0), ("nate.com", 4.0),
            ("kakao.com", 3.0), ("hotmail.com", 1.4), ("icloud.com", 1.0), ("outlook.com", 0.8), ("yahoo.co.kr", 0.5),
            ("yahoo.com", 0.4), ("korea.com", 0.3), ("empal.com", 0.2), ("paran.com", 0.2), ("lycos.co.kr", 0.1),
            ("dreamwiz.com", 0.1), ("chol.com", 0.1), ("hanmir.com", 0.1), ("freechal.com", 0.08), ("netian.com", 0.05),
            ("hitel.net", 0.03), ("unitel.co.kr", 0.03), ("me.com", 0.1), ("live.com", 0.1), ("naver.net", 0.02))
TYPOS = ("gmial.com", "gamil.com", "naver.co", "navr.com", "nave.com", "gmail.co", "hanmail.ent", "daum.ner",
         "naver.con", "gmail.con", "nate.co", "hanmai.net")
COMPANY_WORDS = ("hanil", "daesung", "sejin", "kumho", "samwoo", "dongbu", "hyosung", "daewon", "sungwoo", "jinyang",
                 "kyungdong", "seah", "taeyang", "hanmi", "ilsung", "youngjin", "shinsung", "daehan", "mirae", "hankook",
                 "sambo", "woori", "nara", "haneul", "bitsoft", "dasan", "gaon", "nuri", "saeron", "ara", "dream",
                 "korea", "seoul", "jeil", "cheil", "chungang", "samil", "dongil", "kukje", "hanyang", "kolon",
                 "wooshin", "pyunghwa", "geumgang", "namyang", "seil", "jungang", "eugene", "ssangyong", "daelim")
COMPANY_SUFFIX = ("", "", "tech", "soft", "corp", "bio", "ent", "global", "net", "sys", "pharm", "eng", "steel", "food", "tel", "ds")
COMPANY_TLD = (".co.kr", ".co.kr", ".co.kr", ".com", ".com", ".kr", ".net", ".or.kr")
UNIVERSITIES = ("snu.ac.kr", "korea.ac.kr", "yonsei.ac.kr", "kaist.ac.kr", "postech.ac.kr", "skku.edu", "hanyang.ac.kr",
                "khu.ac.kr", "cau.ac.kr", "ewha.ac.kr", "pusan.ac.kr", "knu.ac.kr", "jnu.ac.kr", "cnu.ac.kr",
                "inha.ac.kr", "ajou.ac.kr", "sogang.ac.kr", "dongguk.edu", "konkuk.ac.kr", "hufs.ac.kr")

# sido (full, short), population share %, two-digit postal prefixes, sigungu
REGIONS: tuple[tuple[str, str, float, tuple[int, ...], tuple[str, ...]], ...] = (
    ("서울특별시", "서울", 18.5, tuple(range(1, 9)),
     tuple("강남구 강동구 강북구 강서구 관악구 광진구 구로구 금천구 노원구 도봉구 동대문구 동작구 마포구 서대문구 서초구 성동구 성북구 "
           "송파구 양천구 영등포구 용산구 은평구 종로구 중구 중랑구".split())),
    ("부산광역시", "부산", 6.5, (46, 47, 48, 49), tuple("해운대구 부산진구 동래구 남구 북구 사하구 사상구 금정구 연제구 수영구 기장군 중구".split())),
    ("대구광역시", "대구", 4.6, (41, 42, 43), tuple("수성구 달서구 북구 동구 중구 남구 서구 달성군".split())),
    ("인천광역시", "인천", 5.8, (21, 22, 23), tuple("남동구 부평구 서구 연수구 계양구 미추홀구 중구 동구".split())),
    ("광주광역시", "광주", 2.8, (61, 62), tuple("북구 광산구 서구 남구 동구".split())),
    ("대전광역시", "대전", 2.8, (34, 35), tuple("서구 유성구 중구 동구 대덕구".split())),
    ("울산광역시", "울산", 2.2, (44, 45), tuple("남구 중구 북구 동구 울주군".split())),
    ("세종특별자치시", "세종", 0.7, (30,), ("",)),
    ("경기도", "경기", 26.5, tuple(range(10, 19)),
     tuple("수원시 영통구|수원시 팔달구|성남시 분당구|성남시 수정구|고양시 일산동구|고양시 덕양구|용인시 수지구|용인시 기흥구|부천시|안산시 단원구|"
           "화성시|남양주시|안양시 동안구|평택시|의정부시|시흥시|파주시|김포시|광명시|광주시|군포시|하남시|오산시|이천시|구리시|양주시".split("|"))),
    ("강원특별자치도", "강원", 3.0, (24, 25, 26), tuple("춘천시 원주시 강릉시 속초시 동해시 홍천군".split())),
    ("충청북도", "충북", 3.1, (27, 28, 29), tuple("청주시 흥덕구|청주시 상당구|충주시|제천시|음성군".split("|"))),
    ("충청남도", "충남", 4.1, (31, 32, 33), tuple("천안시 서북구|천안시 동남구|아산시|서산시|당진시|공주시|논산시".split("|"))),
    ("전북특별자치도", "전북", 3.4, (54, 55, 56), tuple("전주시 완산구|전주시 덕진구|익산시|군산시|정읍시|남원시".split("|"))),
    ("전라남도", "전남", 3.5, (57, 58, 59, 60), tuple("여수시 순천시 목포시 광양시 나주시 무안군".split())),
    ("경상북도", "경북", 5.0, (36, 37, 38, 39, 40), tuple("포항시 북구|포항시 남구|구미시|경산시|경주시|안동시|김천시".split("|"))),
    ("경상남도", "경남", 6.4, (50, 51, 52, 53), tuple("창원시 성산구|창원시 의창구|김해시|양산시|진주시|거제시|통영시".split("|"))),
    ("제주특별자치도", "제주", 1.3, (63,), ("제주시", "서귀포시")),
)
ROAD_STEMS = tuple(
    "테헤란 강남대 봉은사 도산대 학동 언주 선릉 삼성 역삼 논현 압구정 신사 반포대 올림픽 백제고분 송파대 중앙 시청 번영 평화 희망 문화 "
    "새마을 충장 금남 동명 서문 남문 북문 공원 역전 시장 학교 대학 신촌 연세 월드컵 마포대 독막 양화 성산 증산 수색 은평 통일 진흥 "
    "세검정 북한산 도봉 노원 동일 상계 한글비석 화랑 망우 용마산 천호대 양재대 남부순환 경인 광명 안양천 시흥대 디지털 가산 구로중앙 "
    "경수대 매탄 영통 봉영 판교역 분당 정자일 황새울 수내 성남대 산성대 일산 호수 정발산 킨텍스 해운대 센텀 광안해변 수영 동래 "
    "충렬대 달구벌대 동대구 국채보상 공평 송도 컨벤시아 청량 둔산 한밭대 대덕대 유성대 상무대 무진대 장생포 첨단 노형 연북 중부대 "
    "구월 인하 주안 부평대 계양대 경원대 효자 퇴계 원일 경강 율곡 사직 가경 상당 성정 번영 쌍용 온천대 의당 팔달 효자동 기린대 "
    "백제대 중앙공원 무등 죽림 연향 해룡 하당 신대 양덕 흥해 인동 송정 중앙대 옥포 장평 창원대 원이대 가야 내외 삼계 물금 "
    "진주대 남강 연동 일주 중정 신산 아라 노은 반석 지족 갈마 계룡 둔원 은행 만년 보라매 신림 봉천 사당 흑석 상도".split()
)
APT_BRANDS = ("래미안", "자이", "힐스테이트", "푸르지오", "e편한세상", "롯데캐슬", "아이파크", "더샵", "SK뷰", "센트레빌",
              "주공", "현대", "삼성", "우성", "한신", "대림", "쌍용", "벽산", "금호어울림", "한양수자인", "코오롱하늘채", "두산위브")
DONG_SUFFIX = ("동", "1동", "2동", "3동", "가", "리")


class _Zipf:
    """Weighted choice with cumulative weights."""

    def __init__(self, items: Sequence[object], weights: Sequence[float]) -> None:
        self.items = list(items)
        total, self.cum = 0.0, []
        for w in weights:
            total += w
            self.cum.append(total)

    def pick(self, rng: random.Random) -> object:
        import bisect

        return self.items[bisect.bisect_left(self.cum, rng.random() * self.cum[-1])]


class RealisticKorea:
    """One population of customers; deterministic for a seed."""

    def __init__(self, seed: int = 11) -> None:
        self.rng = rng = random.Random(seed)
        self.surnames = _Zipf(SURNAMES, [s[2] for s in SURNAMES])
        self.popular = _Zipf(POPULAR_GIVEN, [1.0 / (i + 5) ** 0.7 for i in range(len(POPULAR_GIVEN))])
        self.regions = _Zipf(REGIONS, [r[2] for r in REGIONS])
        # every sigungu has its own roads (heavy-tailed use) and postal sub-range
        self.roads: dict[tuple[str, str], _Zipf] = {}
        self.postal: dict[tuple[str, str], int] = {}
        for sido, _, _, prefixes, sigungu in REGIONS:
            for i, sg in enumerate(sigungu):
                names = []
                for stem in rng.sample(ROAD_STEMS, k=min(len(ROAD_STEMS), rng.randint(25, 70))):
                    kind = rng.random()
                    names.append(f"{stem}로" if kind < 0.6 else f"{stem}대로" if kind < 0.7 else f"{stem}{rng.randint(1, 80)}길"
                                 if kind < 0.9 else f"{stem}{rng.randint(1, 300)}번길")
                self.roads[(sido, sg)] = _Zipf(names, [1.0 / (j + 1) ** 0.8 for j in range(len(names))])
                self.postal[(sido, sg)] = prefixes[i % len(prefixes)] * 1000 + rng.randint(0, 9) * 100
        companies = sorted({f"{rng.choice(COMPANY_WORDS)}{rng.choice(COMPANY_SUFFIX)}{rng.choice(COMPANY_TLD)}" for _ in range(4000)})
        rng.shuffle(companies)
        self.company = _Zipf(companies, [1.0 / (j + 1) ** 0.7 for j in range(len(companies))])
        self.freemail = _Zipf([d for d, _ in FREEMAIL], [w for _, w in FREEMAIL])

    # -- people ---------------------------------------------------------------------------------
    def person(self, birth_year: int) -> tuple[str, str, tuple[str, ...], str]:
        """(full name, surname romanisation, given-name syllable romanisations, full name kind)."""
        r = self.rng
        if r.random() < 0.015:
            name = r.choice(FOREIGN)
            parts = name.lower().split()
            return name, parts[-1], tuple(parts[:-1]), "foreign"
        sur, roms, _ = self.surnames.pick(r)  # type: ignore[misc]
        x = r.random()
        if x < 0.35:
            given = str(self.popular.pick(r))
        elif x < 0.97:
            given = r.choice(GIVEN_FIRST) + r.choice(GIVEN_SECOND)
        else:
            given = r.choice(GIVEN_SECOND)
        if birth_year < 1965 and r.random() < 0.3:
            given = r.choice(("영", "순", "정", "말", "옥", "춘", "경")) + r.choice(("자", "희", "숙", "순", "수", "철", "호"))
        full = f"{sur} {given}" if r.random() < 0.004 else f"{sur}{given}"
        if r.random() < 0.002:
            full += " "
        given_rom = tuple(r.choice(SYLLABLES.get(s, ("a",))) for s in given)
        return full, r.choice(roms) if r.random() < 0.85 else roms[0], given_rom, "korean"

    def email_local(self, sur: str, given: tuple[str, ...], birth: dt.date) -> str:
        r = self.rng
        g = "".join(given)
        initials = "".join(s[0] for s in given)
        yy = f"{birth.year % 100:02d}"
        style = r.random()
        if style < 0.16:
            local = f"{g}{sur}" if r.random() < 0.5 else f"{sur}{g}"
        elif style < 0.28:
            local = f"{sur}.{g}" if r.random() < 0.5 else f"{g}.{sur}"
        elif style < 0.42:
            local = f"{sur}{g}{yy}" if r.random() < 0.6 else f"{initials}{sur}{yy}"
        elif style < 0.50:
            local = f"{initials}{sur}" if r.random() < 0.5 else f"{sur}{initials}"
        elif style < 0.55:
            local = f"{g}_{sur}" if r.random() < 0.5 else f"{sur}_{g}"
        elif style < 0.62:
            local = f"{g}{birth.month:02d}{birth.day:02d}"
        elif style < 0.92:
            w = r.choice(HANDLE_WORDS)
            w2 = r.choice(HANDLE_WORDS) if r.random() < 0.4 else ""
            sep = r.choice(("", "", "", "_", "."))
            digits = r.choice(("", yy, str(r.randint(1, 99)), str(r.randint(100, 9999)), f"{birth.month:02d}{birth.day:02d}"))
            local = f"{w}{sep}{w2}{digits}" if w2 else f"{w}{sep}{digits}".rstrip("._")
        else:
            local = f"{sur[0]}{initials}{r.randint(1000, 999999)}"
        if r.random() < 0.03:
            local = local[:1].upper() + local[1:]
        return local[:30]

    def domain(self) -> str:
        r = self.rng.random()
        if r < 0.86:
            return str(self.freemail.pick(self.rng))
        if r < 0.985:
            return str(self.company.pick(self.rng))
        if r < 0.997:
            return self.rng.choice(UNIVERSITIES)
        return self.rng.choice(TYPOS)

    def mobile(self) -> str:
        r = self.rng
        legacy = r.random() < 0.012
        head = r.choice(("011", "016", "017", "018", "019")) if legacy else "010"
        mid = f"{r.randint(200, 999)}" if legacy and r.random() < 0.5 else f"{r.randint(2000, 9999)}"
        tail = f"{r.randint(0, 9999):04d}"
        fmt = r.random()
        if fmt < 0.68:
            return f"{head}-{mid}-{tail}"
        if fmt < 0.90:
            return f"{head}{mid}{tail}"
        if fmt < 0.94:
            return f"+82 {head[1:]}-{mid}-{tail}"
        if fmt < 0.96:
            return f"+82{head[1:]}{mid}{tail}"
        if fmt < 0.99:
            return f"{head} {mid} {tail}"
        return f"{head}.{mid}.{tail}"

    def landline(self, sido: str) -> str:
        codes = {"서울특별시": "02", "부산광역시": "051", "대구광역시": "053", "인천광역시": "032", "광주광역시": "062",
                 "대전광역시": "042", "울산광역시": "052", "세종특별자치시": "044", "경기도": "031", "강원특별자치도": "033",
                 "충청북도": "043", "충청남도": "041", "전북특별자치도": "063", "전라남도": "061", "경상북도": "054",
                 "경상남도": "055", "제주특별자치도": "064"}
        r = self.rng
        return f"{codes[sido]}-{r.randint(200, 999) if r.random() < 0.3 else r.randint(2000, 9999)}-{r.randint(0, 9999):04d}"

    def address(self) -> tuple[str, str, str]:
        """(address, postal code, sido)."""
        r = self.rng
        sido, short, _, _, sigungu = self.regions.pick(r)  # type: ignore[misc]
        sg = r.choice(sigungu)
        head = short if r.random() < 0.12 else sido
        region = f"{head} {sg}".strip() if sg else head
        code = self.postal[(sido, sg)] + r.randint(0, 99)
        postal = f"{code:05d}"
        if r.random() < 0.03:
            postal = f"{r.randint(100, 799)}-{r.randint(0, 999):03d}"  # pre-2015 six-digit code
        dong = r.choice(ROAD_STEMS)[:2] + r.choice(DONG_SUFFIX)
        if r.random() < 0.10:  # old lot-number (jibun) address
            lot = f"{r.randint(1, 999)}" + (f"-{r.randint(1, 60)}" if r.random() < 0.6 else "")
            return f"{region} {dong} {lot}", postal, sido
        road = self.roads[(sido, sg)].pick(r)
        num = str(max(1, int(r.lognormvariate(3.3, 1.0))))
        if r.random() < 0.15:
            num += f"-{r.randint(1, 30)}"
        kind = r.random()
        if kind < 0.55:  # apartment
            brand = r.choice(APT_BRANDS)
            dongnum, floor, unit = r.choice((101, 102, 103, 104, 105, 106, 107, 108, 109, 110, 111, 112, 201, 202, 203, 301)), r.randint(1, 25), r.randint(1, 6)
            detail = f", {dongnum}동 {floor}{unit:02d}호"
            paren = f" ({dong}, {dong[:2]}{brand})" if r.random() < 0.4 else (f" ({dong})" if r.random() < 0.3 else "")
            text = f"{region} {road} {num}{detail}{paren}"
        elif kind < 0.8:  # villa / office
            detail = r.choice((f", {r.randint(1, 5)}층", f" {r.randint(1, 5)}0{r.randint(1, 4)}호", f", 지하{r.randint(1, 2)}층", ""))
            text = f"{region} {road} {num}{detail}" + (f" ({dong})" if r.random() < 0.35 else "")
        else:  # house
            text = f"{region} {road} {num}" + (f" ({dong})" if r.random() < 0.3 else "")
        if r.random() < 0.05:
            text = text.replace(", ", " ", 1)
        return text, postal, sido

    # -- the table ------------------------------------------------------------------------------
    def customers(self, n: int, now: dt.datetime) -> list[tuple[object, ...]]:
        """Rows (id, full_name, email, phone, address, postal_code, created_at, updated_at), in id order."""
        r = self.rng
        start = now - dt.timedelta(days=6 * 365)
        launch_batch = int(n * 0.06)  # migrated from the old system at launch: created at midnight
        created: list[dt.datetime] = []
        sale_days = {dt.date(y, m, d) for y in range(start.year, now.year + 1) for m, d in ((11, 11), (11, 27), (12, 12), (6, 18), (3, 3))}
        span = (now - start).total_seconds()
        while len(created) < n - launch_batch:
            u = r.random()
            t = math.log(1 + u * (math.e ** 1.8 - 1)) / 1.8  # growth: density rising e^1.8 over the span
            when = start + dt.timedelta(seconds=t * span)
            hour_w = (0.3, 0.15, 0.08, 0.05, 0.04, 0.05, 0.15, 0.35, 0.6, 0.8, 0.9, 1.0, 1.2, 1.0, 0.9, 0.9, 0.9, 0.8, 0.8, 1.0, 1.3, 1.5, 1.4, 0.8)
            day_w = (1.15, 1.05, 1.0, 1.0, 0.9, 0.75, 1.05)[when.weekday()] * (3.0 if when.date() in sale_days else 1.0)
            if r.random() * 3.0 * 1.5 > hour_w[when.hour] * day_w:
                continue
            created.append(when)
        created.sort()
        launch = start.replace(hour=0, minute=0, second=0, microsecond=0)
        created = [launch] * launch_batch + created
        reconsent = dt.datetime(now.year - 1, 3, 15, 3, 0, tzinfo=dt.UTC)
        rows: list[tuple[object, ...]] = []
        emails: set[str] = set()
        households: list[tuple[str, str, str, str]] = []  # (address, postal, sido, landline)
        next_id = 1
        for i, c in enumerate(created):
            next_id += 1 if r.random() > 0.004 else r.randint(2, 4)  # rolled-back inserts
            if r.random() < 0.0002:
                next_id += 32  # sequence cache lost at a crash
            pk = next_id
            birth = dt.date(r.choice(range(1950, 2006)), r.randint(1, 12), r.randint(1, 28))
            full, sur, given, _ = self.person(birth.year)
            local = self.email_local(sur, given, birth)
            domain = self.domain()
            email = f"{local}@{domain}"
            while email.lower() in emails:
                local = f"{local}{r.randint(1, 99)}"
                email = f"{local}@{domain}"
            emails.add(email.lower())
            if households and r.random() < 0.12:
                address, postal, sido, landline = r.choice(households[-5000:])
            else:
                address, postal, sido = self.address()
                landline = self.landline(sido)
                households.append((address, postal, sido, landline))
            p = r.random()
            phone = None if p < 0.07 else (landline if p < 0.10 else self.mobile())
            if r.random() < 0.05:
                address, postal = None, None  # never entered
            elif r.random() < 0.02:
                postal = None
            if i < launch_batch:
                updated = None if r.random() < 0.7 else reconsent + dt.timedelta(seconds=r.randint(0, 5400))
                rows.append((pk, full, email, phone, address, postal, c, updated))
                continue
            c = c.replace(microsecond=r.randint(0, 999_999))
            u = r.random()
            if u < 0.35:
                updated = None
            elif u < 0.45:
                updated = c
            elif u < 0.50 and c < reconsent:
                updated = reconsent + dt.timedelta(seconds=r.randint(0, 5400), microseconds=r.randint(0, 999_999))
            else:
                updated = min(now, c + dt.timedelta(seconds=r.lognormvariate(14.0, 2.0)))
            rows.append((pk, full, email, phone, address, postal, c, updated))
        return rows

    def orders(self, customers: Sequence[tuple[object, ...]], now: dt.datetime) -> list[tuple[object, ...]]:
        """Rows (id, customer_id, ordered_at, total, status, ship_to) in time order."""
        r = self.rng
        out: list[tuple[object, ...]] = []
        for pk, _, _, _, address, _, created, _ in customers:
            assert isinstance(created, dt.datetime)
            k = 0 if r.random() < 0.32 else min(60, int(r.paretovariate(1.3)))
            when = created
            for _ in range(k):
                when = when + dt.timedelta(seconds=r.expovariate(1 / (40 * 86400)))
                if when > now:
                    break
                total = sum(r.choice((9900, 12900, 15000, 19800, 23900, 29000, 35000, 49000, 89000, 129000, 4500, 7800))
                            for _ in range(1 + int(r.expovariate(0.8))))
                age = (now - when).days
                status = ("paid" if r.random() < 0.6 else "shipped") if age < 3 else ("returned" if r.random() < 0.04 else "delivered")
                ship_to = address if r.random() < 0.85 else (None if r.random() < 0.3 else self.address()[0])
                out.append((pk, when, total, status, ship_to))
        out.sort(key=lambda o: o[1])  # type: ignore[arg-type, return-value]
        # ids in time order, with gaps from cancelled-and-purged orders and rolled-back checkouts
        numbered, next_id = [], 0
        for o in out:
            next_id += 1 if r.random() > 0.03 else r.randint(2, 3)
            numbered.append((next_id, *o))
        return numbered


async def create_realistic_shop(conn: asyncpg.Connection, customers: int, seed: int = 11, now: dt.datetime = ANCHOR) -> None:
    """The ``canary.shop`` schema filled with ``customers`` realistic Korean customers and their orders
    (about 3% of accounts closed and deleted with their orders: their ids are gaps), their history
    ending at ``now``."""
    gen = RealisticKorea(seed)
    rows = gen.customers(int(customers / 0.97), now)
    kept = [row for row in rows if gen.rng.random() >= 0.03]
    orders = gen.orders(kept, now)
    async with conn.transaction():
        await conn.execute(SCHEMA)
        await conn.copy_records_to_table(
            "customers", records=kept,
            columns=["id", "full_name", "email", "phone", "address", "postal_code", "created_at", "updated_at"],
        )
        await conn.copy_records_to_table("orders", records=orders, columns=["id", "customer_id", "ordered_at", "total", "status", "ship_to"])
        await conn.execute("SELECT setval(pg_get_serial_sequence('customers', 'id'), (SELECT max(id) FROM customers) + 7)")
        await conn.execute("SELECT setval(pg_get_serial_sequence('orders', 'id'), (SELECT max(id) FROM orders) + 2)")
    await conn.execute("ANALYZE customers; ANALYZE orders")
