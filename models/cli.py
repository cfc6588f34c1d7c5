"""Argument types shared by the command lines (`models.recognize`, `models.train`, ...): a bad value
is named by argparse, with the option, before anything runs."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


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
