"""Snakemake adapter: one report table (crnn, hanzi or reader) from metrics.json files."""

import logging

from models.report import build_table

logging.basicConfig(
    filename=snakemake.log[0], level=logging.INFO, format="%(levelname)s %(name)s: %(message)s"
)
build_table(snakemake.params.kind, list(snakemake.input), snakemake.output[0])
