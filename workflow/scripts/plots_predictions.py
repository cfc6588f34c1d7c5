"""Snakemake adapter: grids of test samples with their readings (errors in red), one per split."""

from models.plots import plot_prediction_grid
from synth import joblog

joblog.start(snakemake.log[0])
experiment = snakemake.wildcards.experiment
for split, shards, predictions, out in zip(
    snakemake.params.splits,
    snakemake.params.shards,
    snakemake.input.predictions,
    snakemake.output,
    strict=True,
):
    plot_prediction_grid(
        shards, predictions, out, n=snakemake.params.n, title=f"{experiment} on {split}"
    )
