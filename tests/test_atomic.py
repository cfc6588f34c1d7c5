"""Atomic writes: all or nothing, with the permissions a plain open() gives."""

from __future__ import annotations

import os

import pytest

from synth.atomic import atomic_write, write_text_atomic


def test_written_file_has_umask_permissions(tmp_path):
    path = tmp_path / "sub" / "table.csv"
    write_text_atomic(path, "a,b\n1,2\n")
    mask = os.umask(0)
    os.umask(mask)
    assert path.read_text() == "a,b\n1,2\n"
    assert (path.stat().st_mode & 0o777) == (0o666 & ~mask)


def test_failure_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "model.pt"
    path.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="disk full"), atomic_write(path, "wb") as f:
        f.write(b"half of the new")
        raise RuntimeError("disk full")
    assert path.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]


def test_a_killed_writes_temporary_is_removed_by_the_next_write(tmp_path):
    path = tmp_path / "train-000000.tar"
    left = [
        tmp_path / ".train-000000.tar.ab12cd34.tmp",
        tmp_path / ".train-000000.tar.x_9y8z7w.tmp",
    ]
    for p in left:
        p.write_bytes(b"half a shard")
    # other files' temporaries: not ours to remove
    others = [
        tmp_path / ".val-000000.tar.ab12cd34.tmp",
        tmp_path / ".train-000000.tar.gz.ab12cd34.tmp",
    ]
    for p in others:
        p.write_bytes(b"x")
    write_text_atomic(path, "whole")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [p.name for p in others] + [path.name]
    )


def test_unwritable_why_probes_the_nearest_folder_and_leaves_nothing(tmp_path):
    from synth.atomic import unwritable_why

    assert unwritable_why(tmp_path / "new" / "deeper") is None
    assert not (tmp_path / "new").exists() and list(tmp_path.iterdir()) == []
    (tmp_path / "file").write_text("x")
    assert unwritable_why(tmp_path / "file" / "out") == f"{tmp_path / 'file'} is not a folder"
    # a file system that refuses a new file (sysfs, even to root; a read-only mount)
    why = unwritable_why("/sys/synthocr-out")
    assert why is not None and why.startswith("no file can be written in /sys: "), why
