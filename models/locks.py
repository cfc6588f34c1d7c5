"""The ``flock`` locks this process holds for itself: an output folder's (`models.train`), a GPU's
(`models.devices`).

A forked child (a DataLoader worker) shares each ``flock`` of its parent, and outlives a SIGKILL
of it by seconds (a worker polls for its parent): the lock stayed held, and a retry at once was
refused, told to stop a dead process. Each forked child closes its copies of the descriptors
registered here as it starts, so a lock is its holder's alone and goes when the holder goes.
"""

from __future__ import annotations

import os
from contextlib import suppress

_HELD: set[int] = set()


def hold(fd: int) -> None:
    """Keep ``fd``, a descriptor this process holds a ``flock`` on, from its forked children."""
    _HELD.add(fd)


def release(fd: int) -> None:
    """Forget ``fd`` (before closing it, which releases its lock)."""
    _HELD.discard(fd)


def _close_in_child() -> None:
    for fd in _HELD:
        with suppress(OSError):  # closed already: nothing of the lock left in this child
            os.close(fd)
    _HELD.clear()


if hasattr(os, "register_at_fork"):  # not on Windows, which has no fork (nor flock)
    os.register_at_fork(after_in_child=_close_in_child)
