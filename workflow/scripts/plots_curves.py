"""Snakemake adapter: training and validation curves of one experiment."""

import logging

from models.plots import plot_curves

logging.basicConfig(
    filename=snakemake.log[0], level=logging.INFO, format="%(levelname)s %(name)s: %(message)s"
)
plot_curves(snakemake.input[0], snakemake.output[0], title=snakemake.wildcards.experiment)
