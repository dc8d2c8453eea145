"""The browser rules (:mod:`enclave.workspace.screening`) as pure functions: what may come in,
what may go back out. One test per rule; each fails if its rule is removed."""

from __future__ import annotations

import base64
import copy
import io
import json

import polars as pl
import pytest
from PIL import Image, PngImagePlugin

from enclave.config import load_settings
from enclave.errors import PermissionDenied, ScreeningRefused
from enclave.workspace.policy import load_workspace_policy
from enclave.workspace.screening import (
    screen_egress,
    screen_image_egress,
    screen_ingress,
)

NATIONAL_ID = "A123456789"  # checksum-valid (tests/disclosure_review/test_identifiers.py)
RESIDENT_ID = "AC01234567"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def policy(tmp_path):
    """The packaged policy (policies/workspace.yaml and quotas.yaml), as deployed."""
    return load_workspace_policy(load_settings(tmp_path / "home"))


def _png(size=(8, 6), *, text: str | None = None, icc: bytes | None = None) -> bytes:
    image = Image.new("RGB", size, (200, 30, 30))
    info = PngImagePlugin.PngInfo()
    if text is not None:
        info.add_text("Comment", text)
    out = io.BytesIO()
    image.save(out, format="PNG", pnginfo=info, **({"icc_profile": icc} if icc else {}))
    return out.getvalue()


def _b64_model(path: str, data: bytes) -> dict:
    return {"name": path, "path": path, "type": "file", "format": "base64",
            "mimetype": "image/png", "content": base64.b64encode(data).decode(), "size": len(data),
            "writable": True, "created": None, "last_modified": None}


def _text_model(path: str, text: str) -> dict:
    return {"name": path, "path": path, "type": "file", "format": "text", "mimetype": "text/plain",
            "content": text, "writable": True, "created": None, "last_modified": None}


def _code(source: str = "x = 1", outputs: list | None = None, **extra) -> dict:
    return {"cell_type": "code", "id": "c1", "metadata": {}, "execution_count": 1,
            "source": source, "outputs": outputs or [], **extra}


def _notebook(*cells: dict, metadata: dict | None = None) -> dict:
    return {"nbformat": 4, "nbformat_minor": 5, "metadata": metadata or {}, "cells": list(cells)}


def _stream(text) -> dict:
    return {"output_type": "stream", "name": "stdout", "text": text}


def _nb_model(nb: dict) -> dict:
    return {"name": "a.ipynb", "path": "a.ipynb", "type": "notebook", "format": "json",
            "mimetype": None, "content": nb, "writable": True, "created": None,
            "last_modified": None}


def _refused(call, *args, **kwargs) -> ScreeningRefused:
    with pytest.raises(ScreeningRefused) as info:
        call(*args, **kwargs)
    return info.value


# -- egress: base64 files -------------------------------------------------------------------
def test_parquet_behind_png_magic_refused(policy):
    buffer = io.BytesIO()
    pl.DataFrame({"person_id": ["p1", "p2"], "age": [61, 47]}).write_parquet(buffer)
    smuggled = PNG_MAGIC + buffer.getvalue()
    err = _refused(screen_egress, _b64_model("figure.png", smuggled), path="figure.png",
                   policy=policy)
    assert isinstance(err, PermissionDenied)
    assert (err.file, err.key) == ("figure.png", "max_image_kb")
    assert "binary files" in str(err) and "policies/workspace.yaml max_image_kb" in str(err)


def test_png_with_trailing_bytes_and_metadata_is_re_encoded(policy):
    original = _png(text="SECRET-IN-CHUNK", icc=b"SECRET-IN-PROFILE" * 20)
    trailer = b"SECRET-AFTER-IEND" * 50
    out = screen_egress(_b64_model("figure.png", original + trailer), path="figure.png",
                        policy=policy)
    sent = base64.b64decode(out["content"])
    assert trailer[:17] not in sent
    assert b"SECRET-IN-CHUNK" not in sent
    assert (out["mimetype"], out["size"]) == ("image/png", len(sent))
    with Image.open(io.BytesIO(sent)) as image, Image.open(io.BytesIO(original)) as before:
        assert image.format == "PNG"
        assert "icc_profile" not in image.info and "Comment" not in image.info
        assert image.convert("RGB").tobytes() == before.convert("RGB").tobytes()


def test_jpeg_and_gif_are_sent_as_png(policy):
    for fmt in ("JPEG", "GIF"):
        buffer = io.BytesIO()
        Image.new("RGB", (4, 4), (0, 120, 0)).save(buffer, format=fmt)
        assert screen_image_egress(buffer.getvalue(), path="f", policy=policy).startswith(PNG_MAGIC)


