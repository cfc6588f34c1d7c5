# Evaluation: each experiment's checkpoint on its task's test shards, and Tesseract on the same
# shards. Both write results/eval/.../{metrics.json, predictions.csv}, the only inputs of reports.
# Threads are given as functions (experiments.<name>.eval.threads, tesseract.threads; 0 = every
# core): `workflow.cores` is read only when a job is scheduled, so `snakemake --report` (no
# --cores) still works.
import os

from models.tesseract import TASKS as _TESSERACT_SETTINGS
from synth.code import EVAL_MODULES, TESSERACT_MODULES, job_code
from synth.specs import canonical

# Tasks Tesseract has settings for (config tesseract.<task>).
TESSERACT_TASKS = list(_TESSERACT_SETTINGS)
EVAL_DIR = eval_dir("{experiment}", "{split}")
TESSERACT_DIR = tesseract_dir("{task}", "{split}")


rule evaluate:
    input:
        model=lambda w: model_path(w.experiment),
        # training wall time and steps, written by the train rule beside model.pt
        train=lambda w: os.path.join(
            os.path.dirname(model_path(w.experiment)), "train.json"
        ),
        shards=lambda w: shard_paths(experiment_task(w.experiment), w.split),
    output:
        metrics=os.path.join(EVAL_DIR, "metrics.json"),
        predictions=os.path.join(EVAL_DIR, "predictions.csv"),
    log:
        "logs/evaluate/{experiment}/{split}.log",
    benchmark:
        "logs/evaluate/{experiment}/{split}.benchmark.tsv"
    wildcard_constraints:
        split="|".join(TEST_SPLITS + list(OWN_TESTS)),
    conda:
        "../../environment.yml"
    threads: eval_threads
    resources:
        mem_mb=4000,
        gpu=lambda w: accelerator_jobs(),
    params:
        eval=eval_params,
        device=config["device"],
        # the code that reads and scores (synth.code.job_code): a release that scores
        # otherwise scores anew, without training anew
        code=job_code(EVAL_MODULES),
    script:
        "../scripts/evaluate.py"


rule tesseract:
    input:
        shards=lambda w: shard_paths(w.task, w.split),
        charset=lambda w: charset_path(w.task),
    output:
        metrics=os.path.join(TESSERACT_DIR, "metrics.json"),
        predictions=os.path.join(TESSERACT_DIR, "predictions.csv"),
    log:
        "logs/tesseract/{task}/{split}.log",
    benchmark:
        "logs/tesseract/{task}/{split}.benchmark.tsv"
    wildcard_constraints:
        task="|".join(TESSERACT_TASKS),
        split="|".join(TEST_SPLITS + list(OWN_TESTS)),
    conda:
        "../../environment.yml"
    threads: tesseract_threads
    resources:
        mem_mb=2000,
    params:
        # only what this task's run depends on: other tasks' settings never rerun it
        tesseract=lambda w: canonical(
            {
                **{
                    k: config["tesseract"][k]
                    for k in ("enabled", "max_samples", "images_per_call")
                },
                w.task: config["tesseract"][w.task],
            }
        ),
        code=job_code(TESSERACT_MODULES),
    script:
        "../scripts/tesseract.py"
