"""Logging for the workflow's job scripts (``workflow/scripts/*.py``) and its own process.

Each job logs to its own file (the rule's ``log:``). Warnings and errors also go to stderr,
which Snakemake shows beside the job, one line each: a face left out, a charset character
dropped are seen where the run is watched, not only in a file. A job that fails writes its
traceback to its log file and one line to stderr naming the error (the messages name the file,
key or character at fault) and the log, instead of a bare traceback beside an empty log file;
one stopped by Ctrl-C writes one line, where every running job would print a traceback.
What resolving the font patterns skipped (a pattern matching no file, a file that is not a font)
and what a charset's own text left out or repeated print once, from the workflow's own process
when it starts (`console`); the jobs, which resolve the patterns and build the charsets again,
keep it in their files.
"""

from __future__ import annotations

import logging
import sys
import traceback
from types import TracebackType

FORMAT = "%(levelname)s %(name)s: %(message)s"
# What a job's log ends with when Ctrl-C (SIGINT) stopped it; the console gets one line.
INTERRUPTED = (
    "interrupted (Ctrl-C): the next run does this job again; a training resumes from its last "
    "checkpoint"
)
# Loggers whose warnings a job keeps in its log file only (see `start`).
OFF_CONSOLE = ("fontTools", "synth.fonts.files", "synth.charset")


class _Brief(logging.Formatter):
    """One line per record, its traceback left to the log file."""

    def format(self, record: logging.LogRecord) -> str:
        return f"{record.levelname} {record.name}: {record.getMessage()}".replace("\n", " | ")


def console(name: str = "synth") -> None:
    """Show the WARNING records of logger ``name`` on stderr, one line each, as a job's console
    shows them: for the workflow's own process, where the Snakefile resolves the font patterns
    (a pattern matching nothing, a file that is not a font) once per run rather than once per job.
    Calling it again adds nothing."""
    logger = logging.getLogger(name)
    if any(getattr(h, "synthocr_console", False) for h in logger.handlers):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setLevel(logging.WARNING)
    handler.setFormatter(_Brief())
    handler.synthocr_console = True  # type: ignore[attr-defined]
    logger.addHandler(handler)
    logger.propagate = False


def in_job() -> bool:
    """Whether this process is a workflow job logging to its file (`start`)."""
    return any(getattr(h, "synthocr_job", False) for h in logging.getLogger().handlers)


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
    # Unix time, padding after the glyf table); what resolving the font patterns skipped and a
    # charset's own warnings were printed once when the workflow started (`console`). The log
    # file keeps them, the console does not.
    to_console.addFilter(lambda r: r.levelno >= logging.ERROR or not r.name.startswith(OFF_CONSOLE))
    to_file.synthocr_job = True  # type: ignore[attr-defined]
    root.addHandler(to_file)
    root.addHandler(to_console)

    def report(kind: type[BaseException], error: BaseException, tb: TracebackType | None) -> None:
        to_file.stream.write("".join(traceback.format_exception(kind, error, tb)))
        if issubclass(kind, KeyboardInterrupt):  # Ctrl-C: every running job gets it at once
            to_file.stream.write(f"{INTERRUPTED}\n")
            to_file.flush()
            sys.stderr.write(f"interrupted: {log_path}\n")
            return
        to_file.flush()
        message = str(error).replace("\n", "\n  ") or "(no message)"
        sys.stderr.write(f"error: {kind.__name__}: {message}\n  (traceback in {log_path})\n")

    sys.excepthook = report
    return logging.getLogger("job")