def test_truncated_image_refused(policy):
    png = _png((64, 64))
    err = _refused(screen_image_egress, png[: len(png) // 2], path="cut.png", policy=policy)
    assert err.key == "max_image_kb"


def test_image_pixel_and_size_caps(policy):
    tiny = policy.model_copy(update={"max_image_megapixels": 1})
    err = _refused(screen_image_egress, _png((1200, 1000)), path="big.png", policy=tiny)
    assert err.key == "max_image_megapixels"
    small = policy.model_copy(update={"max_image_kb": 1})
    noisy = io.BytesIO()
    Image.effect_noise((64, 64), 100).save(noisy, format="PNG")
    err = _refused(screen_image_egress, noisy.getvalue(), path="noise.png", policy=small)
    assert err.key == "max_image_kb"


# -- egress: text, notebooks, listings ------------------------------------------------------
def test_big_text_csv_refused_small_one_passes(policy):
    rows = "".join(f"p{i:06d},F,1960,{i % 97}\n" for i in range(20_000))  # ~400 KiB
    err = _refused(screen_egress, _text_model("people.csv", rows), path="people.csv",
                   policy=policy)
    assert err.key == "max_text_kb" and "policies/workspace.yaml max_text_kb" in str(err)
    small = _text_model("codes.csv", "code,label\nE11,diabetes\n")
    assert screen_egress(small, path="codes.csv", policy=policy) == small


def test_kernel_written_notebook_output_capped_on_egress(policy):
    huge = "x" * (3 * 1024 * 1024)
    nb = _notebook(_code("print(df)", [_stream(huge)]), _code("1", [_stream("ok\n")]))
    out = screen_egress(_nb_model(nb), path="a.ipynb", policy=policy)
    first, second = (c["outputs"][0] for c in out["content"]["cells"])
    assert "max_output_cell_kb" in first["text"] and len(json.dumps(first)) < 1024
    assert second == _stream("ok\n")
    assert nb["cells"][0]["outputs"][0]["text"] is huge  # the input is not changed


def test_notebook_over_total_cap_after_capping_refused_on_egress(policy):
    almost = "y" * (policy.max_output_cell_kb * 1024 - 200)
    count = policy.max_notebook_kb // policy.max_output_cell_kb + 1
    nb = _notebook(*(_code("x", [_stream(almost)]) for _ in range(count)))
    err = _refused(screen_egress, _nb_model(nb), path="a.ipynb", policy=policy)
    assert err.key == "max_notebook_kb"


def test_listing_passes_but_not_with_contents_and_extra_keys_dropped(policy):
    child = {**_text_model("a.py", "x"), "content": None, "format": None}
    listing = {**_text_model("", ""), "type": "directory", "format": "json", "content": [child],
               "smuggled": "data"}
    out = screen_egress(listing, path="", policy=policy)
    assert "smuggled" not in out and out["content"] == [child]
    listing["content"] = [_text_model("a.py", "secret")]
    assert _refused(screen_egress, listing, path="", policy=policy).key == "contents_model"


def test_other_content_refused_on_egress(policy):
    model = {**_text_model("a.bin", "x"), "format": "hex"}
    assert _refused(screen_egress, model, path="a.bin", policy=policy).key == "contents_model"


# -- ingress: plain files -------------------------------------------------------------------
def _save_text(policy, path, text):
    return screen_ingress({"type": "file", "format": "text", "content": text}, path=path,
                          policy=policy)


def _upload(policy, path, data: bytes):
    return screen_ingress({"type": "file", "format": "base64",
                           "content": base64.b64encode(data).decode()}, path=path, policy=policy)


def test_clean_code_upload_passes(policy):
    model = {"type": "file", "format": "text", "content": "import polars as pl\n"}
    assert screen_ingress(model, path="a.py", policy=policy) == model
    _upload(policy, "codes.csv", b"code,label\nE11,type 2 diabetes\n")


@pytest.mark.parametrize(("path", "data", "key", "words"), [
    ("data.parquet", b"PAR1", "upload_suffixes", "allowed"),
    ("big.txt", b"x" * (513 * 1024), "max_upload_kb", "upload limit"),
    ("data.csv", b"\xff\xfe\x00binary", "upload_suffixes", "not UTF-8"),
    ("nul.txt", b"a\x00b", "upload_suffixes", "NUL"),
])
def test_file_ingress_rules(policy, path, data, key, words):
    err = _refused(_upload, policy, path, data)
    assert (err.file, err.part, err.key) == (path, "the file", key)
    assert words in str(err)


def test_invalid_base64_and_chunks_refused(policy):
    bad = {"type": "file", "format": "base64", "content": "not base64!"}
    assert _refused(screen_ingress, bad, path="a.txt", policy=policy).key == "contents_model"
    chunk = {"type": "file", "format": "base64", "content": "eA==", "chunk": 1}
    assert _refused(screen_ingress, chunk, path="a.txt", policy=policy).key == "max_upload_kb"


@pytest.mark.parametrize("text", [
    f"{NATIONAL_ID},F,1960\n",                      # at the very start
    f"id,sex\n{NATIONAL_ID.lower()},F\n",           # lower case, line start
    f"{RESIDENT_ID.lower()}\n",
    f'ids = "header\\n{NATIONAL_ID}"\n',              # after an escaped line break
    '{"rows": ["\\u0041123456789"]}',                  # JSON escape: only decoded strings show it
])
def test_identifiers_in_files_refused(policy, text):
    err = _refused(_save_text, policy, "p.json", text)
    assert err.key == "identifiers"
    assert "TW_" in str(err)


# -- ingress: notebooks ---------------------------------------------------------------------
def _save_nb(policy, nb):
    return screen_ingress({"type": "notebook", "format": "json", "content": nb}, path="a.ipynb",
                          policy=policy)["content"]


def _text_attachment(text: str) -> dict:
    return {"notes.txt": {"text/plain": base64.b64encode(text.encode()).decode()}}


@pytest.mark.parametrize(("nb", "part"), [
    (_notebook(_code(), metadata={"author": {"patient": NATIONAL_ID}}), "notebook metadata"),
    (_notebook(_code(metadata={"tags": ["x", NATIONAL_ID]})), "cell 1 metadata"),
    (_notebook(_code(smuggle=NATIONAL_ID)), "cell 1 metadata"),  # keys nbformat does not know
    (_notebook({"cell_type": "markdown", "id": "m", "metadata": {}, "source": "![a](attachment:notes.txt)",
                "attachments": _text_attachment(f"list\n{NATIONAL_ID}\n")}),
     "cell 1 attachment 'notes.txt'"),
    (_notebook(_code(outputs=[_stream(f"people:\n{NATIONAL_ID}\n")])), "cell 1 output 1"),
    (_notebook(_code(outputs=[_stream(["people:\nA12345", "6789\n"])])), "cell 1 output 1"),
    (_notebook(_code(outputs=[{"output_type": "display_data", "metadata": {}, "data": {
        "application/json": {"rows": [f"{NATIONAL_ID}"]}}}])), "cell 1 output 1"),
    (_notebook(_code(outputs=[{"output_type": "error", "ename": "KeyError", "evalue": "x",
                               "traceback": ["Traceback", f"\x1b[31m{NATIONAL_ID}\x1b[0m"]}])),
     "cell 1 output 1"),
    (_notebook(_code(f"ids = ['{NATIONAL_ID.lower()}']")), "cell 1 source"),
    (_notebook(_code(), _code("call 0912-345-678 tel")), "cell 2 source"),
])
def test_identifiers_anywhere_in_a_notebook_refused(policy, nb, part):
    err = _refused(_save_nb, policy, nb)
    assert (err.file, err.part, err.key) == ("a.ipynb", part, "identifiers")
    assert "a.ipynb: " + part in str(err)


def test_outputs_refuse_only_strong_kinds(policy):
    weak = "hospital 0401180014"  # an institution code: expected in outputs, not in sources
    nb = _notebook(_code(outputs=[_stream(weak + "\n")]))
    assert _save_nb(policy, nb) == nb
    err = _refused(_save_nb, policy, _notebook(_code(f"h = '{weak}'")))
    assert "MEDICAL_INSTITUTION_CODE" in str(err)


def test_attachments_must_be_images_or_text(policy):
    cell = {"cell_type": "markdown", "id": "m", "metadata": {}, "source": "",
            "attachments": {"d.parquet": {"application/octet-stream": "UEFSMQ=="}}}
    err = _refused(_save_nb, policy, _notebook(cell))
    assert err.key == "upload_suffixes"


def test_clean_notebook_passes_unchanged_except_capping(policy):
    png = base64.b64encode(_png()).decode()
    image_output = {"output_type": "display_data", "metadata": {},
                    "data": {"image/png": png, "text/plain": ["<Figure>"]}}
    table = {"output_type": "execute_result", "execution_count": 2, "metadata": {},
             "data": {"text/html": "<table><tr><td>n</td><td>1204</td></tr></table>",
                      "text/plain": "n 1204"}}
    image_cell = {"cell_type": "markdown", "id": "m", "metadata": {}, "source": "![f](attachment:f.png)",
                  "attachments": {"f.png": {"image/png": png}}}
    nb = _notebook(image_cell, _code("plot()", [image_output]), _code("n", [table]),
                   metadata={"kernelspec": {"name": "python3", "display_name": "Python 3"}})
    before = copy.deepcopy(nb)
    assert _save_nb(policy, nb) == before
    nb["cells"].append(_code("print(x)", [_stream("z" * (policy.max_output_cell_kb * 1024 + 1))]))
    saved = _save_nb(policy, nb)
    assert saved["cells"][:3] == before["cells"]
    assert "max_output_cell_kb" in saved["cells"][3]["outputs"][0]["text"]


def test_notebook_over_total_cap_refused_on_ingress(policy):
    small = policy.model_copy(update={"max_notebook_kb": 1})
    err = _refused(screen_ingress, {"type": "notebook", "content": _notebook(_code("x" * 2048))},
                   path="a.ipynb", policy=small)
    assert err.key == "max_notebook_kb"


def test_malformed_notebook_refused(policy):
    err = _refused(_save_nb, policy, {"cells": "not a list"})
    assert err.key == "contents_model"
