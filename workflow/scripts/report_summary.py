"""Snakemake adapter: results/summary.md from the metrics files and the config's references."""

import logging

from models.report import build_reports

logging.basicConfig(
    filename=snakemake.log[0], level=logging.INFO, format="%(levelname)s %(name)s: %(message)s"
)
build_reports(
    list(snakemake.input.crnn),
    list(snakemake.input.hanzi),
    list(snakemake.input.reader),
    snakemake.params.references,
    snakemake.output[0],
    plots=list(snakemake.input.plots),
    targets=snakemake.params.targets,
)
