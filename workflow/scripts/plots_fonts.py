"""Snakemake adapter: accuracy by font for every experiment and Tesseract."""

from models.plots import plot_accuracy_by_font
from synth import joblog

joblog.start(snakemake.log[0])
plot_accuracy_by_font(list(snakemake.input), snakemake.output[0])
