"""Progress bars for long loops (STYLE.md): a tqdm bar on standard error when it is a terminal,
nothing otherwise (a pipe, a file) or in a workflow job (`synth.joblog.start`: Snakemake runs
several on one console, and each job's bar would write over the others' and Snakemake's lines),
where the logs and the structured files (history.csv, metrics.json) carry the numbers. While a
bar shows, the console's log records, and lines given to `write_line`, print above it. tqdm's
monitor thread is not started (``tqdm.monitor_interval = 0``; a bar then redraws at its next
update alone): a bar, even a disabled one, would leave that thread running for the rest of the
process, and `models.images` reads a TIFF decoder's messages off stderr only while no other
Python thread runs."""

from __future__ import annotations

import sys
from typing import Any, TextIO

from synth.joblog import in_job


def progress_bar(
    total: int | None, unit: str, initial: int = 0, enabled: bool = True, desc: str | None = None
) -> Any:
    """A tqdm bar of ``total`` ``unit`` (None: a count and a rate) from ``initial``; a disabled
    one, which draws nothing, when not ``enabled``, standard error is no terminal or the process
    is a workflow job. The caller updates it and closes it (or uses it in a ``with``). Until it
    is closed, the root logger's console handlers print above it (a record printed after the
    bar's text, on its line, left a stale copy of the bar)."""
    from tqdm import tqdm
    from tqdm.contrib.logging import logging_redirect_tqdm

    tqdm.monitor_interval = 0  # no monitor thread (see the module's docstring)
    if not enabled or not sys.stderr.isatty() or in_job():
        return tqdm(total=total, initial=initial, unit=unit, desc=desc, disable=True)

    class Bar(tqdm):
        def close(self) -> None:
            try:
                super().close()
            finally:
                redirect, self.redirect = getattr(self, "redirect", None), None
                if redirect is not None:
                    redirect.__exit__(None, None, None)

    # miniters=1: each update may redraw (at most every 0.1 s), where tqdm's own count of
    # updates between redraws, fitted to a fast start, would leave a slowed bar stale for long
    # without the monitor thread that resets it
    bar = Bar(total=total, initial=initial, unit=unit, desc=desc, dynamic_ncols=True, miniters=1)
    bar.redirect = logging_redirect_tqdm(tqdm_class=tqdm)
    bar.redirect.__enter__()
    return bar


def write_line(line: str, file: TextIO) -> None:
    """Print ``line`` to ``file``, above the progress bar when one shows there."""
    from tqdm import tqdm

    tqdm.write(line, file=file)
    file.flush()
