"""Argument types shared by the command lines (`models.recognize`, `models.train`, ...): a bad value
is named by argparse, with the option, before anything runs."""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Callable
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


def command_name(module: str) -> str:
    """How a usage line names the command: the installed script's name (``synthocr-export``)
    when run as one, else ``python -m {module}``."""
    name = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else ""
    return name if name.startswith("synthocr-") else f"python -m {module}"


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


TASK_CONFIG_HELP = (
    "a workflow config (configs/config.yaml, or one that extends it): with --decoder grammar, "
    "keep only the texts its settings of the model's task draw (expr: its operand counts, "
    "digits and one pair of parentheses), as the workflow's evaluation does"
)


def read_task_settings(config_path: str, task: str) -> dict[str, Any]:
    """``tasks.<task>`` of the config file at ``config_path``, for the ``grammar`` decoder
    (``--task-config``).

    Raises:
        ValueError: The file cannot be read or has no ``tasks.<task>`` (naming both).
    """
    from synth.schema import load_config_file

    config = load_config_file(config_path)
    settings = (config.get("tasks") or {}).get(task)
    if not isinstance(settings, dict):
        raise ValueError(f"{config_path}: no tasks.{task} settings (the model's task)")
    return settings
