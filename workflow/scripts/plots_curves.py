"""Snakemake adapter: training and validation curves of one experiment."""

from models.plots import plot_curves
from synth import joblog

joblog.start(snakemake.log[0])
plot_curves(snakemake.input[0], snakemake.output[0], title=snakemake.wildcards.experiment)
