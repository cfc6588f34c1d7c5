# Shared by all the rule files. Config validation, the names of things, small input functions.
# Paths are the contract between rules: every rule reads and writes through these functions.
import functools
import json
import logging
import os

from snakemake.exceptions import WorkflowError

from models.configcheck import (
    corpus_files as configcheck_corpus_files,
    evaluated_splits,
    start_check,
    workflow_config_problems,
)
from models.registry import family_of, label_lengths, model_code
from models.specs import SCHEDULING, settings_drift, train_job_params
from synth import joblog
from synth.schema import (
    config_with_origins,
    problems_error,
    renamed_models,
)
from synth.shards import sha256_file
from synth.specs import TEST_SPLITS as SYNTHETIC_TEST_SPLITS
from synth.specs import canonical, font_role, split_config
from synth.text import grammar_settings

# A config file that names another in `extends` (configs/lines_cpu.yaml) holds only what it
# changes: here each --configfile is laid on its base, the files merge in order, --config last.
# The origins (which file set each key) name the file at fault in the problems below.
_merged, _origins = config_with_origins(
    workflow.configfiles, dict(workflow.config_settings.config)
)
if "extends" in config:
    config.clear()
    config.update(_merged)
# Every problem at once, each naming its key, in one list: the schema's, then those of the checks
# past it, the schema's defaults filled in (models.configcheck, which `make` runs before a run).
_filled, _problems = workflow_config_problems(
    config, _origins, workflow.source_path("../schemas/config.schema.yaml")
)
if _problems:
    raise problems_error(_problems, files=workflow.configfiles)
# The config with the schema's defaults, as check_schema filled them, and the ~ and $VARS of its
# paths expanded (synth.schema.expand_paths): the jobs' inputs and params hold the files meant.
config.clear()
config.update(_filled)
joblog.console("synth.workflow")
for _warning in renamed_models(config, _origins):
    logging.getLogger("synth.workflow").warning("%s", _warning)

TASKS = ["hanzi", "expr", "line", "short"]
SPLITS = ["train", "val", "test_seen", "test_heldout"]
TEST_SPLITS = list(SYNTHETIC_TEST_SPLITS)  # a list, as the rules' params have held it
EXPERIMENTS = sorted(config["experiments"])


def shard_config(task, split):
    """What one split's shards depend on: the task's settings, the split's degrade merged in."""
    return split_config(task, config["tasks"][task], split)


def experiment_config(experiment):
    return config["experiments"][experiment]


def experiment_seed(experiment):
    """An experiment's training seed: its own, else the root seed (which the shards use)."""
    return experiment_config(experiment).get("seed", config["seed"])


# A model's code digest, once per model and run (models.registry.model_code).
model_code_once = functools.cache(model_code)


def experiment_task(experiment):
    return config["experiments"][experiment]["task"]


def experiments_for(tasks):
    return [e for e in EXPERIMENTS if experiment_task(e) in tasks]


def charset_path(task):
    return f"results/charsets/{task}.txt"


def coverage_path(task, role):
    """What the faces of a role (train or test) cover of a task's charset."""
    return f"results/fonts/{task}/{role}.tsv"


ROLES = ["train", "test"]
# Every check past the keys' own runs here, once, as `python -m models.configcheck` runs it
# (models.configcheck.start_check): the fonts, charset and corpus files, the own test sets, the
# report's entries and the experiments' train.init_from. Every problem stops the workflow at
# once, each named with its key and file, in the lines configcheck prints.
#
# The font files the config's paths and globs match now, by role: inputs of the jobs that read
# fonts, so that adding, replacing or removing a font file (e.g. in fonts/) reruns them, and the
# shards after them. A held-out font is an input of the held-out shards' jobs alone, so adding
# one renders no training shard again. A file a glob matches that is not a font (cut short, an
# HTML page) is no input, so adding one reruns nothing. The warnings (those files, a pattern
# matching nothing, a character a charset repeats, a train.init_from model left by an experiment
# the config no longer has) print here, once per run.
joblog.console("synth")
joblog.console("models.configcheck")
_start = start_check(config, _origins)
if _start.problems:  # every one at once, a line each
    raise problems_error(_start.problems, files=workflow.configfiles)
ROLE_FONT_FILES = {
    "train": [f.path for f in _start.files.train_fonts],
    "test": [f.path for f in _start.files.test_fonts],
}


def corpus_files(task):
    """A task's own text files (tasks.line.corpus), those its shard jobs read."""
    return configcheck_corpus_files(config["tasks"][task])


def shard_mem_mb(wildcards):
    """A shard job's memory: 1.5 GB, and for a line corpus 20 bytes per byte of its files, a
    margin over what was measured (a 6 MB corpus took a job from 141 MB to 231 MB)."""
    return (
        1500
        + 20 * sum(os.path.getsize(f) for f in corpus_files(wildcards.task)) // 2**20
    )


