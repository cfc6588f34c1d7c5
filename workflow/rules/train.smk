# Training: one job per experiment, on its task's train and val shards. The job gets only the
# experiment's slice of the config (plus the task geometry, seed and device), so editing another
# experiment or task never reruns it. A killed job resumes from results/models/{experiment}/resume/
# (not an output: Snakemake leaves it alone); see models/train.py. The training locks
# results/models/{experiment}/train.lock (not an output either), so a job started while an orphaned
# training of the experiment still runs (after --unlock) fails at once instead of sharing its files.


rule train:
    input:
        charset=lambda w: charset_path(experiment_task(w.experiment)),
        train=lambda w: experiment_train_shards(w.experiment),
        val=lambda w: shard_paths(experiment_task(w.experiment), "val"),
        init=init_from_input,
    output:
        model=model_path("{experiment}"),
        history="results/models/{experiment}/history.csv",
        info="results/models/{experiment}/train.json",
    log:
        "logs/train/{experiment}.log",
    benchmark:
        "logs/train/{experiment}.benchmark.tsv"
    priority: train_priority
    conda:
        "../../environment.yml"
    threads: train_threads
    resources:
        gpu=lambda w: accelerator_jobs(),
        mem_mb=lambda w: experiment_config(w.experiment)["train"]["mem_mb"],
    params:
        spec=lambda w: canonical(train_params(w)),
        seed=lambda w: experiment_seed(w.experiment),
        device=config["device"],
    script:
        "../scripts/train.py"
