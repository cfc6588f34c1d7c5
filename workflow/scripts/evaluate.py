"""Snakemake adapter: evaluate one experiment's checkpoint on one test split."""

import torch

from models.evaluate import EvalSpec, evaluate
from synth import joblog

joblog.start(snakemake.log[0])
torch.set_num_threads(snakemake.threads)
spec = EvalSpec.from_config(
    snakemake.wildcards.experiment,
    snakemake.wildcards.split,
    snakemake.params.eval,
    snakemake.params.device,
)
evaluate(
    snakemake.input.model,
    list(snakemake.input.shards),
    snakemake.output.metrics,
    snakemake.output.predictions,
    spec,
    train_info=snakemake.input.train,
)
