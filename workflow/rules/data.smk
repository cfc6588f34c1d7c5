# Data: fonts -> coverage tables (one per task and role) -> charsets -> shards (one job each) ->
# manifests and contact sheets. Each rule passes its script only the config slice it needs, so
# changing one task's settings reruns only that task's shards, and adding a held-out font only
# the held-out shards.


from synth.code import DATA_MODULES, PACK_MODULES, SHEET_MODULES, job_code
from synth.specs import canonical


rule coverage:
    input:
        files=lambda w: config["tasks"][w.task]["charset"]["files"],
        fonts=lambda w: ROLE_FONT_FILES[w.role],
    output:
        coverage_path("{task}", "{role}"),
    log:
        "logs/coverage/{task}/{role}.log",
    benchmark:
        "logs/coverage/{task}/{role}.benchmark.tsv"
    priority: coverage_priority
    conda:
        "../../environment.yml"
    threads: 1
    resources:
        mem_mb=2000,
    params:
        charset=lambda w: canonical(config["tasks"][w.task]["charset"]),
        patterns=role_patterns,
        exclude_families=config["fonts"]["exclude_families"],
        misdrawn=config["fonts"]["misdrawn"],
        # synth's drawing code (synth.code.job_code): a release that draws otherwise redraws
        code=job_code(DATA_MODULES),
    script:
        "../scripts/coverage.py"


rule charset:
    input:
        files=lambda w: config["tasks"][w.task]["charset"]["files"],
        coverage=coverage_path("{task}", "train"),
    output:
        charset_path("{task}"),
    log:
        "logs/charset/{task}.log",
    benchmark:
        "logs/charset/{task}.benchmark.tsv"
    priority: charset_priority
    conda:
        "../../environment.yml"
    threads: 1
    resources:
        mem_mb=1000,
    params:
        charset=lambda w: canonical(config["tasks"][w.task]["charset"]),
        exclude_families=lambda w: config["tasks"][w.task]["exclude_families"],
        uncovered=config["fonts"]["uncovered"],
        misdrawn=config["fonts"]["misdrawn"],  # named in its message about uncovered characters
        code=job_code(DATA_MODULES),
    script:
        "../scripts/charset.py"


rule font_table:
    input:
        [coverage_path(task, role) for role in ROLES for task in TASKS],
    output:
        "results/fonts/coverage.tsv",
    log:
        "logs/font_table.log",
    benchmark:
        "logs/font_table.benchmark.tsv"
    conda:
        "../../environment.yml"
    threads: 1
    resources:
        mem_mb=500,
    script:
        "../scripts/font_table.py"


rule shard:
    input:
        charset=charset_path("{task}"),
        coverage=lambda w: coverage_path(w.task, role_of(w.split)),
        corpus=lambda w: corpus_files(w.task),
    output:
        "results/shards/{task}/{split}-{shard}.tar",
    log:
        "logs/shard/{task}/{split}-{shard}.log",
    benchmark:
        "logs/shard/{task}/{split}-{shard}.benchmark.tsv"
    priority: shard_priority
    conda:
        "../../environment.yml"
    threads: 1
    resources:
        mem_mb=shard_mem_mb,
    params:
        task=lambda w: canonical(shard_config(w.task, w.split)),
        samples=lambda w: config["tasks"][w.task]["splits"][w.split]["samples"],
        seed=config["seed"],
        # the forms a line shows beside its charset's (a full-width ，) that a face misdraws
        misdrawn=config["fonts"]["misdrawn"],
        code=job_code(DATA_MODULES),
    script:
        "../scripts/shard.py"


# A test set of the user's own labelled images (own_tests): one shard, its labels checked against
# the task's charset (models.pack); every line that cannot be packed is listed in the job's error.
rule pack:
    input:
        labels=lambda w: OWN_TESTS[w.split]["labels"],
        images=lambda w: OWN_IMAGES[w.split],
        charset=lambda w: charset_path(OWN_TESTS[w.split]["task"]),
    output:
        shard=own_shard_path("{split}"),
        manifest="results/own/{split}.manifest.tsv",
    log:
        "logs/pack/{split}.log",
    benchmark:
        "logs/pack/{split}.benchmark.tsv"
    wildcard_constraints:
        split="|".join(OWN_TESTS) if OWN_TESTS else "(?!)",
    conda:
        "../../environment.yml"
    threads: 1
    resources:
        mem_mb=1500,
    params:
        task=lambda w: OWN_TESTS[w.split]["task"],
        # the longest label the task's models can give: one hanzi, the reader's few capitals
        # (tasks.short.length); CTC models read lines of any length
        longest=lambda w: own_longest_label(OWN_TESTS[w.split]["task"]),
        # the CTC models of the task (model, model_kwargs): each image must give every one of
        # them a frame per character of its label
        ctc_models=lambda w: own_ctc_models(OWN_TESTS[w.split]["task"]),
        content=lambda w: OWN_DIGEST[w.split],
        code=job_code(PACK_MODULES),
    script:
        "../scripts/pack.py"


rule manifest:
    input:
        lambda w: all_shard_paths(w.task),
    output:
        "results/shards/{task}/manifest.tsv",
    log:
        "logs/manifest/{task}.log",
    benchmark:
        "logs/manifest/{task}.benchmark.tsv"
    conda:
        "../../environment.yml"
    threads: 1
    resources:
        mem_mb=500,
    script:
        "../scripts/manifest.py"


rule contact_sheet:
    input:
        shards=lambda w: shard_paths(w.task, "train")[:1]
        + shard_paths(w.task, "test_heldout")[:1],
        charset=charset_path("{task}"),
        coverage=coverage_path("{task}", "train"),
    output:
        report(
            "results/samples/{task}.png",
            caption="../report/samples.rst",
            category="Data",
            labels={"task": "{task}"},
        ),
    log:
        "logs/contact_sheet/{task}.log",
    benchmark:
        "logs/contact_sheet/{task}.benchmark.tsv"
    conda:
        "../../environment.yml"
    threads: 1
    resources:
        mem_mb=1000,
    params:
        n=config["report"]["contact_sheet_samples"],
        # the data's drawing code and the sheet's own (synth.preview): an edit of the sheet's
        # layout redraws the sheets, not the shards
        code=job_code(SHEET_MODULES),
    script:
        "../scripts/contact_sheet.py"
