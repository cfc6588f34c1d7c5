"""What the benchmarks check of their command lines before they measure anything: a benchmark
runs for minutes, and a typo in its config or an output it cannot write should stop it at once,
with one ``error:`` line naming the option and the file, not a traceback at the end of the run
(the counts' bounds are argparse's: `models.cli`'s argument types).

    from arguments import experiments_problem, output_file_problem, read_config
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from models.configcheck import read_workflow_config
from synth.atomic import output_folder_why, unwritable_why


def read_config(path: str | os.PathLike) -> tuple[dict[str, Any], dict[str, Any]]:
    """The workflow config at ``path`` (with the files it extends), checked as the workflow
    checks it (`models.configcheck.read_workflow_config`); a file that cannot be read or breaks
    the schema ends the command: ``error:`` and the message naming the file and key, exit
    status 1.

    Returns:
        The config as the files give it, and with the schema's defaults filled in.
    """
    try:
        return read_workflow_config([path])
    except ValueError as e:
        sys.exit(f"error: {e}")


def experiments_problem(
    config: Mapping[str, Any], names: Sequence[str], option: str, path: str | os.PathLike
) -> str | None:
    """Why ``names`` (given with ``option``) are not all experiments of the config read from
    ``path``, or None."""
    known = sorted(config.get("experiments") or {})
    unknown = [name for name in names if name not in known]
    if not unknown:
        return None
    return (
        f"{option} {' '.join(unknown)}: no such experiment in {path} "
        f"(it has {', '.join(known) or 'none'})"
    )


def output_file_problem(path: str | os.PathLike, option: str) -> str | None:
    """Why ``path`` (given with ``option``) cannot be the file a benchmark writes at its end, or
    None: a folder, or a place no file can be made (`synth.atomic.unwritable_why`, which makes
    no folder)."""
    path = Path(path)
    if path.is_dir():
        return f"{option} {path}: a folder, not a file"
    if why := unwritable_why(path.parent):
        return f"{option} {path}: cannot be written: {why}"
    return None


def output_folder_problem(path: str | os.PathLike, option: str) -> str | None:
    """Why ``path`` (given with ``option``) cannot be the folder a benchmark writes its files
    into, or None (`synth.atomic.output_folder_why`)."""
    why = output_folder_why(path)
    return None if why is None else f"{option} {path}: {why}"
