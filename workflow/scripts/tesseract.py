"""Snakemake adapter: Tesseract on the first samples of one task's test split."""

import logging

from models.tesseract import TesseractSpec, evaluate_tesseract
from synth.charset import read_charset

logging.basicConfig(
    filename=snakemake.log[0], level=logging.INFO, format="%(levelname)s %(name)s: %(message)s"
)
spec = TesseractSpec.from_config(
    snakemake.wildcards.task,
    snakemake.wildcards.split,
    snakemake.params.tesseract,
    threads=snakemake.threads,
)
evaluate_tesseract(
    list(snakemake.input.shards),
    snakemake.output.metrics,
    snakemake.output.predictions,
    spec,
    charset=read_charset(snakemake.input.charset),
)