def role_patterns(wildcards):
    """A role's font globs and paths: fonts.paths for train, fonts.test_fonts for test."""
    return config["fonts"]["paths" if wildcards.role == "train" else "test_fonts"]


def role_of(split):
    """The fonts a split draws with: held-out ones for test_heldout, training ones otherwise."""
    return font_role(split)


def experiment_train_shards(experiment):
    """The training shards an experiment reads: its task's, the first train.shards of them when
    that is set. They are its train job's inputs, not its params, so a setting that picks the
    same shards (train.shards at the split's old count, after the config adds shards for another
    experiment) reruns nothing."""
    shards = shard_paths(experiment_task(experiment), "train")
    n = experiment_config(experiment)["train"]["shards"]
    return shards if n is None else shards[:n]


def shard_paths(task, split):
    if split in OWN_TESTS:
        if OWN_TESTS[split]["task"] != task:
            raise ValueError(
                f"own_tests.{split} is a {OWN_TESTS[split]['task']} test, not {task}"
            )
        return [own_shard_path(split)]
    n = config["tasks"][task]["splits"][split]["shards"]
    return [f"results/shards/{task}/{split}-{i:06d}.tar" for i in range(n)]


# Test sets of the user's own labelled images (own_tests): split -> task and labels file. The
# images a labels file lists are inputs of its pack job, so editing one reruns it; the lines'
# problems (no tab, an unreadable image, a label outside the charset) are the pack job's to list.
# A split's name, task and labels file were checked above (models.configcheck.own_test).
OWN_TESTS = config["own_tests"]
OWN_IMAGES = {}
OWN_DIGEST = {}
for _split in OWN_TESTS:
    OWN_IMAGES[_split] = [
        str(e.path) for e in _start.own_tests[_split].entries if os.path.isfile(e.path)
    ]
    # In the pack job's params: the labels file's content and each image's size and time, so an
    # image replaced with an older time (cp -p) counts too, without reading every image whenever
    # the workflow is parsed (each cluster job parses it again).
    OWN_DIGEST[_split] = sha256_file(OWN_TESTS[_split]["labels"]) + "".join(
        f"|{os.stat(p).st_size}:{os.stat(p).st_mtime_ns}" for p in OWN_IMAGES[_split]
    )


def test_splits(task):
    """The test splits a task's models (and Tesseract) are evaluated on: the synthetic ones, then
    the own_tests of that task (models.configcheck.evaluated_splits)."""
    return evaluated_splits(config, task)


def own_longest_label(task):
    """The longest own_tests label a task's models can read (0: no bound)."""
    if task in ("hanzi", "short"):
        return label_lengths(task, config["tasks"][task])[1]
    return 0


def own_ctc_models(task):
    """[model, model_kwargs] of the task's CTC experiments, for the pack job's frame check."""
    return [
        [experiment_config(e)["model"], experiment_config(e)["model_kwargs"]]
        for e in experiments_for([task])
        if family_of(experiment_config(e)["model"]) == "ctc"
    ]


def own_shard_path(split):
    return f"results/own/{split}-000000.tar"


def all_shard_paths(task):
    return [p for split in SPLITS for p in shard_paths(task, split)]


def model_path(experiment):
    return f"results/models/{experiment}/model.pt"


def _init_from(name):
    """train.init_from of an experiment as (input path, sha256), or None when unset.

    Another experiment's model.pt, however spelled, is that experiment's output path, so its
    train job comes first and its retraining reruns this one (mtime). Any other file must exist;
    its sha256 goes into the job's params, so replacing it reruns the job whatever its mtime
    (copied with cp -p, say); one left by an experiment the config no longer has too, as
    start_check warned. The experiment's own model.pt, a cycle, another architecture's model and
    a file that neither exists nor is made were refused above, naming the key
    (models.configcheck.init_from_problems, in start_check).
    """
    path = config["experiments"][name]["train"].get("init_from")
    if path is None:
        return None
    if _start.starts_from[name] is not None:  # another experiment's model
        return model_path(_start.starts_from[name]), None
    return path, sha256_file(path)


INIT_SOURCES = {_name: _init_from(_name) for _name in EXPERIMENTS}

# A model that `python -m models.train` (torchrun, say) wrote has no Snakemake record, so an
# edit of its experiment would not retrain it: its train.json says who trained it, and when its
# settings are not the config's, that is said here, naming what differs.
for _name in EXPERIMENTS:
    _recorded = os.path.join(os.path.dirname(model_path(_name)), "train.json")
    try:
        with open(_recorded, encoding="utf-8") as _f:
            _info = json.load(_f)
    except (OSError, ValueError):
        continue
    if isinstance(_info, dict) and _info.get("command_line"):
        _drift = settings_drift(
            _info,
            experiment_config(_name),
            experiment_seed(_name),
            len(experiment_train_shards(_name)),
        )
        if _drift:
            logging.getLogger("synth.workflow").warning(
                "%s was trained by python -m models.train, with settings the config has"
                " changed since (%s); Snakemake keeps no record of that run, so it may not"
                " retrain it: train it again that way, or here with snakemake -f %s",
                model_path(_name),
                "; ".join(_drift),
                model_path(_name),
            )


