"""The packaged catalog loads, holds every file/column, and broken definitions are refused."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from catalog import PACKAGED_ROOT, CatalogError, CatalogNotFound, load_catalog

EXPECTED = {
    "H_NHI_ENROL": ["PREM_YM", "ID", "ID_S", "ID_BIRTHDAY", "ID1", "ID_RELATION", "ID1_UNIT",
                    "ID1_CITY", "ID1_AMT", "UNIT_ID", "ID_IN_DATE", "ID_OUT_DATE", "ID_STATUS",
                    "NAME", "ADDRESS", "TEL"],
    "H_NHI_OPDTE": ["FEE_YM", "APPL_TYPE", "HOSP_ID", "APPL_DATE", "CASE_TYPE", "SEQ_NO",
                    "CURE_ITEM_NO1", "CURE_ITEM_NO2", "FUNC_TYPE", "FUNC_DATE", "TREAT_END_DATE",
                    "ID_BIRTHDAY", "ID", "ID_S", "CARD_SEQ_NO", "GAVE_KIND", "PART_NO",
                    "ICD9CM_1", "ICD9CM_2", "ICD9CM_3", "ICD_OP_CODE1", "DRUG_DAY", "MED_TYPE",
                    "PRSN_ID", "PHAR_ID", "DRUG_DOT", "TREAT_DOT", "DIAG_DOT", "DSVC_DOT",
                    "T_DOT", "PART_DOT", "T_APPL_DOT", "TREAT_CODE", "DSVC_NO", "CASE_PAY_CODE"],
    "H_NHI_OPDTO": ["ORDER_SEQ_NO", "ORDER_TYPE", "DRUG_NO", "DRUG_USE", "DRUG_FRE", "UNIT_P",
                    "TOTAL_Q", "TOTAL_DOT", "PAY_RATE"],
    "H_NHI_IPDTE": ["ID", "ID_BIRTHDAY", "ID_S", "GAVE_KIND", "TRAC_EVEN", "CARD_SEQ_NO",
                    "FUNC_TYPE", "IN_DATE", "OUT_DATE", "APPL_BEG_DATE", "APPL_END_DATE",
                    "E_BED_DAY", "S_BED_DAY", "PRSN_ID", "DRG_CODE", "TRAN_CODE", "ICD9CM_1",
                    "ICD9CM_2", "ICD9CM_3", "ICD9CM_4", "ICD9CM_5", "ICD_OP_CODE1",
                    "ICD_OP_CODE2", "MED_DOT", "PART_DOT", "APPL_DOT", "PART_MARK", "TW_DRGS"],
    "H_NHI_IPDTO": ["ORDER_SEQ_NO", "ORDER_TYPE", "ORDER_CODE", "ORDER_QTY", "ORDER_PRICE",
                    "ORDER_DOT", "PAY_RATE"],
    "H_NHI_DRUGE": ["R_HOSP_ID", "R_CASE_TYPE", "FUNC_TYPE", "FUNC_DATE", "DRUG_DATE",
                    "ID_BIRTHDAY", "ID", "ID_S", "CARD_SEQ_NO", "GAVE_KIND", "DRUG_DAY",
                    "PRSN_ID", "PHAR_ID", "DRUG_DOT", "DSVC_DOT", "PART_NO", "PART_DOT", "T_DOT",
                    "T_APPL_DOT", "ICD9CM_1", "ICD9CM_2"],
    "H_NHI_DRUGO": ["ORDER_SEQ_NO", "DRUG_NO", "DRUG_USE", "TOTAL_Q", "UNIT_P", "TOTAL_DOT",
                    "PAY_RATE"],
    "H_NHI_MEDFA": ["DATA_YEAR", "HOSP_ID", "HOSP_NAME", "HOSP_CONT_TYPE", "HOS", "AREA_NO_H",
                    "HOSP_TYPE_ID", "CNT_S_DATE", "CNT_E_DATE", "BED_CNT"],
    "H_NHI_DRUG": ["DATA_YEAR", "DRUG_NO", "DRUG_NAME", "ATC_CODE", "UNIT_PRICE",
                   "VALID_S_DATE", "VALID_E_DATE"],
}  # fmt: skip
CLAIM_KEY = ["FEE_YM", "APPL_TYPE", "HOSP_ID", "APPL_DATE", "CASE_TYPE", "SEQ_NO"]
CODESETS = ["county", "func_type", "outpatient_case_type", "inpatient_case_type",
            "pharmacy_case_type", "order_type", "unit_ins_type", "id_status", "relation", "sex",
            "hos_ownership", "hosp_cont_type", "gave_kind", "tran_code", "med_type", "drug_fre",
            "appl_type", "icd10cm_chapters"]  # fmt: skip


def test_packaged_catalog_has_every_file_and_column() -> None:
    cat = load_catalog()
    assert cat is load_catalog()  # cached
    assert {f.name for f in cat.files} == set(EXPECTED)
    for name, cols in EXPECTED.items():
        fd = cat.file(name)
        missing = [c for c in cols if c not in fd.column_names]
        assert not missing, (name, missing)
    for name in ("H_NHI_OPDTE", "H_NHI_IPDTE", "H_NHI_DRUGE"):
        assert cat.file(name).primary_key == CLAIM_KEY
    for child, parent in [("H_NHI_OPDTO", "H_NHI_OPDTE"), ("H_NHI_IPDTO", "H_NHI_IPDTE"),
                          ("H_NHI_DRUGO", "H_NHI_DRUGE")]:  # fmt: skip
        fd = cat.file(child)
        assert fd.parent is not None and fd.parent.file == parent
        assert fd.parent.columns == CLAIM_KEY
        assert fd.primary_key == [*CLAIM_KEY, "ORDER_SEQ_NO"]
    assert sorted(cat.codesets) == sorted(CODESETS)
    assert len(cat.codeset("county").codes) == 22
    assert len(cat.codeset("icd10cm_chapters").chapters or []) == 22


def test_roles_and_order() -> None:
    cat = load_catalog()
    kinds = [f.kind for f in cat.files]
    assert kinds == sorted(kinds, key=["reference", "registry", "enrollment", "claims",
                                       "orders"].index)  # fmt: skip
    enrol = cat.file("H_NHI_ENROL")
    assert {c.name for c in enrol.drop_columns} == {"NAME", "ADDRESS", "TEL"}
    assert enrol.column("UNIT_ID").identifier == "insured_unit"
    assert enrol.column("ID_BIRTHDAY").coarsen == "year_month"
    assert "ID_BIRTHDAY" in {c.name for c in enrol.quasi_columns}
    op = cat.file("H_NHI_OPDTE")
    assert {c.name: c.identifier for c in op.identifier_columns} == {
        "HOSP_ID": "institution", "ID": "person", "PRSN_ID": "physician", "PHAR_ID": "physician"
    }  # fmt: skip
    assert op.column_classification("ID") == "C"
    assert op.column_classification("FUNC_TYPE") == "B"
    assert cat.file("H_NHI_DRUG").classification == "A"


def test_match_source_and_not_found() -> None:
    cat = load_catalog()
    hit = cat.match_source("H_NHI_OPDTE_2023.csv")
    assert hit is not None and hit[0].name == "H_NHI_OPDTE" and hit[1] == 2023
    hit = cat.match_source("/in/H_NHI_DRUG_2019.csv")
    assert hit is not None and hit[0].name == "H_NHI_DRUG" and hit[1] == 2019
    assert cat.match_source("H_NHI_OPDTE_23.csv") is None
    assert cat.match_source("H_NHI_DRUGX_2023.csv") is None
    with pytest.raises(CatalogNotFound, match="H_NHI_OPDTE"):
        cat.file("H_NHI_NOPE")
    with pytest.raises(CatalogNotFound, match="no column 'NOPE'"):
        cat.file("H_NHI_OPDTE").column("NOPE")
    with pytest.raises(CatalogNotFound, match="county"):
        cat.codeset("nope")


# --- broken definitions ---------------------------------------------------------------------


def _copy(tmp_path: Path) -> Path:
    root = tmp_path / "cat"
    shutil.copytree(PACKAGED_ROOT / "files", root / "files")
    shutil.copytree(PACKAGED_ROOT / "codes", root / "codes")
    return root


def _edit(root: Path, name: str, change) -> None:  # type: ignore[no-untyped-def]
    path = root / "files" / f"{name}.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    change(data)
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")


def _col(data: dict, name: str) -> dict:
    return next(c for c in data["columns"] if c["name"] == name)


BROKEN = [
    ("H_NHI_OPDTE", lambda d: _col(d, "FUNC_TYPE").update(codes="nope"), "codes"),
    ("H_NHI_OPDTE", lambda d: d.update(primary_key=["FEE_YM", "NOPE"]), "primary_key"),
    ("H_NHI_OPDTO", lambda d: d["parent"].update(columns=["FEE_YM", "NOPE"]), "parent.columns"),
    ("H_NHI_OPDTO", lambda d: d["parent"].update(file="H_NHI_NOPE"), "parent.file"),
    ("H_NHI_OPDTE", lambda d: d["references"][0].update(columns=["NOPE"]), "references"),
    ("H_NHI_OPDTE", lambda d: d["references"][0].update(file="H_NHI_NOPE"), "references[0].file"),
    ("H_NHI_OPDTE", lambda d: d["references"][0].update(file_columns=["NOPE"]), "file_columns"),
    ("H_NHI_OPDTE", lambda d: _col(d, "ID").pop("identifier"), "identifier"),
    ("H_NHI_OPDTE", lambda d: _col(d, "FUNC_TYPE").update(coarsen="year"), "coarsen"),
    ("H_NHI_OPDTE", lambda d: _col(d, "SEQ_NO").update(pattern="^[0-9"), "pattern"),
    ("H_NHI_OPDTE", lambda d: _col(d, "SEQ_NO").update(pattern=r"^\d{6}$"), "write [0-9]"),
    ("H_NHI_OPDTE", lambda d: d.update(source_pattern="^(x"), "source_pattern"),
    ("H_NHI_OPDTE", lambda d: d["columns"].append(dict(_col(d, "ID"))), "duplicate column"),
    ("H_NHI_OPDTE", lambda d: d.update(year_column="NOPE"), "year_column"),
    ("H_NHI_OPDTE", lambda d: _col(d, "ID").update(role="secret"), "role"),
    ("H_NHI_OPDTE", lambda d: _col(d, "ID").update(type="text"), "type"),
    ("H_NHI_OPDTE", lambda d: _col(d, "ID").update(colour="red"), "colour"),
    ("H_NHI_OPDTE", lambda d: d["invariants"][0].update(expr="T_DOT = NOPE"), "invariants"),
]


@pytest.mark.parametrize(("name", "change", "field"), BROKEN)
def test_broken_definition_is_rejected(tmp_path: Path, name: str, change, field: str) -> None:  # type: ignore[no-untyped-def]
    root = _copy(tmp_path)
    _edit(root, name, change)
    with pytest.raises(CatalogError) as info:
        load_catalog(root)
    msg = str(info.value)
    assert f"{name}.yaml" in msg
    assert field in msg


def test_unreadable_yaml_and_missing_folder(tmp_path: Path) -> None:
    root = _copy(tmp_path)
    (root / "codes" / "sex.yaml").write_text("name: [unclosed", encoding="utf-8")
    with pytest.raises(CatalogError, match=r"sex\.yaml"):
        load_catalog(root)
    with pytest.raises(CatalogError, match="missing"):
        load_catalog(tmp_path / "nowhere")


def test_copy_of_packaged_catalog_loads(tmp_path: Path) -> None:
    cat = load_catalog(_copy(tmp_path))
    assert len(cat.files) == len(EXPECTED)
