"""Atomic file writes: a reader, or a rerun after a kill, sees the old file or the new one.

Every artefact of the workflow (charsets, shards, checkpoints, metrics, tables, plots) is written
through `atomic_write`: a temporary file in the same folder, flushed (and optionally fsynced), given
the permissions a plain ``open`` would (``mkstemp`` makes it 0600), then renamed into place. The
next write of the same file removes the temporaries a kill left behind.

Beside them, the file helpers the writers and readers share: `sha256_file` (the manifests' and
the fonts' digests) and `missing_why` (how an error says why a path is no file to read).
"""

from __future__ import annotations

import glob
import hashlib
import os
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def publish(tmp: str | os.PathLike, path: str | os.PathLike) -> None:
    """Give a finished temporary file the usual permissions and rename it onto ``path``."""
    os.chmod(tmp, 0o666 & ~_umask())
    os.replace(tmp, path)


def remove_stale_temporaries(path: str | os.PathLike) -> None:
    """Delete the temporaries (``.{name}.*.tmp``) of earlier writes of ``path`` that were killed
    before their rename: each output has one writer at a time, so they are garbage, each as
    large as a checkpoint or a shard."""
    path = Path(path)
    # mkstemp's names: the prefix, 8 random characters, the suffix (not another file's: a.tar.gz)
    for stale in path.parent.glob(f".{glob.escape(path.name)}.????????.tmp"):
        stale.unlink(missing_ok=True)


@contextmanager
def atomic_write(
    path: str | os.PathLike,
    mode: str = "wb",
    *,
    encoding: str | None = None,
    newline: str | None = None,
    fsync: bool = False,
) -> Iterator[IO[Any]]:
    """Open a temporary file beside ``path``; on a clean exit rename it onto ``path``.

    Args:
        path: The file to write; its folder is created.
        mode: ``"wb"`` or ``"w"``.
        encoding: Text encoding for mode ``"w"`` (UTF-8 when not given).
        newline: As for `open` (``""`` for CSV writers).
        fsync: Also fsync before the rename (checkpoints: survive a power cut, not only a kill).

    Yields:
        The open temporary file. On an exception it is removed and ``path`` is left untouched.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_write mode must be 'w' or 'wb', not {mode!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        if mode == "w":
            f = os.fdopen(fd, "w", encoding=encoding or "utf-8", newline=newline)
        else:
            f = os.fdopen(fd, "wb")
        with f:
            yield f
            f.flush()
            if fsync:
                os.fsync(f.fileno())
        publish(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write bytes to ``path`` atomically."""
    with atomic_write(path, "wb") as f:
        f.write(data)


def write_text_atomic(path: str | os.PathLike, text: str, *, newline: str | None = "") -> None:
    """Write UTF-8 text to ``path`` atomically (newlines written as given by default)."""
    with atomic_write(path, "w", newline=newline) as f:
        f.write(text)


def sha256_file(path: str | os.PathLike) -> str:
    """The sha256 of a file's bytes, read 1 MiB at a time."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def unwritable_why(folder: str | os.PathLike) -> str | None:
    """Why no file can be written in ``folder`` (made first where it does not exist), or None:
    the nearest folder above it that exists is a file, or refuses a new file (one is made and
    removed to find out: permissions, a read-only or special file system). Nothing is left
    behind, and no folder is made."""
    above = Path(folder)
    while not above.exists() and above != above.parent:
        above = above.parent
    if not above.is_dir():
        return f"{above} is not a folder"
    try:
        with tempfile.NamedTemporaryFile(dir=above, prefix=".synthocr-probe-"):
            pass
    except OSError as e:
        return f"no file can be written in {above}: {e.strerror}"
    return None


def output_folder_why(folder: str | os.PathLike, files: Sequence[str] = ()) -> str | None:
    """Why a command cannot write ``files`` (names) into ``folder``, or None, found before any
    work: a file where the folder goes, a folder where one of the files goes, or a place no file
    can be made (`unwritable_why`). Nothing is made or left behind."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        into = f" ({' and '.join(files)} are written into it)" if files else ""
        return f"a file, not a folder{into}"
    for name in files:
        if (folder / name).is_dir():
            return f"{folder / name} is a folder, where the file {name} is written"
    if why := unwritable_why(folder):
        return f"cannot be written: {why}"
    return None


def missing_why(path: str | os.PathLike) -> str:
    """How a message says that ``path``, which is no regular file and no folder, cannot be read
    as a file: it does not exist, or it is something else (a FIFO would block the reader, a
    device would be read without end)."""
    if not os.path.lexists(path):
        return "does not exist"
    if not os.path.exists(path):
        return "is a broken link"
    return "is not a regular file (a pipe, a device or a socket)"
