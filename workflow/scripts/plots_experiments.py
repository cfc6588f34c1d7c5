"""Snakemake adapter: every experiment's headline accuracy, seen and held-out, beside Tesseract."""

from models.plots import plot_accuracy_by_experiment
from synth import joblog

joblog.start(snakemake.log[0])
plot_accuracy_by_experiment(list(snakemake.input), snakemake.output[0])
