"""Argument types shared by the command lines (`models.recognize`, `models.train`, ...): a bad value
is named by argparse, with the option, before anything runs."""

from __future__ import annotations

import argparse
import functools
import math
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any


def positive_int(text: str) -> int:
    """An integer >= 1 (batch sizes, counts)."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def non_negative_int(text: str) -> int:
    """An integer >= 0 (thread counts and limits, where 0 means the default or none)."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def at_most(value: int, limit: int, why: str) -> int:
    """``value`` of an argument type, refused above ``limit`` (``why`` says what bounds it)."""
    if value > limit:
        raise argparse.ArgumentTypeError(f"must be at most {limit} ({why}), got {value}")
    return value


def _at_most_cpus(value: int) -> int:
    return at_most(value, os.cpu_count() or 1, "this machine's CPUs")


def thread_count(text: str) -> int:
    """A thread count: 0 (the default: one per core) up to the machine's CPUs. More only slows
    the work down, and tens of thousands crash the OpenMP runtime (a segmentation fault, no word
    of why)."""
    return _at_most_cpus(non_negative_int(text))


def process_count(text: str) -> int:
    """A count of worker processes: 1 up to the machine's CPUs."""
    return _at_most_cpus(positive_int(text))


def positive_scale(text: str) -> float:
    """A resize factor above 0 and at most 16 (the config's ``tesseract.<task>.scale``)."""
    value = float(text)
    if not 0 < value <= 16:  # NaN fails too
        raise argparse.ArgumentTypeError(f"must be above 0 and at most 16, got {text}")
    return value


def positive_seconds(text: str) -> float:
    """A length of time in seconds, above 0 (and finite)."""
    value = float(text)
    if not 0 < value < math.inf:  # NaN fails too
        raise argparse.ArgumentTypeError(f"must be above 0 seconds, got {text}")
    return value


def page_segmentation_mode(text: str) -> int:
    """A Tesseract page segmentation mode, 0 to 13 (the schema's bounds of
    ``tesseract.<task>.psm``; Tesseract refuses others)."""
    return at_most(non_negative_int(text), 13, "Tesseract's modes")


def command_name(module: str) -> str:
    """How a usage line names the command: the installed script's name (``synthocr-export``)
    when run as one, else ``python -m {module}``."""
    name = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else ""
    return name if name.startswith("synthocr-") else f"python -m {module}"


def print_path(path: str | os.PathLike) -> None:
    """Print ``path``, a command's output, as its own bytes: a Linux name may be any bytes,
    which Python holds as surrogates, and a UTF-8 ``sys.stdout`` refuses those."""
    try:
        print(path)
    except UnicodeEncodeError:
        sys.stdout.flush()
        sys.stdout.buffer.write(os.fsencode(path) + b"\n")
        sys.stdout.buffer.flush()


INTERRUPTED = 130  # the shell's exit status for a command stopped by SIGINT (128 + 2)


def stops_on_interrupt(
    module: str, kept: str = "every file it wrote is whole (each is written atomically)"
) -> Callable[[Callable[..., int | None]], Callable[..., int]]:
    """A command's ``main`` that answers Ctrl-C with one line, saying what is kept, and exit
    status 130, rather than a traceback."""

    def wrap(main: Callable[..., int | None]) -> Callable[..., int]:
        @functools.wraps(main)
        def wrapped(*args: Any, **kwargs: Any) -> int:
            try:
                return main(*args, **kwargs) or 0
            except KeyboardInterrupt:
                print(f"{command_name(module)}: interrupted; {kept}", file=sys.stderr)
                return INTERRUPTED

        return wrapped

    return wrap


def is_command_process(
    argv: Sequence[str] | None = None, orig_argv: Sequence[str] | None = None
) -> bool:
    """Whether this process runs a ``models.*`` command: an installed ``synthocr-*`` script,
    or ``python -m models.<name>`` (Python sets ``sys.argv[0]`` to ``-m`` while it finds the
    module, when it imports ``models``; ``sys.orig_argv`` names the module), not another
    program that imports ``models``."""
    argv = sys.argv if argv is None else argv
    if not argv:
        return False
    if Path(argv[0]).name.startswith("synthocr-"):
        return True
    return argv[0] == "-m" and run_module(orig_argv).startswith("models.")


