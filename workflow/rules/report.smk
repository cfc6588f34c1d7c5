# Reports: tables, summary and plots, built only from the structured files evaluation and
# training write (metrics.json, predictions.csv, history.csv), never from logs.
# Each report holds the experiments of one model family; an experiment absent from the config
# has no rows. Tesseract runs on the tasks of a report's experiments that it has settings for
# (its rows say so when it is not installed).
import os

from models.registry import family_of
from synth.code import PLOT_MODULES, REPORT_MODULES, job_code
from synth.specs import canonical

# The code that builds the tables and the summary, and that draws the plots (synth.code.job_code):
# a release that reports otherwise reports anew.
REPORT_CODE = job_code(REPORT_MODULES)
PLOT_CODE = job_code(PLOT_MODULES)

FAMILY = {e: family_of(experiment_config(e)["model"]) for e in EXPERIMENTS}
REPORT_FAMILIES = {"crnn": "ctc", "hanzi": "classification", "reader": "attention"}
REPORT_EXPERIMENTS = {
    kind: [e for e in EXPERIMENTS if FAMILY[e] == family]
    for kind, family in REPORT_FAMILIES.items()
}
REPORT_TESSERACT_TASKS = {
    kind: (
        sorted({experiment_task(e) for e in exps} & set(TESSERACT_TASKS))
        if config["tesseract"]["enabled"]
        else []
    )
    for kind, exps in REPORT_EXPERIMENTS.items()
}
# The tables have the synthetic test splits and the own_tests of each task (test_splits); so do
# the prediction grids below; the other plots, the synthetic splits alone.
REPORT_METRICS = {
    kind: [
        os.path.join(eval_dir(e, s), "metrics.json")
        for e in REPORT_EXPERIMENTS[kind]
        for s in test_splits(experiment_task(e))
    ]
    + [
        os.path.join(tesseract_dir(t, s), "metrics.json")
        for t in REPORT_TESSERACT_TASKS[kind]
        for s in test_splits(t)
    ]
    for kind in REPORT_FAMILIES
}
# The synthetic test splits' metrics, for the accuracy-by-font and -by-experiment plots.
ALL_METRICS = [
    p
    for kind in REPORT_FAMILIES
    for p in REPORT_METRICS[kind]
    if os.path.basename(os.path.dirname(p)) in TEST_SPLITS
]
READER_GIFS = config["report"]["reader_gifs"]
# The rule always names at least one GIF (a rule needs an output); PLOTS asks for none when
# report.reader_gifs is 0.
ATTENTION_GIFS = [
    f"results/plots/{{experiment}}/attention_{i}.gif"
    for i in range(max(1, READER_GIFS))
]
PLOTS = [
    "results/plots/accuracy_by_font.png",
    "results/plots/accuracy_by_experiment.png",
    "results/plots/compare_curves.png",
] + [
    f"results/plots/{e}/{name}"
    for e in EXPERIMENTS
    for name in [
        "curves.png",
        *(f"predictions_{s}.png" for s in test_splits(experiment_task(e))),
        *(["confusions.png"] if FAMILY[e] == "classification" else []),
        *(
            [f"attention_{i}.gif" for i in range(READER_GIFS)]
            if FAMILY[e] == "attention"
            else []
        ),
    ]
]


rule crnn_report:
    input:
        REPORT_METRICS["crnn"],
    output:
        report(
            "results/crnn_report.csv",
            caption="../report/crnn_report.rst",
            category="Tables",
            labels={"table": "CTC recognizers"},
        ),
    log:
        "logs/report/crnn_report.log",
    benchmark:
        "logs/report/crnn_report.benchmark.tsv"
    conda:
        "../../environment.yml"
    threads: 1
    resources:
        mem_mb=1000,
    params:
        kind="crnn",
        code=REPORT_CODE,
    script:
        "../scripts/report_table.py"


rule hanzi_report:
    input:
        REPORT_METRICS["hanzi"],
    output:
        report(
            "results/hanzi_report.csv",
            caption="../report/hanzi_report.rst",
            category="Tables",
            labels={"table": "printed hanzi"},
        ),
    log:
        "logs/report/hanzi_report.log",
    benchmark:
        "logs/report/hanzi_report.benchmark.tsv"
    conda:
        "../../environment.yml"
    threads: 1
    resources:
        mem_mb=1000,
    params:
        kind="hanzi",
        code=REPORT_CODE,
    script:
        "../scripts/report_table.py"


