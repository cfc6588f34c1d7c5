"""A workflow config checked as the workflow checks it when it starts: the schema, then the checks
past it (a model's name and arguments, a CTC output too short for its longest label, a split's
settings no spec accepts), then the fonts, charset and corpus files it names, its own test sets
(`own_test`: a name, a task, a labels file), the report's targets and references
(`report_problems`: an experiment, a test split or a figure the run has not) and the checkpoints
its experiments start from (`init_from_problems`: a cycle, another architecture, a file that is
not there), every problem at once, each naming its key and the file that set it. The workflow
runs the same checks when it starts (`start_check`, which common.smk calls too) and lists the
same problems, all at once.

    python -m models.configcheck FILE...

checks the FILEs as ``snakemake --configfile FILE...`` reads them (each with the files it
extends, each laid over the ones before it), so that a typo is named before a run starts; the
Makefile runs it on ``CONFIG``. ``--each`` checks every FILE alone instead; ``--no-files`` the
keys alone (a config for another machine's fonts): no file the config names is read, and a path
may name a variable this environment does not set. A file
that is not YAML at all is named with its line and column (Snakemake's own message for an
unreadable ``--configfile`` names no file).
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from models.cli import stops_on_interrupt
from models.metrics import metric_names
from models.pack import Entry, read_labels
from models.registry import experiment_problems, family_of
from synth.atomic import missing_why
from synth.charset import extra_chars, nfkc, read_chars_file
from synth.fonts import FontError, FontFile, resolve_font_files, split_roles
from synth.schema import (
    SCHEMA_PATH,
    SchemaCheck,
    check_schema,
    config_with_origins,
    from_files,
    named_with_file,
    problems_error,
)
from synth.specs import SPLIT_IDS, TEST_SPLITS, split_config, task_spec

# by its name, not __name__: `python -m models.configcheck` runs it as __main__, and the
# workflow shows this logger's warnings
logger = logging.getLogger("models.configcheck")


def workflow_config_problems(
    config: Mapping[str, Any],
    origins: Mapping[str, Any] | None = None,
    schema_path: str | os.PathLike = SCHEMA_PATH,
    *,
    files: bool = True,
) -> tuple[dict[str, Any], list[str]]:
    """The config with the schema's defaults filled in, and every problem of it, one line each:
    the schema's, then those of the checks past it, run on every experiment and task the schema
    finds nothing wrong with (an experiment's train or eval block left out starts empty, so every
    experiment has them in full). ``origins`` as `synth.schema.config_with_origins` gives them.
    Without ``files`` (``--no-files``: a config for another machine), a path naming a variable
    that is not set here is no problem (`synth.schema.check_schema`'s ``environment``)."""
    checked = check_schema(config, schema_path, origins, environment=files)
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


def read_workflow_config(
    paths: Sequence[str | os.PathLike],
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The config files ``paths`` read and checked as ``snakemake --configfile PATH...`` reads
    them (`workflow_config_problems`), for a command that takes a workflow config (the
    benchmarks): a misspelt key is refused, not left for its default.

    Returns:
        The config as the files give it (merged, each with the files it extends) and the same
        with the schema's defaults filled in.

    Raises:
        ValueError: A file cannot be read (the message names it), or the config has problems:
            ``FILE...: invalid config (N problems):`` and one line each, naming its key.
    """
    config, origins = config_with_origins(paths)
    filled, problems = workflow_config_problems(config, origins)
    if problems:
        raise ValueError(f"{' '.join(str(p) for p in paths)}: {problems_error(problems)}")
    return config, filled


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
    if _plainly_empty(charset):  # chars that give none otherwise: known once files are read
        problems.append(f"{where}: {EMPTY_CHARSET}")
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


EMPTY_CHARSET = (
    "source chars, and chars and files give no character: an empty charset; list the task's "
    "characters in chars (or in files)"
)


def _plainly_empty(charset: Mapping[str, Any]) -> bool:
    """A ``source: chars`` charset of no file and blank ``chars``: empty, files read or not."""
    blank = not str(charset.get("chars") or "").strip()
    return charset.get("source") == "chars" and blank and not charset.get("files")


def cwd_hint(paths: Sequence[Any] = ()) -> str:
    """The words a message about ``paths`` adds: where relative paths are read from; nothing
    when every one of them is absolute (none given: the words). The config's paths come here
    with their ``~`` and ``$VARS`` expanded (`synth.schema.expand_paths`)."""
    if paths and all(os.path.isabs(str(p)) for p in paths):
        return ""
    return f" (relative paths are read from {os.getcwd()})"


def not_found(path: str | os.PathLike) -> str:
    """Why a path the config names that is neither a file nor a folder cannot be read; where
    relative paths are read from, when it does not exist."""
    why = missing_why(path)
    return why + cwd_hint([path]) if why == "does not exist" else why


def corpus_files(task_cfg: Mapping[str, Any]) -> list[str]:
    """A task's own text files (``tasks.line.corpus``), those its shard jobs read: none for the
    other tasks, unset, or with ``corpus_fraction`` 0 (the files are not read then)."""
    return list(task_cfg.get("corpus") or []) if task_cfg.get("corpus_fraction") else []


CORPUS_READ_AT_START = 4_000_000  # bytes: a corpus this small is read whole when a run starts


def corpus_problem(path: str) -> str | None:
    """What keeps a file of ``tasks.line.corpus`` from being read, or None. A file of up to
    `CORPUS_READ_AT_START` bytes is read too (text that is not UTF-8, or only whitespace); a
    larger one is left to the shard jobs, which read it anyway, rather than read at every run's
    start."""
    if os.path.isdir(path):
        return "is a folder, not a text file"
    if not os.path.isfile(path):
        return not_found(path)
    size = os.path.getsize(path)
    if size == 0:
        return "is empty"
    if size <= CORPUS_READ_AT_START:
        with open(path, "rb") as f:
            data = f.read()
        try:  # as the shard jobs read it: a byte-order mark is no text
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as e:
            return f"is not UTF-8 text (byte {e.start}: {data[e.start : e.start + 1]!r})"
        if not text:
            return "is empty (a byte-order mark alone)"
        if not text.strip():
            return "holds only whitespace"
    return None


@dataclass
class ConfigFiles:
    """The files a valid config names, as the workflow finds them when it starts
    (`config_files`).

    Attributes:
        train_fonts: The font files of ``fonts.paths`` the training splits draw with
            (`synth.fonts.split_roles`: copies and held-out faces left out).
        test_fonts: Those of ``fonts.test_fonts``, the held-out split's.
        problems: One line each, naming the key, the path and the file that set the key: a font
            named that cannot be used, a role left without fonts, a charset or corpus file that
            cannot be read, a charset that gives no character.
    """

    train_fonts: list[FontFile] = field(default_factory=list)
    test_fonts: list[FontFile] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def _utf8_writable(path: str) -> bool:
    """Whether ``path`` can be written as UTF-8, as Snakemake writes its inputs' paths: not when
    it holds the surrogates Python reads a file name's undecodable bytes as."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _undecodable_name(path: str) -> str:
    """What is wrong with a font ``path`` the locale could not decode, and what to do: a name
    that is UTF-8 under a locale that is not (``LC_ALL=C`` with Python's UTF-8 mode off) is the
    locale's fault; another (a GBK name from a Windows archive) the name's."""
    raw = os.fsencode(path)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return (
            f"{raw.decode('utf-8', 'backslashreplace')}: its name is not UTF-8 (bytes shown as "
            "\\xNN), which Snakemake needs of every path: rename it (convmv -f gbk -t utf-8 "
            "renames a GBK name)"
        )
    return (
        f"{text}: its name is UTF-8, which this locale's encoding "
        f"({sys.getfilesystemencoding()}) cannot read, and Snakemake cannot write it: run under "
        "a UTF-8 locale (LC_ALL=C.UTF-8)"
    )


def config_files(
    config: Mapping[str, Any], origins: Mapping[str, Any] | None = None
) -> ConfigFiles:
    """The fonts, charset files and corpus files of a valid ``config`` (its defaults filled in,
    as `workflow_config_problems` gives it), checked as the workflow checks them when it starts
    (relative paths are read from the working folder): every problem at once. The fonts' and
    charsets' warnings (a pattern that matches nothing, a file that is not a font, a character
    repeated) go to their modules' loggers."""
    found = ConfigFiles()
    fonts = config["fonts"]
    try:
        found.train_fonts, found.test_fonts = split_roles(fonts["paths"], fonts["test_fonts"])
    except FontError as e:  # explicitly named files: split_roles stops at the first
        found.problems += _named_font_problems(fonts, origins) or [_font_problem(e, fonts, origins)]
    else:
        for name, files in (("paths", found.train_fonts), ("test_fonts", found.test_fonts)):
            for f in files:
                # Snakemake reads braces in an input's path as wildcards: its own error names no
                # file
                if "{" in f.path or "}" in f.path:
                    found.problems.append(
                        f"fonts.{name}: {f.path}: braces in a path are Snakemake's wildcards: "
                        "rename it" + from_files(origins, ["fonts", name])
                    )
                # A name the locale's encoding could not decode (a GBK name from a Windows
                # archive under a UTF-8 locale) holds surrogates, which Snakemake cannot write as
                # UTF-8: it stopped with a traceback naming no file. A name the locale decodes
                # (a UTF-8 one under Latin-1 or GB18030, read as other characters) it writes.
                if not _utf8_writable(f.path):
                    found.problems.append(
                        f"fonts.{name}: {_undecodable_name(f.path)}"
                        + from_files(origins, ["fonts", name])
                    )
        if not found.train_fonts:
            found.problems.append(
                f"fonts.paths: {fonts['paths']} match no font file to train with"
                f"{cwd_hint(fonts['paths'])}{from_files(origins, ['fonts', 'paths'])}"
            )
        # Every task's test_heldout split draws with them: without one, every model would
        # train before the first held-out shard job failed.
        if not found.test_fonts:
            held_out = fonts["test_fonts"]
            found.problems.append(
                "fonts.test_fonts: "
                + (
                    f"{held_out} match no font file to hold out{cwd_hint(held_out)}"
                    if held_out
                    else "no held-out font is listed"
                )
                + "; the test_heldout split of every task draws with them: list at least one "
                "font file that fonts.paths does not (configs/config.yaml holds out three)"
                + from_files(origins, ["fonts", "test_fonts"])
            )
    for task, task_cfg in config["tasks"].items():
        found.problems += _charset_file_problems(task, task_cfg["charset"], origins)
        for path in corpus_files(task_cfg):
            if problem := corpus_problem(path):
                found.problems.append(
                    f"tasks.{task}.corpus: {path} {problem}"
                    + from_files(origins, ["tasks", task, "corpus"])
                )
    return found


def _font_problem(e: FontError, fonts: Mapping[str, Any], origins: Mapping[str, Any] | None) -> str:
    """A font file named outright that cannot be used, with its key (the list naming it) when
    known, where relative paths are read from and the config file that set the key."""
    key = e.key.split(".") if e.key else ["fonts"]
    listed = fonts.get(key[-1], ()) if e.key else ()
    return f"{e}{cwd_hint(listed)}{from_files(origins, key)}"


def _named_font_problems(fonts: Mapping[str, Any], origins: Mapping[str, Any] | None) -> list[str]:
    """Every font file that ``fonts.paths`` and ``fonts.test_fonts`` name outright (not by a
    glob) and that cannot be used, one line each, in the lists' order: `split_roles` raises at
    the first, which would leave a second typo for the next run. Read only once it has raised."""
    problems = []
    for name in ("paths", "test_fonts"):
        for pattern in fonts[name]:
            try:
                resolve_font_files([pattern], warn=False, key=f"fonts.{name}")
            except FontError as e:
                problems.append(_font_problem(e, fonts, origins))
    return problems


def _charset_file_problems(
    task: str, charset: Mapping[str, Any], origins: Mapping[str, Any] | None
) -> list[str]:
    """A charset file that cannot be read (a typo in it was not noticed when an old charset's
    outputs stood), a charset text that fails (a lone combining mark), or a ``source: chars``
    charset that gives no character. The text's warnings (a character repeated, one left out)
    are logged here, once per run, naming the task, rather than from each job that builds the
    charset."""
    where = f"tasks.{task}.charset"
    key = where.split(".")
    problems = []
    for path in charset["files"]:
        if not os.path.isfile(path):
            why = (
                "is a folder, not a text file (list the files in it)"
                if os.path.isdir(path)
                else not_found(path)
            )
            problems.append(f"{where}.files: {path} {why}" + from_files(origins, [*key, "files"]))
    # chars, then each file, as extra_chars reads them (its warnings in the same order), every
    # one that fails named; their messages name "tasks.<task>.charset chars" or "... file F",
    # no key named_with_file would find, so from_files is given the key
    chars: list[str] = []
    try:
        chars += extra_chars(charset["chars"], (), where)
    except ValueError as e:  # names the character
        problems.append(f"{e}{from_files(origins, [*key, 'chars'])}")
    for path in charset["files"]:
        if os.path.isfile(path):
            try:
                chars += read_chars_file(path, where)
            except (OSError, ValueError) as e:  # names the file and the line
                problems.append(f"{e}{from_files(origins, [*key, 'files'])}")
    if problems:
        return problems
    if not chars and charset["source"] == "chars" and not _plainly_empty(charset):
        return [f"{where}: {EMPTY_CHARSET}" + from_files(origins, [*where.split("."), "chars"])]
    return []


@dataclass
class OwnTest:
    """An own test set (``own_tests.<split>``) as the workflow finds it when it starts
    (`own_test`).

    Attributes:
        entries: The lines of its labels file (`models.pack.read_labels`); none when the file
            was not read, or could not be.
        problems: One line each, naming the key and the file that set it, in the order the
            workflow checks them.
    """

    entries: list[Entry] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def own_test(
    config: Mapping[str, Any],
    split: str,
    origins: Mapping[str, Any] | None = None,
    files: bool = True,
) -> OwnTest:
    """``own_tests.<split>`` of a valid ``config`` (its defaults filled in), checked as the
    workflow checks it when it starts: a split named like one of the synthetic data's, a task no
    experiment of the config has, braces in the labels file's path; with ``files`` (relative
    paths are read from the working folder), a labels file that is not a file, that cannot be
    read or is not UTF-8 (`models.pack.read_labels`), or that lists an image path with braces
    (the first such line). The other problems of its lines (no tab, an unreadable image, a label
    outside the charset) are the pack job's to list."""
    own, where = config["own_tests"][split], f"own_tests.{split}"
    labels = own["labels"]
    found = OwnTest()
    named: list[tuple[str, str]] = []  # (key, problem), in the workflow's order
    if split in SPLIT_IDS:
        named.append((where, "a split of the synthetic data has that name"))
    if not any(e["task"] == own["task"] for e in config["experiments"].values()):
        named.append((where, f"no experiment of task {own['task']!r} in the config reads it"))
    readable = files and os.path.isfile(labels)
    if files and not readable:
        named.append((f"{where}.labels", f"{labels} is not a file{cwd_hint([labels])}"))
    # Snakemake reads braces in an input's path as wildcards
    if "{" in labels or "}" in labels:
        named.append(
            (f"{where}.labels", f"{labels}: braces in a path are Snakemake's wildcards: rename it")
        )
    if readable:
        try:
            found.entries = read_labels(labels)[0]
        except ValueError as e:  # models.pack.PackError: not UTF-8, unreadable
            named.append((f"{where}.labels", str(getattr(e, "problems", [e])[0])))
        braced = [e for e in found.entries if "{" in e.source or "}" in e.source]
        if braced:
            named.append(
                (
                    f"{where}.labels",
                    f"line {braced[0].line}: {braced[0].source}: braces in a path are "
                    "Snakemake's wildcards: rename the file",
                )
            )
    found.problems = [f"{key}: {why}" + from_files(origins, key.split(".")) for key, why in named]
    return found


def experiment_of(path: str | os.PathLike) -> str | None:
    """X when ``path`` is results/models/X/model.pt of the working folder, however it is spelled
    (./results/..., results//..., absolute, through a symlink), the model experiment X trains;
    else None."""
    real = os.path.realpath(path)  # the folders that exist resolved, the rest kept
    parts = os.path.relpath(real, os.path.realpath(os.getcwd())).split(os.sep)
    if parts[:2] == ["results", "models"] and parts[3:] == ["model.pt"]:
        return parts[2]
    return None


def init_from_problems(
    config: Mapping[str, Any],
    name: str,
    origins: Mapping[str, Any] | None = None,
    files: bool = True,
) -> list[str]:
    """What keeps ``experiments.<name>.train.init_from`` of a valid ``config`` from naming the
    weights its run starts from, checked as the workflow checks it when it starts, one line
    each, naming the key and the file that set it, in the workflow's order: the experiment's
    own model, a cycle of experiments each starting from the next one's model (said once, by
    the first of them by name), another experiment's model of another architecture; with
    ``files``, a path that neither exists nor is the model of an experiment (relative paths are
    read from the working folder). None when it is unset."""
    experiments = config["experiments"]
    path = experiments[name]["train"].get("init_from")
    if path is None:
        return []
    where = f"experiments.{name}.train.init_from"
    maker = experiment_of(path)
    problems = []
    if maker == name:
        problems.append(
            f"{path} is this experiment's own model; copy it elsewhere to start from it"
        )
    elif maker in experiments:
        # experiments that start from each other's models, round to this one: Snakemake's
        # "Cyclic dependency on rule train" named no key
        chain, other = [name], maker
        while other in experiments and other not in chain:
            chain.append(other)
            then = experiments[other]["train"].get("init_from")
            other = experiment_of(then) if then is not None else None
        if other == name and name == min(chain):  # the others of the cycle name the same
            keys = " -> ".join(f"experiments.{e}.train.init_from" for e in [*chain, name])
            problems.append(
                f"{path} starts a cycle of experiments each starting from the next one's model "
                f"({keys}): one of them must start from a file, or afresh"
            )
        ours, theirs = experiments[name]["model"], experiments[maker]["model"]
        if ours != theirs:  # known now: not after the other experiment has trained
            problems.append(
                f"{path} is experiment {maker}'s model ({theirs}); this experiment trains "
                f"{ours}, and weights start only a model of the same architecture"
            )
    elif files and not os.path.isfile(path):
        problems.append(
            f"{path} does not exist and no experiment makes it"
            + (f" (the config has no experiment {maker!r})" if maker else "")
            + cwd_hint([path])
        )
    return [f"{where}: {p}" + from_files(origins, where.split(".")) for p in problems]


def evaluated_splits(config: Mapping[str, Any], task: str) -> list[str]:
    """The test splits a task's models (and Tesseract) are evaluated on in a valid ``config``:
    the synthetic ones (`synth.specs.TEST_SPLITS`), then the config's own test sets of that
    task."""
    own = [split for split, own in config["own_tests"].items() if own["task"] == task]
    return [*TEST_SPLITS, *own]


def report_problems(
    config: Mapping[str, Any], origins: Mapping[str, Any] | None = None
) -> list[str]:
    """The entries of ``report.targets`` and ``report.references`` of a valid ``config`` (its
    defaults filled in) that name no figure of the run, checked as the workflow checks them when
    it starts, one line each, naming the key and the file that set it: an experiment the config
    lacks (a typo gave empty cells in summary.md; Tesseract's rows are one per task, not an
    experiment's), a test split the experiment is not evaluated on (`evaluated_splits`), a
    metric its metrics.json does not hold. The keys alone: no file is read."""
    problems = []
    for section in ("targets", "references"):
        for i, entry in enumerate(config["report"][section]):
            where = ["report", section, str(i)]
            problems += [
                f"{'.'.join(where)}.{key}: {why}" + from_files(origins, [*where, key])
                for key, why in _report_entry_problems(config, entry)
            ]
    return problems


def _report_entry_problems(
    config: Mapping[str, Any], entry: Mapping[str, Any]
) -> list[tuple[str, str]]:
    """(key, problem) for each key of a report entry that names no figure of the run
    (`report_problems`)."""
    experiments, name = config["experiments"], entry["experiment"]
    if name not in experiments:
        return [
            (
                "experiment",
                f"{name!r} is not an experiment of the config; valid: "
                f"{', '.join(sorted(experiments))}",
            )
        ]
    task, model = experiments[name]["task"], experiments[name]["model"]
    named = []
    splits = evaluated_splits(config, task)
    if "split" in entry and entry["split"] not in splits:  # (a reference has none)
        named.append(
            ("split", f"{entry['split']!r} is none of {name}'s test splits, {', '.join(splits)}")
        )
    metrics = metric_names(family_of(model) == "classification", task == "expr")
    if entry["metric"] not in metrics:
        named.append(
            (
                "metric",
                f"{entry['metric']!r} is not one of {name}'s figures; valid: {', '.join(metrics)}",
            )
        )
    return named


@dataclass
class StartCheck:
    """What the workflow finds when it starts in a valid config (`start_check`).

    Attributes:
        files: Its fonts by role, and the problems of its fonts, charset and corpus files
            (`config_files`); nothing read without ``files``.
        own_tests: Each own test set (``own_tests.<split>``) as `own_test` finds it, its
            labels file's lines among it.
        starts_from: For each experiment whose ``train.init_from`` is set, the experiment of the
            config whose model it names (its train job makes the file), or None: a file of the
            user's.
        problems: Every problem, one line each, naming its key and the file that set it.
    """

    files: ConfigFiles = field(default_factory=ConfigFiles)
    own_tests: dict[str, OwnTest] = field(default_factory=dict)
    starts_from: dict[str, str | None] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def start_check(
    config: Mapping[str, Any], origins: Mapping[str, Any] | None = None, files: bool = True
) -> StartCheck:
    """Every check the workflow runs when it starts on a valid ``config`` (its defaults filled
    in, as `workflow_config_problems` gives it) past its keys' own: with ``files``, the fonts,
    charset and corpus files (`config_files`); then the own test sets (`own_test`), the report's
    entries (`report_problems`, the keys' alone) and the experiments' ``train.init_from``
    (`init_from_problems`), their files only with ``files``. Every problem at once, in that
    order. The workflow (common.smk) and this command both run it, once: a check added here
    runs when the workflow starts too, and the workflow takes its fonts, its own test sets'
    lines and where each experiment starts from. A ``results/models/X/model.pt`` left by an
    experiment X the config no longer has is a file of the user's, used as it is: a warning
    (this module's logger) says so, with ``files``, when the file is there."""
    found = StartCheck(files=config_files(config, origins) if files else ConfigFiles())
    problems = list(found.files.problems)
    for split in config["own_tests"]:
        found.own_tests[split] = own_test(config, split, origins, files)
        problems += found.own_tests[split].problems
    problems += report_problems(config, origins)
    experiments = config["experiments"]
    for name in sorted(experiments):
        problems += init_from_problems(config, name, origins, files)
        path = experiments[name]["train"].get("init_from")
        if path is None:
            continue
        maker = experiment_of(path)
        found.starts_from[name] = maker if maker in experiments else None
        if maker is not None and maker not in experiments and files and os.path.isfile(path):
            logger.warning(
                "%s: %s was made by an experiment %r that the config no longer has: it is used "
                "as it is, a file of yours",
                f"experiments.{name}.train.init_from",
                path,
                maker,
            )
    found.problems = problems
    return found


@stops_on_interrupt("models.configcheck", "it writes nothing")
def main(argv: Sequence[str] | None = None) -> int:
    """``python -m models.configcheck [--each] [--no-files] FILE...``: returns the exit status, 0
    (after a line ``FILE...: valid (N experiments)`` on stdout) or 1 after printing ``error: FILE:
    why`` for a file that cannot be read, or the config's problems under ``FILE...: invalid config
    (N problems)`` (``--help`` prints the usage; no file is argparse's usage error, 2)."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(
        prog="python -m models.configcheck",
        description="Check config files as the workflow does when it starts with --configfile "
        "FILE... (the files one config, each with the files it extends, each laid over the ones "
        "before it): the schema's keys and bounds, the models' names and arguments, each "
        "split's settings, then the fonts, charset and corpus files it names, its own test sets, "
        "the report's targets and references and the checkpoints its experiments start from "
        "(train.init_from). Prints every problem, naming its key and file (exit status 1).",
    )
    parser.add_argument("files", nargs="+", metavar="FILE", help="a config file (YAML)")
    parser.add_argument(
        "--each",
        action="store_true",
        help="check every FILE alone, as --configfile FILE reads it (configs/*.yaml)",
    )
    parser.add_argument(
        "--no-files",
        action="store_true",
        help="check the keys alone, not the files the config names (fonts, charset, corpus and "
        "own_tests labels files, train.init_from checkpoints, read from the working folder as "
        "the workflow reads them), nor whether this environment sets the variables their paths "
        "name",
    )
    args = parser.parse_args(argv)
    # The fonts' and charsets' warnings (a pattern matching nothing, a file that is no font) and
    # start_check's (a model left by an experiment the config no longer has), as the workflow
    # prints them when it starts
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    status = 0
    for paths in [[path] for path in args.files] if args.each else [args.files]:
        try:
            config, origins = config_with_origins(paths)
        except ValueError as e:  # names the file that cannot be read (this or one it extends)
            print(f"error: {e}", file=sys.stderr)
            status = 1
            continue
        filled, problems = workflow_config_problems(config, origins, files=not args.no_files)
        if not problems:  # the checks of a config whose keys hold, its files unless --no-files
            problems = start_check(filled, origins, files=not args.no_files).problems
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
