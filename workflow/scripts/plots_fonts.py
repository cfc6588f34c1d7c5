"""Snakemake adapter: accuracy by font for every experiment and Tesseract."""

import logging

from models.plots import plot_accuracy_by_font

logging.basicConfig(
    filename=snakemake.log[0], level=logging.INFO, format="%(levelname)s %(name)s: %(message)s"
)
plot_accuracy_by_font(list(snakemake.input), snakemake.output[0])
