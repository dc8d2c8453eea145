"""Readers: formats, encodings and input errors (exit code 2)."""

import io

import polars as pl
import pytest
from openpyxl import Workbook
from PIL import Image

from disclosure_review.checker import check_paths
from disclosure_review.errors import EmptyTableError, ManifestError, UnreadableOutputError
from disclosure_review.readers import read_output


def test_big5_csv_keeps_masks_as_text(write):
    path = write("b.csv", "地區,人數\n北區,<6\n南區,30\n", encoding="cp950")
    (ev,) = read_output(path)
    assert ev.table["人數"].to_list() == ["<6", "30"]
    assert ev.table.columns == ["地區", "人數"]


def test_parquet_and_xlsx(tmp_path):
    pl.DataFrame({"g": ["a", "b"], "n": [3, 40]}).write_parquet(tmp_path / "t.parquet")
    book = Workbook()
    sheet = book.active
    sheet.title = "表1"
    for row in (["g", "人數"], ["a", 7], ["b", 2]):
        sheet.append(row)
    book.save(tmp_path / "t.xlsx")
    r = check_paths([tmp_path / "t.parquet", tmp_path / "t.xlsx"])
    assert [(f.file.rsplit("/", 1)[-1], f.location) for f in r.findings] == [
        ("t.parquet", "row[g=a] column 'n'"),
        ("t.xlsx", "sheet '表1': row[g=b] column '人數'"),
    ]


def test_png_is_a_figure_with_metadata(tmp_path):
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", "hidden")
    Image.new("RGB", (10, 5)).save(tmp_path / "f.png", pnginfo=info)
    r = check_paths([tmp_path / "f.png"])
    assert r.verdict.value == "review"
    assert "Comment" in r.findings[0].detail and "10x5" in r.findings[0].detail


def test_jpeg_is_read(tmp_path):
    buf = io.BytesIO()
    Image.new("RGB", (3, 3)).save(buf, format="JPEG")
    (tmp_path / "f.jpg").write_bytes(buf.getvalue())
    assert read_output(tmp_path / "f.jpg")[0].figure.format == "JPEG"


@pytest.mark.parametrize(
    ("name", "data", "error"),
    [
        ("empty.csv", b"g,n\n", EmptyTableError),
        ("blank.csv", b"", UnreadableOutputError),
        ("x.docx", b"PK", UnreadableOutputError),
        ("bad.png", b"not an image", UnreadableOutputError),
        ("bad.parquet", b"nope", UnreadableOutputError),
        ("bad.ipynb", b"{", UnreadableOutputError),
        ("bin.csv", bytes([0xFF, 0xFE, 0x81, 0x30]), UnreadableOutputError),
    ],
)
def test_input_errors_have_exit_code_2(tmp_path, name, data, error):
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(error) as info:
        check_paths([path])
    assert info.value.exit_code == 2
    assert name in str(info.value)


def test_missing_file(tmp_path):
    with pytest.raises(UnreadableOutputError, match="no such file"):
        check_paths([tmp_path / "nope.csv"])


def test_manifest_errors(tmp_path):
    (tmp_path / "t.csv").write_text("g,n\na,10\n")
    (tmp_path / "m.json").write_text('{"files": [{"path": "t.csv", "kind": "pie"}]}')
    with pytest.raises(ManifestError, match="pie"):
        check_paths([tmp_path / "t.csv"], manifest=tmp_path / "m.json")
    (tmp_path / "m2.json").write_text(
        '{"files": [{"path": "t.csv", "kind": "frequency", "counts": ["nn"]}]}')
    with pytest.raises(ManifestError, match="nn"):
        check_paths([tmp_path / "t.csv"], manifest=tmp_path / "m2.json")
