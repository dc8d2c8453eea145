"""Rule 7: identifier recognizers (offline presidio) and checksums."""

import pytest

from catalog.checks import tw_id_is_valid
from disclosure_review.identifiers import scan_text


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        ("A123456789", True),   # national ID, hand-checked: 1 + 120 + 9 = 130
        ("A123456788", False),  # wrong check digit
        ("B223456781", False),
        ("A800000014", True),   # new-format resident number
        ("AC01234567", True),   # old resident certificate: 1 + 16 + 56 + 7 = 80
        ("AC01234568", False),
        ("a123456789", False),  # the catalog check is strict; the scanner upper-cases text first
        ("A12345678", False),   # too short
        ("A323456789", False),  # second digit 3 is not a valid sex digit
    ],
)
def test_checksum(value, valid):
    assert tw_id_is_valid(value) is valid


def _kinds(text: str) -> list[str]:
    return [h.entity for h in scan_text(text)]


def test_national_id_lookalike_does_not_match():
    assert _kinds("病患身分證A123456789") == ["TW_NATIONAL_ID"]
    assert _kinds("sample code A123456788") == []
    assert _kinds("居留證 AC01234567") == ["TW_RESIDENT_CERTIFICATE"]


def test_phone_numbers():
    assert _kinds("手機 0912-345-678") == ["TW_PHONE"]
    assert _kinds("電話 (02)2345-6789") == ["TW_PHONE"]
    assert _kinds("+886 912 345 678") == ["TW_PHONE"]
    assert _kinds("total 0912") == []


def test_medical_institution_code_needs_plausible_digits_and_context():
    assert _kinds("醫院代號 0401180014") == ["MEDICAL_INSTITUTION_CODE"]
    assert _kinds("hospital 0401180014") == ["MEDICAL_INSTITUTION_CODE"]
    assert _kinds("hospital 9901180014") == []  # 99 is no ownership code
    assert _kinds("sum 0401180014") == []       # no context: too weak alone


def test_date_of_birth_needs_context():
    assert _kinds("出生日期：1950-03-02") == ["DATE_OF_BIRTH"]
    assert _kinds("born 1950/01/02") == ["DATE_OF_BIRTH"]
    assert _kinds("visit 2020-01-02") == []


def test_chinese_names_with_context_only():
    assert _kinds("姓名：王小明") == ["CHINESE_PERSON_NAME"]
    assert _kinds("林美玲小姐來電") == ["CHINESE_PERSON_NAME"]
    assert _kinds("病人高血壓人數") == []
    assert _kinds("王小明") == []


def test_ids_in_lower_case_found_and_validated_upper_cased():
    assert _kinds("id a123456789") == ["TW_NATIONAL_ID"]
    assert _kinds("arc ac01234567") == ["TW_RESIDENT_CERTIFICATE"]
    assert _kinds("arc aC01234567") == ["TW_RESIDENT_CERTIFICATE"]
    assert _kinds("id a123456788") == []  # wrong check digit in lower case too


@pytest.mark.parametrize("text", [
    "A123456789",                 # the whole text
    "A123456789,F,1960",          # start of the text
    "id,sex\nA123456789,F",       # start of a line
    "id,sex\r\nA123456789,F",
    '{"rows": "id\\nA123456789"}',  # after an escaped line break (JSON, string literals)
    "\tA123456789",
])
def test_id_at_start_of_text_or_line_found(text):
    assert _kinds(text) == ["TW_NATIONAL_ID"]


def test_id_inside_a_word_or_number_not_found():
    assert _kinds("xA123456789") == []
    assert _kinds("A1234567890") == []
    assert _kinds("9A123456789") == []


def test_long_text_scanned_whole_in_pieces():
    """Over spaCy's 10**6-character limit, with IDs across the piece cuts: each found once."""
    from disclosure_review import identifiers

    filler = "visit count 12 total\n" * (1_100_000 // 21)
    cuts = [identifiers._PIECE_CHARS * k - 4 for k in (1, 2, 60)] + [len(filler) - 20]
    text = filler
    for at in sorted(cuts):  # ascending: each cut lands where it says in the final text
        text = text[:at] + " A123456789 " + text[at:]
    hits = scan_text(text)
    assert [h.entity for h in hits] == ["TW_NATIONAL_ID"] * len(cuts)
    assert all(text[h.start:h.end] == "A123456789" for h in hits)
