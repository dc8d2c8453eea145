"""Column order of every source file: from the catalog when it defines the file, else built in.

The built-in lists restate the task's column list so generation works before the catalog
YAML exists; once a file is in ``catalog/files``, the catalog's order and names win.
"""

from __future__ import annotations

_KEY = ["FEE_YM", "APPL_TYPE", "HOSP_ID", "APPL_DATE", "CASE_TYPE", "SEQ_NO"]

BUILTIN: dict[str, list[str]] = {
    "H_NHI_ENROL": [
        "PREM_YM",
        "ID",
        "ID_S",
        "ID_BIRTHDAY",
        "ID1",
        "ID_RELATION",
        "ID1_UNIT",
        "ID1_CITY",
        "ID1_AMT",
        "UNIT_ID",
        "ID_IN_DATE",
        "ID_OUT_DATE",
        "ID_STATUS",
        "NAME",
        "ADDRESS",
        "TEL",
    ],
    "H_NHI_OPDTE": [
        *_KEY,
        *[
            "CURE_ITEM_NO1",
            "CURE_ITEM_NO2",
            "FUNC_TYPE",
            "FUNC_DATE",
            "TREAT_END_DATE",
            "ID_BIRTHDAY",
            "ID",
            "ID_S",
            "CARD_SEQ_NO",
            "GAVE_KIND",
            "PART_NO",
            "ICD9CM_1",
            "ICD9CM_2",
            "ICD9CM_3",
            "ICD_OP_CODE1",
            "DRUG_DAY",
            "MED_TYPE",
            "PRSN_ID",
            "PHAR_ID",
            "DRUG_DOT",
            "TREAT_DOT",
            "DIAG_DOT",
            "DSVC_DOT",
            "T_DOT",
            "PART_DOT",
            "T_APPL_DOT",
            "TREAT_CODE",
            "DSVC_NO",
            "CASE_PAY_CODE",
        ],
    ],
    "H_NHI_OPDTO": [
        *_KEY,
        *[
            "ORDER_SEQ_NO",
            "ORDER_TYPE",
            "DRUG_NO",
            "DRUG_USE",
            "DRUG_FRE",
            "UNIT_P",
            "TOTAL_Q",
            "TOTAL_DOT",
            "PAY_RATE",
        ],
    ],
    "H_NHI_IPDTE": [
        *_KEY,
        *[
            "ID",
            "ID_BIRTHDAY",
            "ID_S",
            "GAVE_KIND",
            "TRAC_EVEN",
            "CARD_SEQ_NO",
            "FUNC_TYPE",
            "IN_DATE",
            "OUT_DATE",
            "APPL_BEG_DATE",
            "APPL_END_DATE",
            "E_BED_DAY",
            "S_BED_DAY",
            "PRSN_ID",
            "DRG_CODE",
            "TRAN_CODE",
            "ICD9CM_1",
            "ICD9CM_2",
            "ICD9CM_3",
            "ICD9CM_4",
            "ICD9CM_5",
            "ICD_OP_CODE1",
            "ICD_OP_CODE2",
            "MED_DOT",
            "PART_DOT",
            "APPL_DOT",
            "PART_MARK",
            "TW_DRGS",
        ],
    ],
    "H_NHI_IPDTO": [
        *_KEY,
        *[
            "ORDER_SEQ_NO",
            "ORDER_TYPE",
            "ORDER_CODE",
            "ORDER_QTY",
            "ORDER_PRICE",
            "ORDER_DOT",
            "PAY_RATE",
        ],
    ],
    "H_NHI_DRUGE": [
        *_KEY,
        *[
            "R_HOSP_ID",
            "R_CASE_TYPE",
            "FUNC_TYPE",
            "FUNC_DATE",
            "DRUG_DATE",
            "ID_BIRTHDAY",
            "ID",
            "ID_S",
            "CARD_SEQ_NO",
            "GAVE_KIND",
            "DRUG_DAY",
            "PRSN_ID",
            "PHAR_ID",
            "DRUG_DOT",
            "DSVC_DOT",
            "PART_NO",
            "PART_DOT",
            "T_DOT",
            "T_APPL_DOT",
            "ICD9CM_1",
            "ICD9CM_2",
        ],
    ],
    "H_NHI_DRUGO": [
        *_KEY,
        *["ORDER_SEQ_NO", "DRUG_NO", "DRUG_USE", "TOTAL_Q", "UNIT_P", "TOTAL_DOT", "PAY_RATE"],
    ],
    "H_NHI_MEDFA": [
        "DATA_YEAR",
        "HOSP_ID",
        "HOSP_NAME",
        "HOSP_CONT_TYPE",
        "HOS",
        "AREA_NO_H",
        "HOSP_TYPE_ID",
        "CNT_S_DATE",
        "CNT_E_DATE",
        "BED_CNT",
    ],
    "H_NHI_DRUG": [
        "DATA_YEAR",
        "DRUG_NO",
        "DRUG_NAME",
        "ATC_CODE",
        "UNIT_PRICE",
        "VALID_S_DATE",
        "VALID_E_DATE",
    ],
}

PRIMARY_KEYS: dict[str, list[str]] = {
    "H_NHI_ENROL": ["ID", "ID_IN_DATE"],
    "H_NHI_OPDTE": _KEY,
    "H_NHI_OPDTO": [*_KEY, "ORDER_SEQ_NO"],
    "H_NHI_IPDTE": _KEY,
    "H_NHI_IPDTO": [*_KEY, "ORDER_SEQ_NO"],
    "H_NHI_DRUGE": _KEY,
    "H_NHI_DRUGO": [*_KEY, "ORDER_SEQ_NO"],
    "H_NHI_MEDFA": ["HOSP_ID"],
    "H_NHI_DRUG": ["DRUG_NO"],
}

FILES = list(BUILTIN)


def columns_for(name: str) -> list[str]:
    """Column names of source file ``name`` in file order (catalog first, built-in fallback)."""
    fd = _catalog_file(name)
    return list(fd.column_names) if fd is not None else BUILTIN[name]


def primary_key_for(name: str) -> list[str]:
    """Primary-key columns of source file ``name`` (catalog first, built-in fallback)."""
    fd = _catalog_file(name)
    return list(fd.primary_key) if fd is not None else PRIMARY_KEYS[name]


def _catalog_file(name: str):
    try:
        from catalog import load_catalog

        return load_catalog().file(name)
    except Exception:  # catalog not written yet or mid-edit: use the built-in list
        return None
