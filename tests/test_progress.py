"""Progress bars (models.progress): on a terminal, with the console's log lines above them; none
in a workflow job, whose console Snakemake shares among the jobs it runs at once."""

from __future__ import annotations

import logging
import re
import subprocess
import sys
import textwrap
import threading
import time

from conftest import Terminal

from models.progress import progress_bar


def test_log_records_print_whole_above_the_bar(monkeypatch):
    # A record logged while the bar showed ended the bar's line ("| 1/2 [...]WARNING ..."),
    # leaving a copy of the bar above the next one.
    stderr = Terminal()
    monkeypatch.setattr(sys, "stderr", stderr)
    console = logging.StreamHandler(sys.stderr)
    console.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", [*root.handlers, console])
    bar = progress_bar(2, " images")
    bar.update(1)
    logging.getLogger("models.images").warning("scan.jpg: its EXIF orientation cannot be read")
    bar.update(1)
    bar.close()
    lines = re.split(r"[\r\n]+", stderr.getvalue())
    assert "WARNING models.images: scan.jpg: its EXIF orientation cannot be read" in lines, lines
    assert re.search(r"100%\|.*\| 2/2 \[", stderr.getvalue())
    assert console in root.handlers  # the console's handler is back once the bar is closed
    bar.close()  # closing twice does nothing


def test_a_workflow_job_shows_no_bar_on_the_console_it_shares(tmp_path):
    # Snakemake's jobs inherit its standard error, a terminal when the run is watched: each
    # evaluation, Tesseract run and training drew its bar over the others and Snakemake's lines.
    script = textwrap.dedent(
        f"""
        import sys
        class Terminal:
            def isatty(self):
                return True
            def write(self, text):
                sys.__stdout__.write(text)
            def flush(self):
                pass
        sys.stderr = Terminal()
        from models.progress import progress_bar
        from synth import joblog
        print(not progress_bar(2, " images").disable, flush=True)
        joblog.start({str(tmp_path / "job.log")!r})
        print(not progress_bar(2, " images").disable)
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert [line for line in proc.stdout.splitlines() if line in ("True", "False")] == [
        "True",
        "False",
    ], proc.stdout


def test_a_bar_starts_no_thread_and_redraws_at_an_update_after_a_slow_step(monkeypatch):
    # tqdm's monitor thread, started by any bar (a disabled one too), stayed for the rest of the
    # process, and models.images takes a TIFF decoder's stderr only while no other thread runs.
    # Without it a bar redraws at its updates alone: each one may (at most every 0.1 s), not
    # every so many fitted to a fast start, which left a slowed bar stale.
    stderr = Terminal()
    monkeypatch.setattr(sys, "stderr", stderr)
    before = {t.ident for t in threading.enumerate()}
    with progress_bar(None, " images", enabled=False):
        pass
    bar = progress_bar(None, " steps")
    start = time.monotonic()
    while time.monotonic() - start < 0.35:  # a fast start, redrawn on the way
        bar.update(1)
    time.sleep(0.15)
    bar.update(1)  # then a slow step: drawn at once
    assert re.split(r"[\r\n]+", stderr.getvalue().rstrip())[-1].startswith(f"{bar.n} steps ")
    bar.close()
    assert {t.ident for t in threading.enumerate()} <= before
