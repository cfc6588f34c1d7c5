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
