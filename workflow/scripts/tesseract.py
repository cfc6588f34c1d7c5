"""Snakemake adapter: Tesseract on the first samples of one task's test split."""

from models.tesseract import TesseractSpec, evaluate_tesseract
from synth import joblog
from synth.charset import read_charset

joblog.start(snakemake.log[0])
charset = read_charset(snakemake.input.charset)
spec = TesseractSpec.from_config(
    snakemake.wildcards.task,
    snakemake.wildcards.split,
    snakemake.params.tesseract,
    threads=snakemake.threads,
    charset=charset,
)
evaluate_tesseract(
    list(snakemake.input.shards),
    snakemake.output.metrics,
    snakemake.output.predictions,
    spec,
    charset=charset,
)
