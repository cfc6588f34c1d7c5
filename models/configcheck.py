"""A workflow config checked as the workflow checks it when it starts: the schema, then the checks
past it (a model's name and arguments, a CTC output too short for its longest label, a split's
settings no spec accepts), every problem at once, each naming its key and the file that set it.

    python -m models.configcheck FILE...

checks the FILEs as ``snakemake --configfile FILE...`` reads them (each with the files it
extends, each laid over the ones before it), so that a typo is named before a run starts; the
Makefile runs it on ``CONFIG``. ``--each`` checks every FILE alone instead. A file that is not
YAML at all is named with its line and column (Snakemake's own message for an unreadable
``--configfile`` names no file).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from models.cli import stops_on_interrupt
from models.registry import experiment_problems
from synth.charset import nfkc
from synth.schema import (
    SCHEMA_PATH,
    SchemaCheck,
    check_schema,
    config_with_origins,
    from_files,
    named_with_file,
    problems_error,
)
from synth.specs import split_config, task_spec


def workflow_config_problems(
    config: Mapping[str, Any],
    origins: Mapping[str, Any] | None = None,
    schema_path: str | os.PathLike = SCHEMA_PATH,
) -> tuple[dict[str, Any], list[str]]:
    """The config with the schema's defaults filled in, and every problem of it, one line each:
    the schema's, then those of the checks past it, run on every experiment and task the schema
    finds nothing wrong with (an experiment's train or eval block left out starts empty, so every
    experiment has them in full). ``origins`` as `synth.schema.config_with_origins` gives them."""
    checked = check_schema(config, schema_path, origins)
    problems = list(checked.problems)
    filled = checked.config
    experiments = filled.get("experiments")
    for name in sorted(experiments if isinstance(experiments, dict) else (), key=str):
        if name == "tesseract":  # the reports' rows of Tesseract, one per task, have that name
            problems.append(
                "experiments.tesseract: the reports name Tesseract's rows so; call it another "
                "name" + from_files(origins, ["experiments", "tesseract"])
            )
        else:
            problems += experiment_problems(checked, name, origins)
    tasks = filled.get("tasks")
    for task in tasks if isinstance(tasks, dict) else ():
        problems += [p for p in task_problems(checked, task, origins) if p not in problems]
    return filled, problems


def task_problems(
    checked: SchemaCheck, task: str, origins: Mapping[str, Any] | None = None
) -> list[str]:
    """The problems of ``tasks.<task>`` past the schema, one line each, naming key and file: its
    charset settings that contradict the rest (`_charset_problems`), then its splits' settings
    (each split's degrade merged over the task's) that no spec accepts: an unknown degradation,
    repeated expr operators, a charset space asked of a task other than line. A task's own
    setting fails every split alike: said once. None when the schema already finds the task
    at fault (its problems are the schema's)."""
    if not checked.holds("tasks", task):
        return []
    task_cfg = checked.config["tasks"][task]
    problems = [named_with_file(p, origins) for p in _charset_problems(task, task_cfg)]
    for split in task_cfg["splits"]:
        try:
            task_spec(task, split_config(task, task_cfg, split))
        except ValueError as e:
            problem = named_with_file(str(e), origins)
            if problem not in problems:
                problems.append(problem)
    return problems


def _charset_problems(task: str, task_cfg: Mapping[str, Any]) -> list[str]:
    """A task's charset settings that contradict the rest of its settings: the space asked of
    a task that draws no line of the user's text, a ``limit`` on a source that has nothing to
    limit."""
    charset, where = task_cfg["charset"], f"tasks.{task}.charset"
    problems = []
    # (another task's space is refused by its spec, below: only the line task draws spaces)
    if (
        task == "line"
        and charset.get("space")
        and not (task_cfg.get("corpus") and task_cfg.get("corpus_fraction"))
    ):
        problems.append(
            f"{where}.space: only lines of your own text hold spaces (tasks.{task}.corpus, with "
            "corpus_fraction above 0), and this config draws none: its models would have a "
            "class they never see"
        )
    for key in ("limit", "most_frequent"):
        if charset.get(key) and charset.get("source") == "chars":
            problems.append(
                f"{where}.{key}: {charset[key]} shrinks the source, and source chars has none "
                f"(its characters are all `chars`); set {key}: 0"
            )
    # An operator the charset cannot hold: known now when the charset is its `chars` alone (a
    # charset file is read when the workflow starts; the shard job checks the charset built).
    chars = str(charset.get("chars") or "")
    # (chars that give no character at all are the workflow's own error, when it starts)
    if (
        task == "expr"
        and charset.get("source") == "chars"
        and chars.strip()
        and not charset.get("files")
    ):
        held = nfkc(chars)  # as the charset is built: a full-width ＋ holds +
        missing = "".join(op for op in str(task_cfg.get("operators", "")) if op not in held)
        if missing:
            problems.append(
                f"tasks.{task}.operators: {missing!r} is not in {where}.chars ({chars!r}): no "
                f"expression could draw it; add it to {where}.chars"
            )
    return problems


@stops_on_interrupt("models.configcheck", "it writes nothing")
def main(argv: Sequence[str] | None = None) -> int:
    """``python -m models.configcheck [--each] FILE...``: returns the exit status, 0 (after a
    line ``FILE...: valid (N experiments)`` on stdout) or 1 after
    printing ``error: FILE: why`` for a file that cannot be read, or the config's problems under
    ``FILE...: invalid config (N problems)`` (``--help`` prints the usage; no file is argparse's
    usage error, 2)."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(
        prog="python -m models.configcheck",
        description="Check config files as the workflow does when it starts with --configfile "
        "FILE... (the files one config, each with the files it extends, each laid over the ones "
        "before it): the schema's keys and bounds, the models' names and arguments, each "
        "split's settings. Prints every problem, naming its key and file (exit status 1).",
    )
    parser.add_argument("files", nargs="+", metavar="FILE", help="a config file (YAML)")
    parser.add_argument(
        "--each",
        action="store_true",
        help="check every FILE alone, as --configfile FILE reads it (configs/*.yaml)",
    )
    args = parser.parse_args(argv)
    status = 0
    for paths in [[path] for path in args.files] if args.each else [args.files]:
        try:
            config, origins = config_with_origins(paths)
        except ValueError as e:  # names the file that cannot be read (this or one it extends)
            print(f"error: {e}", file=sys.stderr)
            status = 1
            continue
        _, problems = workflow_config_problems(config, origins)
        if problems:
            print(f"error: {' '.join(paths)}: {problems_error(problems)}", file=sys.stderr)
            status = 1
        else:
            experiments = len(config.get("experiments") or {})
            plural = "" if experiments == 1 else "s"
            print(f"{' '.join(paths)}: valid ({experiments} experiment{plural})")
    return status


if __name__ == "__main__":
    raise SystemExit(main())
