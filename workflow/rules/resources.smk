# Two GPU jobs never share one GPU on one machine, with or without a profile: unless --resources
# gpu=N (or a profile's `resources`) says how many GPUs there are, a local run has one. Training
# and evaluation declare gpu=1 on a GPU (common.smk's accelerator_jobs). On a cluster
# (--executor slurm) nothing is set here: the executor gives each job a GPU of its own.
from snakemake.resources import Resource

if workflow.local_exec and "gpu" not in workflow.global_resources:
    workflow.global_resources["gpu"] = Resource("gpu", 1)
