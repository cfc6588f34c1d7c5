"""Snakemake adapter: train one experiment (models.train)."""

import sys
from pathlib import Path

import torch

from models.specs import TrainJob, TrainSpec
from models.train import STOPPED, TrainingStopped, train
from synth import joblog

log = joblog.start(snakemake.log[0], "%(asctime)s %(levelname)s %(name)s: %(message)s")
torch.set_num_threads(snakemake.threads)
exp = snakemake.params.spec["experiment"]
name = snakemake.wildcards.experiment
job = TrainJob(
    experiment=name,
    task=exp["task"],
    model=exp["model"],
    model_kwargs=exp["model_kwargs"],
    train=TrainSpec.from_config(exp["train"], where=f"experiments.{name}.train"),
    seed=snakemake.params.seed,
    device=snakemake.params.device,
    charset=snakemake.input.charset,
    train_shards=tuple(snakemake.input.train),
    val_shards=tuple(snakemake.input.val),
    out_dir=str(Path(snakemake.output.model).parent),
)
try:
    train(job)
except TrainingStopped as e:  # SIGTERM: a time limit, pre-emption; the state is saved
    log.error("%s", e)
    sys.exit(STOPPED)