def run_module(orig_argv: Sequence[str] | None = None) -> str:
    """The module ``python -m`` runs in this process (``sys.orig_argv``, the interpreter's own
    command line), or ``""``."""
    orig_argv = sys.orig_argv if orig_argv is None else orig_argv
    for i, arg in enumerate(orig_argv[1:], start=1):
        if arg.startswith("-m"):  # the interpreter's options come before it (-X, -u, ...)
            return arg[2:] or (orig_argv[i + 1] if i + 1 < len(orig_argv) else "")
    return ""


def interrupted_while_starting(kind: type[BaseException], value: BaseException, tb: Any) -> None:
    """`sys.excepthook` of a command's process (`quiet_interrupts_while_starting`): Ctrl-C before
    its ``main`` runs, while it imports (torch takes a second or more), is one line, not a
    traceback; Python then ends the process by SIGINT, which the shell shows as status 130.
    Any other exception goes to the hook it replaced."""
    if not issubclass(kind, KeyboardInterrupt):
        _previous_excepthook(kind, value, tb)
        return
    module = run_module()
    print(f"{command_name(module)}: interrupted while starting; it wrote nothing", file=sys.stderr)


_previous_excepthook = sys.excepthook


def quiet_interrupts_while_starting() -> None:
    """Answer Ctrl-C that reaches Python's top level with one line (`interrupted_while_starting`):
    ``models/__init__.py`` calls it in a command's process (`is_command_process`), before the
    command's imports, so that no moment of a command answers Ctrl-C with a traceback (its
    ``main``, once running, answers it itself: `stops_on_interrupt`)."""
    global _previous_excepthook
    if sys.excepthook is not interrupted_while_starting:
        _previous_excepthook = sys.excepthook
        sys.excepthook = interrupted_while_starting


TASK_CONFIG_HELP = (
    "a workflow config (configs/config.yaml, or one that extends it): with --decoder grammar, "
    "keep only the texts its settings of the model's task draw (expr: its operand counts, "
    "digits and one pair of parentheses), as the workflow's evaluation does"
)


def read_task_settings(config_path: str, task: str) -> dict[str, Any]:
    """The settings of ``tasks.<task>`` the ``grammar`` decoder reads (``--task-config``;
    `synth.text.GRAMMAR_SETTINGS`) in the config file at ``config_path``: read, checked against
    the workflow's schema and given its defaults (`synth.schema.check_schema`, as the workflow and
    ``python -m models.train --config`` check it), and the task's settings past the schema
    checked as `models.configcheck.task_problems` checks them, so that a misspelt key or
    contradictory settings are refused rather than left for the default grammar.

    Raises:
        ValueError: The file cannot be read, breaks the schema or the task's checks (every
            problem, naming the key) or has no ``tasks.<task>``; the message names the file.
    """
    from models.configcheck import task_problems
    from synth.schema import check_schema, config_with_origins, problems_error, with_config_file
    from synth.text import grammar_settings

    try:
        given, origins = config_with_origins([config_path])
        checked = check_schema(given, origins=origins)
        # The schema's problems, then the task's own past it (repeated operators, a charset
        # that cannot hold them), as the workflow and `models.configcheck` name them: the
        # grammar is then the one the workflow's evaluation of the task would read.
        problems = [*checked.problems, *task_problems(checked, task, origins)]
        if problems:
            raise problems_error(problems)
    except ValueError as e:
        raise ValueError(with_config_file(str(e), [config_path])) from None
    # The defaults fill in every task: a config that sets nothing of the model's is not its own.
    if not isinstance((given.get("tasks") or {}).get(task), dict):
        raise ValueError(f"{config_path}: no tasks.{task} settings (the model's task)")
    return grammar_settings(task, checked.config["tasks"][task])  # as the evaluation gets


def task_settings_warnings(
    config_path: str, task: str, settings: Mapping[str, Any], charset: Sequence[str]
) -> list[str]:
    """What a ``--task-config``'s settings ask that the model cannot read (one line each): an
    operator of ``tasks.expr.operators`` outside the model's charset. The grammar holds
    readings to what the config draws, and the model never reads that operator, so the
    readings are as without it; but the settings are then not those the model was trained on."""
    if task != "expr":
        return []
    missing = [op for op in str(settings.get("operators", "")) if op not in charset]
    if not missing:
        return []
    return [
        f"{config_path}: tasks.{task}.operators {''.join(missing)!r}: not in the model's "
        "charset, so no reading holds it (is this the config the model was trained with?)"
    ]
