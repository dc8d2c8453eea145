"""Opening and creating files beneath a directory descriptor: no symlink is ever followed,
what was opened is judged by ``fstat``, copies stop at their size and time limits."""

from __future__ import annotations

import io
import os
import re
import time
from pathlib import Path

import pytest

from enclave.workspace.safe_files import (
    DeadlinePassed,
    NoSuchFile,
    UnsafePath,
    chown_tree,
    copy_bounded,
    create_file_beneath,
    make_dir_beneath,
    open_dir_beneath,
    open_directory,
    open_file_at,
    split_beneath,
)


@pytest.fixture
def root(tmp_path):
    """``tmp_path/root`` (the researcher-writable folder) opened as a descriptor."""
    folder = tmp_path / "root"
    folder.mkdir()
    fd = open_directory(folder)
    yield folder, fd
    os.close(fd)


def test_split_beneath_is_lexical():
    assert split_beneath("/s/p/a/b.csv", "/s/p/") == ("a", "b.csv")
    assert split_beneath("a/b.csv", "/s/p") == ("a", "b.csv")
    for bad, reason in [("/s/p/../x", "'..'"), ("/s/p/a/./b", "'.'"), ("/s/p//b", "empty"),
                        ("/s/px/b", "outside"), ("/s/p", "itself"), ("/s/p/a\x00b", "NUL")]:
        with pytest.raises(UnsafePath, match=re.escape(reason)):
            split_beneath(bad, "/s/p")


def test_walk_refuses_a_symlinked_folder_and_opens_a_real_one(root, tmp_path):
    folder, fd = root
    (folder / "real").mkdir()
    (folder / "real" / "t.csv").write_text("x\n")
    (folder / "link").symlink_to(tmp_path, target_is_directory=True)
    with pytest.raises(UnsafePath, match="a symlink at component 'link'"):
        open_dir_beneath(fd, ["link"], label="link/t.csv")
    with pytest.raises(NoSuchFile):
        open_dir_beneath(fd, ["absent"], label="absent/t.csv")
    with pytest.raises(UnsafePath, match=re.escape("component 't.csv' is not a folder")):
        open_dir_beneath(fd, ["real", "t.csv"], label="real/t.csv/x")
    sub = open_dir_beneath(fd, ["real"], label="real/t.csv")
    try:
        file_fd, info = open_file_at(sub, "t.csv", label="real/t.csv", max_bytes=10, owner=os.getuid())
        os.close(file_fd)
        assert info.st_size == 2
        with pytest.raises(UnsafePath, match="bytes; at most 1 bytes"):
            open_file_at(sub, "t.csv", label="real/t.csv", max_bytes=1)
    finally:
        os.close(sub)


def test_copy_stops_at_the_size_limit_and_the_deadline(tmp_path):
    path = tmp_path / "big"
    path.write_bytes(b"x" * 3000)
    fd = os.open(path, os.O_RDONLY)
    try:
        with pytest.raises(UnsafePath, match="grew beyond 1000 bytes"):
            copy_bounded(fd, io.BytesIO(), max_bytes=1000, label="big")
        os.lseek(fd, 0, os.SEEK_SET)
        out = io.BytesIO()
        with pytest.raises(DeadlinePassed):
            copy_bounded(fd, out, max_bytes=10_000, label="big", deadline=time.monotonic() - 1)
        assert out.getvalue() == b""
        os.lseek(fd, 0, os.SEEK_SET)
        assert copy_bounded(fd, out, max_bytes=3000, label="big") == 3000
    finally:
        os.close(fd)


def test_create_never_writes_through_a_planted_symlink(root, tmp_path):
    folder, fd = root
    target = tmp_path / "cron-job"
    (folder / "01-intro.ipynb").symlink_to(target)  # dangling: exists() would say False
    with pytest.raises(UnsafePath, match="exists already"):
        create_file_beneath(fd, "01-intro.ipynb")
    assert not target.exists()
    new = create_file_beneath(fd, "02-new.ipynb", mode=0o600)
    os.write(new, b"{}")
    os.close(new)
    assert (folder / "02-new.ipynb").read_bytes() == b"{}"


def test_make_dir_refuses_a_symlink_and_keeps_an_existing_folder(root, tmp_path):
    folder, fd = root
    (folder / "outputs").symlink_to(tmp_path, target_is_directory=True)
    with pytest.raises(UnsafePath, match="a symlink at component 'outputs'"):
        make_dir_beneath(fd, "outputs")
    for _ in range(2):  # made, then found
        os.close(make_dir_beneath(fd, "lab"))
    assert (folder / "lab").is_dir()


def test_chown_tree_follows_no_symlink_and_skips_foreign_hard_links(root, tmp_path):
    folder, fd = root
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "shadow").write_text("root's\n")
    (folder / "sub").mkdir()
    (folder / "sub" / "mine.txt").write_text("x\n")
    (folder / "extract").symlink_to(outside, target_is_directory=True)
    (folder / "sub" / "file-link").symlink_to(outside / "shadow")
    os.link(outside / "shadow", folder / "hard")
    skipped = chown_tree(fd, 12345, 12345)
    assert skipped == ["./hard"]
    for path in (folder, folder / "sub", folder / "sub" / "mine.txt", folder / "extract",
                 folder / "sub" / "file-link"):
        assert os.lstat(path).st_uid == 12345, path
    for path in (outside, outside / "shadow"):
        assert os.lstat(path).st_uid == os.getuid(), path
    assert Path(folder / "hard").stat().st_uid == os.getuid()
