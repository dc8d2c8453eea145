"""Identifier scanner: presidio-analyzer, offline, with Taiwan-specific recognizers.

The NLP engine is a blank spaCy English pipeline (tokenizer only, plus a component that sets
each token's lemma to its lower-case text so presidio's context words work); no model is
downloaded at run time. Recognizers are regular expressions with validation:

- ``TW_NATIONAL_ID`` / ``TW_RESIDENT_CERTIFICATE``: checksum-validated, so look-alikes pass;
  letters in either case (``a123456789`` is ``A123456789``, validated upper-cased); found at
  the start of the text or of a line, and after an escaped line break (``\\n`` in JSON or
  a string literal), not inside a longer word or number;
- ``TW_PHONE``: mobile 09xx-xxx-xxx / +886 9…, landlines written with an area code;
- ``MEDICAL_INSTITUTION_CODE``: 10 digits whose first two are an ownership code (權屬別)
  and next two a county code, scored up by context (醫院, hosp_id, …);
- ``DATE_OF_BIRTH``: a date with a birth context word (出生, 生日, birth, DOB, born);
- ``CHINESE_PERSON_NAME``: common surname + 1–2 characters after 姓名/病患/病人/患者 or
  before 先生/小姐/女士.

Chinese context is part of the patterns themselves because the blank pipeline does not
segment Chinese words. Long texts are scanned in overlapping pieces (:func:`scan_text`).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import spacy
from presidio_analyzer import AnalyzerEngine, Pattern, PatternRecognizer, RecognizerRegistry
from presidio_analyzer.nlp_engine import SpacyNlpEngine
from spacy.language import Language
from spacy.tokens import Doc

from catalog.checks import tw_id_is_valid

OWNERSHIP_CODES = {
    *(f"{i:02d}" for i in (1, 2, 4, 5, 6, 7, 8, 9, 11, 12, 13, 14, 15, 17, 18)),
    *(f"{i:02d}" for i in (21, 22, 23, 24, 25, 26, 27, 29, 31, 32, 33, 34, 35, 37, 38, 40, 41)),
    "59", "60", *(str(i) for i in range(70, 90)),
}
COUNTY_CODES = {"01", "02", "11", "12", "17", "21", "22", *(str(i) for i in range(31, 47)),
                "90", "91"}
SURNAMES = (
    "陳林黃張李王吳劉蔡楊許鄭謝洪郭邱曾廖賴徐周葉蘇莊呂江何蕭羅潘簡朱鍾游彭詹胡施沈余盧梁趙顏柯"
    "翁魏孫戴范方宋鄧杜傅侯曹薛丁卓阮馬董温唐藍石蔣古紀姚連馮歐程湯田康姜白汪鄒尤巫鐘黎涂龔嚴"
    "韓袁金童陸夏柳凃邵錢伍倪溫于譚駱熊任甘秦顧毛章史官萬俞雷粘饒"
)
_HAN = r"[\u4e00-\u9fff]"
# An ID starts after a non-alphanumeric character, or after an escaped line break or tab
# ("\\nA123456789" in a JSON file or a string literal is an ID at the start of a line).
_ID_BEFORE = r"(?:(?<![A-Za-z0-9])|(?<=\\[nrt]))"
_NOT_ALNUM_AFTER = r"(?![A-Za-z0-9])"
_NOT_DIGIT_BEFORE = r"(?<![0-9])"
_NOT_DIGIT_AFTER = r"(?![0-9])"
_DATE = (
    r"(?:(?:19|20)\d{2}[-/.年]\s?\d{1,2}[-/.月]\s?\d{1,2}日?|(?:19|20)\d{2}(?:0[1-9]|1[0-2])"
    r"(?:0[1-9]|[12]\d|3[01])|(?:民國)?\s?\d{2,3}年\d{1,2}月\d{1,2}日|\d{2,3}/\d{1,2}/\d{1,2})"
)


# presidio's context step costs (hits x tokens) per call, and spaCy refuses texts over 10**6
# characters: long texts go through in pieces. A piece's margins hold the longest pattern
# (and its context words) that can cross a cut.
_PIECE_CHARS = 8_000
_MARGIN_CHARS = 200


@dataclass(frozen=True)
class IdentifierHit:
    """One identifier found in a text: kind, position, matched text and score."""

    entity: str
    start: int
    end: int
    text: str
    score: float


class _TwIdRecognizer(PatternRecognizer):
    def validate_result(self, pattern_text: str) -> bool:
        # False drops the match (score 0): look-alikes with a wrong check digit pass.
        return bool(tw_id_is_valid(pattern_text.upper()))


class _InstitutionRecognizer(PatternRecognizer):
    def validate_result(self, pattern_text: str) -> bool | None:
        digits = "".join(ch for ch in pattern_text if ch.isdigit())[-10:]
        if digits[:2] in OWNERSHIP_CODES and digits[2:4] in COUNTY_CODES:
            return None  # plausible: keep the pattern score (context raises it)
        return False


@Language.component("enclave_lower_lemma")
def _lower_lemma(doc: Doc) -> Doc:
    # A blank pipeline has no lemmatizer; presidio's context words compare lemmas.
    for token in doc:
        token.lemma_ = token.lower_
    return doc


class BlankSpacyNlpEngine(SpacyNlpEngine):
    """presidio NLP engine over a blank spaCy pipeline: offline, no model download."""

    def __init__(self, lang_code: str = "en") -> None:
        super().__init__(models=[{"lang_code": lang_code, "model_name": f"blank:{lang_code}"}])
        self._lang = lang_code

    def load(self) -> None:
        """Build the blank pipeline instead of loading a trained model."""
        nlp = spacy.blank(self._lang)
        nlp.add_pipe("enclave_lower_lemma")
        self.nlp = {self._lang: nlp}


def _recognizers() -> list[PatternRecognizer]:
    # No IGNORECASE/DOTALL: the letters' cases are spelled out in the classes, and the
    # validator upper-cases the match (a123456789 is written for A123456789).
    strict = 0
    national = _TwIdRecognizer(
        supported_entity="TW_NATIONAL_ID",
        patterns=[Pattern("tw_national_id",
                          _ID_BEFORE + r"[A-Za-z][1289]\d{8}" + _NOT_ALNUM_AFTER, 0.5)],
        context=["身分證", "id", "身分", "統一編號"], global_regex_flags=strict,
    )
    resident = _TwIdRecognizer(
        supported_entity="TW_RESIDENT_CERTIFICATE",
        patterns=[Pattern("tw_arc", _ID_BEFORE + r"[A-Za-z][A-Da-d]\d{8}" + _NOT_ALNUM_AFTER,
                          0.5)],
        context=["居留證", "arc", "resident"], global_regex_flags=strict,
    )
    phone = PatternRecognizer(
        supported_entity="TW_PHONE",
        patterns=[
            Pattern("tw_mobile", _NOT_DIGIT_BEFORE + r"09\d{2}[-\s]?\d{3}[-\s]?\d{3}"
                    + _NOT_DIGIT_AFTER, 0.7),
            Pattern("tw_mobile_intl", r"\+886[-\s]?9\d{2}[-\s]?\d{3}[-\s]?\d{3}"
                    + _NOT_DIGIT_AFTER, 0.8),
            Pattern("tw_landline_paren", r"\(0\d{1,2}\)\s?\d{3,4}[-\s]?\d{4}"
                    + _NOT_DIGIT_AFTER, 0.7),
            Pattern("tw_landline_dash", _NOT_DIGIT_BEFORE + r"0[2-8]\d?-\d{3,4}-?\d{4}"
                    + _NOT_DIGIT_AFTER, 0.6),
            Pattern("tw_landline_intl", r"\+886[-\s]?[2-8]\d?[-\s]?\d{3,4}[-\s]?\d{4}"
                    + _NOT_DIGIT_AFTER, 0.7),
        ],
        context=["電話", "手機", "phone", "tel", "mobile", "聯絡"],
    )
    institution = _InstitutionRecognizer(
        supported_entity="MEDICAL_INSTITUTION_CODE",
        patterns=[
            Pattern("inst_code", _NOT_DIGIT_BEFORE + r"\d{10}" + _NOT_DIGIT_AFTER, 0.3),
            Pattern("inst_code_zh", r"(?:醫院|院所|診所|醫事機構|機構代[號碼]|藥局)\D{0,6}"
                    + _NOT_DIGIT_BEFORE + r"\d{10}" + _NOT_DIGIT_AFTER, 0.8),
        ],
        context=["hospital", "hosp", "hosp_id", "clinic", "institution", "facility",
                 "provider", "pharmacy"],
    )
    dob = PatternRecognizer(
        supported_entity="DATE_OF_BIRTH",
        patterns=[
            Pattern("dob_context", r"(?:出生|生日|birth|dob|born)[^\n\d]{0,24}" + _DATE, 0.85),
            Pattern("date_plain", _NOT_DIGIT_BEFORE + _DATE + _NOT_DIGIT_AFTER, 0.15),
        ],
        context=["birth", "born", "dob", "birthday", "birthdate"],
    )
    surname = f"[{SURNAMES}]"
    name = PatternRecognizer(
        supported_entity="CHINESE_PERSON_NAME",
        patterns=[
            Pattern("zh_name_label", r"姓名\s*[:：=]?\s*" + surname + _HAN + "{1,2}", 0.85),
            Pattern("zh_name_patient", r"(?:病患|病人|患者|個案|案主|受檢者)\s*[:：=\s]\s*"
                    + surname + _HAN + "{1,2}", 0.8),
            Pattern("zh_name_title", surname + _HAN + "{1,2}(?:先生|小姐|女士)", 0.7),
        ],
        context=["name", "patient"],
    )
    return [national, resident, phone, institution, dob, name]


@functools.lru_cache(maxsize=1)
def analyzer() -> AnalyzerEngine:
    """The shared presidio engine (built once per process; building costs ~0.1 s)."""
    engine = BlankSpacyNlpEngine("en")
    engine.load()
    registry = RecognizerRegistry(supported_languages=["en"])
    for recognizer in _recognizers():
        registry.add_recognizer(recognizer)
    return AnalyzerEngine(registry=registry, nlp_engine=engine, supported_languages=["en"])


def scan_text(text: str, *, min_score: float = 0.5) -> list[IdentifierHit]:
    """Find identifiers in ``text``.

    Texts longer than ``_PIECE_CHARS`` are scanned piece by piece, each piece read with
    ``_MARGIN_CHARS`` of its neighbours so that identifiers and context words across a cut
    are seen whole; a hit counts in the piece where it starts.

    Parameters
    ----------
    text : str
        Any text (Chinese or English), of any length.
    min_score : float
        Hits scoring below this (after context enhancement) are dropped.

    Returns
    -------
    list[IdentifierHit]
        Sorted by position; overlapping hits of different kinds are all kept.
    """
    if not text.strip():
        return []
    engine = analyzer()
    hits: list[IdentifierHit] = []
    for start in range(0, len(text), _PIECE_CHARS):
        end = start + _PIECE_CHARS
        lo, hi = max(0, start - _MARGIN_CHARS), min(len(text), end + _MARGIN_CHARS)
        piece = text[lo:hi]
        if not piece.strip():
            continue
        for r in engine.analyze(text=piece, language="en", score_threshold=min_score):
            if start <= lo + r.start < end:  # the margins belong to the neighbouring pieces
                hits.append(IdentifierHit(r.entity_type, lo + r.start, lo + r.end,
                                          piece[r.start:r.end], float(r.score)))
    return sorted(hits, key=lambda h: (h.start, h.entity))
