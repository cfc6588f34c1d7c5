"""Snakemake adapter: pack one own_tests labels file into its shard (models.pack)."""

import sys
from pathlib import Path

from models.pack import LabelCheck, ctc_frames, pack
from synth import joblog
from synth.charset import read_charset

joblog.start(snakemake.log[0])
models = [tuple(m) for m in snakemake.params.ctc_models]
check = LabelCheck(
    frozenset(read_charset(snakemake.input.charset)),
    longest=snakemake.params.longest,
    task=snakemake.params.task,
    frames=ctc_frames(models) if models else None,
)
pack(
    snakemake.input.labels,
    Path(snakemake.output.shard).parent,
    split=snakemake.wildcards.split,
    check=check,
    samples_per_shard=sys.maxsize,  # one shard: the output this rule declares
)
