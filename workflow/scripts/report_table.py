"""Snakemake adapter: one report table (crnn, hanzi or reader) from metrics.json files."""

from models.report import build_table
from synth import joblog

joblog.start(snakemake.log[0])
build_table(snakemake.params.kind, list(snakemake.input), snakemake.output[0])
