"""Logging for the workflow's job scripts (``workflow/scripts/*.py``).

Each job logs to its own file (the rule's ``log:``). Warnings and errors also go to stderr,
which Snakemake shows beside the job, one line each: a font left out, a pattern matching no
file, a charset character dropped are seen where the run is watched, not only in a file. A job
that fails writes its traceback to its log file and one line to stderr naming the error (the
messages name the file, key or character at fault) and the log, instead of a bare traceback
beside an empty log file.
"""

from __future__ import annotations

import logging
import sys
import traceback
from types import TracebackType

FORMAT = "%(levelname)s %(name)s: %(message)s"


class _Brief(logging.Formatter):
    """One line per record, its traceback left to the log file."""

    def format(self, record: logging.LogRecord) -> str:
        return f"{record.levelname} {record.name}: {record.getMessage()}".replace("\n", " | ")


def start(log_path: str, fmt: str = FORMAT) -> logging.Logger:
    """Log INFO and above to ``log_path``, WARNING and above to stderr too, and report an uncaught
    exception as described above. Returns the job's logger."""
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    to_file = logging.FileHandler(log_path, encoding="utf-8")
    to_file.setFormatter(logging.Formatter(fmt))
    to_console = logging.StreamHandler(sys.stderr)
    to_console.setLevel(logging.WARNING)
    to_console.setFormatter(_Brief())
    # fontTools warns about harmless quirks of many installed fonts (a creation date read as a
    # Unix time, padding after the glyf table): the log file keeps them, the console does not.
    to_console.addFilter(lambda r: r.levelno >= logging.ERROR or not r.name.startswith("fontTools"))
    root.addHandler(to_file)
    root.addHandler(to_console)

    def report(kind: type[BaseException], error: BaseException, tb: TracebackType | None) -> None:
        if issubclass(kind, KeyboardInterrupt):
            sys.__excepthook__(kind, error, tb)
            return
        to_file.stream.write("".join(traceback.format_exception(kind, error, tb)))
        to_file.flush()
        message = str(error).replace("\n", "\n  ") or "(no message)"
        sys.stderr.write(f"error: {kind.__name__}: {message}\n  (traceback in {log_path})\n")

    sys.excepthook = report
    return logging.getLogger("job")
