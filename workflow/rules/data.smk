# Data: fonts -> charsets -> coverage table -> shards (one job each) -> manifests and contact sheets.
# Each rule passes its script only the config slice it needs, so changing one task's settings
# reruns only that task's shards.


from synth.specs import canonical


rule charset:
    input:
        files=lambda w: config["tasks"][w.task]["charset"]["files"],
        fonts=TRAIN_FONT_FILES,
    output:
        charset_path("{task}"),
    log:
        "logs/charset/{task}.log",
    conda:
        "../../environment.yml"
    threads: 1
    resources:
        mem_mb=1000,
    params:
        charset=lambda w: canonical(config["tasks"][w.task]["charset"]),
        exclude_families=lambda w: config["tasks"][w.task]["exclude_families"],
        fonts=canonical(config["fonts"]),
    script:
        "../scripts/charset.py"


rule coverage:
    input:
        charsets=[charset_path(task) for task in TASKS],
        fonts=FONT_FILES,
    output:
        COVERAGE,
    log:
        "logs/coverage.log",
    conda:
        "../../environment.yml"
    threads: 1
    resources:
        mem_mb=2000,
    params:
        tasks=TASKS,
        fonts=canonical(config["fonts"]),
    script:
        "../scripts/coverage.py"


rule shard:
    input:
        charset=charset_path("{task}"),
        coverage=COVERAGE,
    output:
        "results/shards/{task}/{split}-{shard}.tar",
    log:
        "logs/shard/{task}/{split}-{shard}.log",
    priority: shard_priority
    conda:
        "../../environment.yml"
    threads: 1
    resources:
        mem_mb=1500,
    params:
        task=lambda w: canonical(shard_config(w.task, w.split)),
        samples=lambda w: config["tasks"][w.task]["splits"][w.split]["samples"],
        seed=config["seed"],
    script:
        "../scripts/shard.py"


rule manifest:
    input:
        lambda w: all_shard_paths(w.task),
    output:
        "results/shards/{task}/manifest.tsv",
    log:
        "logs/manifest/{task}.log",
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
        coverage=COVERAGE,
    output:
        report(
            "results/samples/{task}.png",
            caption="../report/samples.rst",
            category="Data",
            labels={"task": "{task}"},
        ),
    log:
        "logs/contact_sheet/{task}.log",
    conda:
        "../../environment.yml"
    threads: 1
    resources:
        mem_mb=1000,
    params:
        n=config["report"]["contact_sheet_samples"],
    script:
        "../scripts/contact_sheet.py"