rule reader_report:
    input:
        REPORT_METRICS["reader"],
    output:
        report(
            "results/reader_report.csv",
            caption="../report/reader_report.rst",
            category="Tables",
            labels={"table": "attention reader"},
        ),
    log:
        "logs/report/reader_report.log",
    benchmark:
        "logs/report/reader_report.benchmark.tsv"
    conda:
        "../../environment.yml"
    threads: 1
    resources:
        mem_mb=1000,
    params:
        kind="reader",
        code=REPORT_CODE,
    script:
        "../scripts/report_table.py"


rule summary:
    input:
        tables=[
            "results/crnn_report.csv",
            "results/hanzi_report.csv",
            "results/reader_report.csv",
        ],
        crnn=REPORT_METRICS["crnn"],
        hanzi=REPORT_METRICS["hanzi"],
        reader=REPORT_METRICS["reader"],
        plots=PLOTS,
    output:
        report(
            "results/summary.md",
            caption="../report/summary.rst",
            category="Tables",
            labels={"table": "summary"},
        ),
    log:
        "logs/report/summary.log",
    benchmark:
        "logs/report/summary.benchmark.tsv"
    conda:
        "../../environment.yml"
    threads: 1
    resources:
        mem_mb=1000,
    params:
        references=canonical(config["report"]["references"]),
        targets=canonical(config["report"]["targets"]),
        code=REPORT_CODE,
    script:
        "../scripts/report_summary.py"


rule plot_curves:
    input:
        "results/models/{experiment}/history.csv",
    output:
        report(
            "results/plots/{experiment}/curves.png",
            caption="../report/curves.rst",
            category="Training curves",
            labels={"experiment": "{experiment}"},
        ),
    log:
        "logs/plots/{experiment}/curves.log",
    benchmark:
        "logs/plots/{experiment}/curves.benchmark.tsv"
    conda:
        "../../environment.yml"
    threads: 1
    resources:
        mem_mb=1000,
    params:
        code=PLOT_CODE,
    script:
        "../scripts/plots_curves.py"


# Every experiment's validation curves in one figure, a row per task: variants side by side.
rule plot_compare_curves:
    input:
        [f"results/models/{e}/history.csv" for e in EXPERIMENTS],
    output:
        report(
            "results/plots/compare_curves.png",
            caption="../report/compare_curves.rst",
            category="Training curves",
            labels={"experiment": "every experiment, compared"},
        ),
    log:
        "logs/plots/compare_curves.log",
    benchmark:
        "logs/plots/compare_curves.benchmark.tsv"
    conda:
        "../../environment.yml"
    threads: 1
    resources:
        mem_mb=1000,
    params:
        experiments=EXPERIMENTS,
        tasks=[experiment_task(e) for e in EXPERIMENTS],
        code=PLOT_CODE,
    script:
        "../scripts/plots_compare_curves.py"


rule plot_predictions:
    input:
        predictions=[
            os.path.join(eval_dir("{experiment}", s), "predictions.csv")
            for s in TEST_SPLITS
        ],
        shards=lambda w: [
            p
            for s in TEST_SPLITS
            for p in shard_paths(experiment_task(w.experiment), s)
        ],
    output:
        [
            report(
                f"results/plots/{{experiment}}/predictions_{s}.png",
                caption="../report/predictions.rst",
                category="Test predictions",
                subcategory="{experiment}",
                labels={"experiment": "{experiment}", "split": s},
            )
            for s in TEST_SPLITS
        ],
    log:
        "logs/plots/{experiment}/predictions.log",
    benchmark:
        "logs/plots/{experiment}/predictions.benchmark.tsv"
    conda:
        "../../environment.yml"
    threads: 1
    resources:
        mem_mb=2000,
    params:
        splits=TEST_SPLITS,
        # which of the input shards belong to which split, in TEST_SPLITS order
        shards=lambda w: [
            shard_paths(experiment_task(w.experiment), s) for s in TEST_SPLITS
        ],
        n=config["report"]["prediction_grid_samples"],
        code=PLOT_CODE,
    script:
        "../scripts/plots_predictions.py"


