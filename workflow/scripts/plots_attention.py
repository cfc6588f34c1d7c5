"""Snakemake adapter: the reader's attention masks over its steps, one GIF per test sample."""

import logging

from models.plots import reader_attention_gifs

logging.basicConfig(
    filename=snakemake.log[0], level=logging.INFO, format="%(levelname)s %(name)s: %(message)s"
)
reader_attention_gifs(snakemake.input.model, list(snakemake.input.shards), list(snakemake.output))
