"""Snakemake adapter: the reader's attention masks over its steps, one GIF per test sample."""

from models.plots import reader_attention_gifs
from synth import joblog

joblog.start(snakemake.log[0])
reader_attention_gifs(snakemake.input.model, list(snakemake.input.shards), list(snakemake.output))