# An own test's grid (own_tests): the user's images with their labels and readings.
rule plot_own_predictions:
    input:
        predictions=[
            os.path.join(eval_dir("{experiment}", "{split}"), "predictions.csv")
        ],
        shards=lambda w: shard_paths(experiment_task(w.experiment), w.split),
    output:
        [
            report(
                "results/plots/{experiment}/predictions_{split}.png",
                caption="../report/predictions.rst",
                category="Test predictions",
                subcategory="{experiment}",
                labels={"experiment": "{experiment}", "split": "{split}"},
            )
        ],
    log:
        "logs/plots/{experiment}/predictions_{split}.log",
    benchmark:
        "logs/plots/{experiment}/predictions_{split}.benchmark.tsv"
    wildcard_constraints:
        split="|".join(OWN_TESTS) if OWN_TESTS else "(?!)",
    conda:
        "../../environment.yml"
    threads: 1
    resources:
        mem_mb=2000,
    params:
        splits=lambda w: [w.split],
        shards=lambda w: [shard_paths(experiment_task(w.experiment), w.split)],
        n=config["report"]["prediction_grid_samples"],
        code=PLOT_CODE,
    script:
        "../scripts/plots_predictions.py"


rule plot_confusions:
    input:
        [
            os.path.join(eval_dir("{experiment}", s), "predictions.csv")
            for s in TEST_SPLITS
        ],
    output:
        report(
            "results/plots/{experiment}/confusions.png",
            caption="../report/confusions.rst",
            category="Confused hanzi",
            labels={"experiment": "{experiment}"},
        ),
    log:
        "logs/plots/{experiment}/confusions.log",
    benchmark:
        "logs/plots/{experiment}/confusions.benchmark.tsv"
    conda:
        "../../environment.yml"
    threads: 1
    resources:
        mem_mb=1000,
    params:
        top=config["report"]["confused_pairs"],
        code=PLOT_CODE,
    script:
        "../scripts/plots_confusions.py"


rule plot_attention:
    input:
        model=lambda w: model_path(w.experiment),
        shards=lambda w: shard_paths(experiment_task(w.experiment), "test_seen"),
    output:
        [
            report(
                path,
                caption="../report/attention.rst",
                category="Reader attention",
                labels={"experiment": "{experiment}", "sample": str(i)},
            )
            for i, path in enumerate(ATTENTION_GIFS)
        ],
    log:
        "logs/plots/{experiment}/attention.log",
    benchmark:
        "logs/plots/{experiment}/attention.benchmark.tsv"
    conda:
        "../../environment.yml"
    threads: 1
    resources:
        mem_mb=2000,
    params:
        code=PLOT_CODE,
    script:
        "../scripts/plots_attention.py"


rule plot_fonts:
    input:
        ALL_METRICS,
    output:
        report(
            "results/plots/accuracy_by_font.png",
            caption="../report/accuracy_by_font.rst",
            category="Accuracy by font",
            labels={"figure": "all experiments"},
        ),
    log:
        "logs/plots/accuracy_by_font.log",
    benchmark:
        "logs/plots/accuracy_by_font.benchmark.tsv"
    conda:
        "../../environment.yml"
    threads: 1
    resources:
        mem_mb=1000,
    params:
        code=PLOT_CODE,
    script:
        "../scripts/plots_fonts.py"


rule plot_experiments:
    input:
        ALL_METRICS,
    output:
        report(
            "results/plots/accuracy_by_experiment.png",
            caption="../report/accuracy_by_experiment.rst",
            category="Accuracy by experiment",
            labels={"figure": "all experiments"},
        ),
    log:
        "logs/plots/accuracy_by_experiment.log",
    benchmark:
        "logs/plots/accuracy_by_experiment.benchmark.tsv"
    conda:
        "../../environment.yml"
    threads: 1
    resources:
        mem_mb=1000,
    params:
        code=PLOT_CODE,
    script:
        "../scripts/plots_experiments.py"
