"""Progress bars for long loops (STYLE.md): a tqdm bar on standard error when it is a terminal,
nothing otherwise (a Snakemake job's log, a pipe, a file), where the logs and the structured
files (history.csv, metrics.json) carry the numbers."""

from __future__ import annotations

import sys
from typing import Any


def progress_bar(
    total: int | None, unit: str, initial: int = 0, enabled: bool = True, desc: str | None = None
) -> Any:
    """A tqdm bar of ``total`` ``unit`` (None: a count and a rate) from ``initial``, or None when
    not ``enabled`` or standard error is no terminal; the caller updates and closes it."""
    if not enabled or not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, unit=unit, desc=desc, dynamic_ncols=True)