def eval_dir(experiment, split):
    return f"results/eval/{experiment}/{split}"


def tesseract_dir(task, split):
    return f"results/eval/tesseract/{task}/{split}"


def all_targets():
    return [
        "results/crnn_report.csv",
        "results/hanzi_report.csv",
        "results/reader_report.csv",
        "results/summary.md",
        *[f"results/samples/{task}.png" for task in TASKS],
        *[f"results/shards/{task}/manifest.tsv" for task in TASKS],
        "results/fonts/coverage.tsv",
    ]


def _cores(threads):
    """A job's cores from a config's threads: 0 means every core of --cores. A cluster executor
    given no --cores has no total (reading it is an error): there a job takes its threads, and
    0 one core, which the profile's set-threads replaces (workflow/profiles/slurm)."""
    try:
        total = workflow.cores
    except WorkflowError:  # a cluster executor given no --cores
        return threads or 1
    return min(threads, total) if threads else total


def train_threads(wildcards):
    """Cores of a train job: experiments.<name>.train.threads, 0 meaning every core."""
    return _cores(experiment_config(wildcards.experiment)["train"]["threads"])


def eval_threads(wildcards):
    """Cores of an evaluate job: experiments.<name>.eval.threads, 0 meaning every core."""
    return _cores(experiment_config(wildcards.experiment)["eval"]["threads"])


def tesseract_threads(wildcards):
    """Cores (Tesseract processes at once) of a tesseract job: tesseract.threads, 0 meaning
    every core."""
    return _cores(config["tesseract"]["threads"])


def eval_params(wildcards):
    """An experiment's eval settings that its metrics depend on: not its threads, so editing
    them reruns nothing. With the grammar decoder on a test split the task draws, also the
    task's settings whose texts the readings are held to (synth.text.GRAMMAR_SETTINGS: tasks.expr's
    operand counts, digits and operators); an own test set's labels need not be such texts, and
    its readings keep the grammar of all expressions."""
    exp = experiment_config(wildcards.experiment)
    params = {k: v for k, v in exp["eval"].items() if k not in SCHEDULING}
    if params.get("decoder") == "grammar" and wildcards.split in TEST_SPLITS:
        params["task_settings"] = grammar_settings(
            exp["task"], config["tasks"][exp["task"]]
        )
    return canonical(params)


def experiment_priority(experiment):
    """experiments.<name>.train.priority: among the jobs ready to run, Snakemake starts the
    highest first."""
    return experiment_config(experiment)["train"]["priority"]


def train_priority(wildcards):
    return experiment_priority(wildcards.experiment)


def task_priority(task):
    """The highest train priority of the task's experiments (0 when none trains on it)."""
    return max(map(experiment_priority, experiments_for([task])), default=0)


def shard_priority(wildcards):
    """A train or val shard takes its task's priority, so the shards of the first model to train
    render first; test shards wait."""
    if wildcards.split in TEST_SPLITS:
        return 0
    return task_priority(wildcards.task)


def coverage_priority(wildcards):
    """The training fonts' coverage table takes its task's priority, as the charset and the train
    and val shards after it do: at 0 they waited behind every ready job of a higher one, and two
    line models training on both cores held the expr charset back 7 minutes (session 30).
    """
    return task_priority(wildcards.task) if wildcards.role == "train" else 0


def charset_priority(wildcards):
    return task_priority(wildcards.task)


@functools.cache
def accelerator_jobs():
    """1 when training and evaluation run on a GPU (or MPS), else 0: the `gpu` resource they
    declare, which the local profile caps at 1 so two never share one GPU. On a CPU-only machine
    they declare none, and their threads alone decide how many share the cores. torch is imported
    (to resolve device: auto) only when such a job is scheduled."""
    if config["device"] != "auto":
        return int(config["device"] != "cpu")
    from models.devices import resolve_device

    return int(resolve_device("auto").type != "cpu")


def train_params(wildcards):
    exp = experiment_config(wildcards.experiment)
    params = {
        "experiment": {
            **{k: exp[k] for k in ("task", "model", "model_kwargs")},
            "train": train_job_params(exp["train"]),
        },
        # The model's source files (models.registry.model_code): an edit to them retrains it.
        "model_code": model_code_once(exp["model"]),
    }
    source = INIT_SOURCES[wildcards.experiment]
    if source is not None and source[1] is not None:
        # a file of the user's: its content reruns the job
        params["init_from_sha256"] = source[1]
    return params


def init_from_input(wildcards):
    """The checkpoint a run starts from (train.init_from), if any: an input of its train job, so
    that the job waits for the experiment that makes it and reruns when it changes."""
    source = INIT_SOURCES[wildcards.experiment]
    return [] if source is None else [source[0]]
