"""Snakemake adapter: the most confused hanzi pairs of one experiment over both test splits."""

import logging

from models.plots import plot_confusions

logging.basicConfig(
    filename=snakemake.log[0], level=logging.INFO, format="%(levelname)s %(name)s: %(message)s"
)
plot_confusions(
    list(snakemake.input),
    snakemake.output[0],
    top=snakemake.params.top,
    title=f"{snakemake.wildcards.experiment}: most confused pairs (test splits)",
)
