"""Snakemake adapter: grids of test samples with their readings (errors in red), one per split."""

import logging

from models.plots import plot_prediction_grid

logging.basicConfig(
    filename=snakemake.log[0], level=logging.INFO, format="%(levelname)s %(name)s: %(message)s"
)
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
