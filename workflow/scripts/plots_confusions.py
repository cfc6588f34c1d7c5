"""Snakemake adapter: the most confused hanzi pairs of one experiment over both test splits."""

from models.plots import plot_confusions
from synth import joblog

joblog.start(snakemake.log[0])
plot_confusions(
    list(snakemake.input),
    snakemake.output[0],
    top=snakemake.params.top,
    title=f"{snakemake.wildcards.experiment}: most confused pairs (test splits)",
)
