"""Prepare the GPU device check: everything ``run.sh`` needs that the device machine lacks.

Run here (a machine with the project's environment, its fonts and pip's access to PyPI); it fills
``.devcheck/`` in the repository root (ignored by git; carried to the device by the ``run`` call,
``carry: [".devcheck"]``):

- ``config.yaml``: ``configs/gpu.yaml`` with small splits (``SAMPLES`` below); every task setting
  and every experiment's model and training settings are gpu.yaml's (``run.sh`` shortens the
  steps per stage);
- ``data.tar.xz``: ``results/charsets/{task}.txt`` and the train, val and test_heldout shards
  ``results/shards/{task}/{split}-NNNNNN.tar`` of that config, rendered by the workflow itself
  (Snakemake, build folder ``bench/out/device_check``) with the fonts installed here; xz shrinks
  the stored PNGs and the tar padding to a fraction, and ``run.sh`` unpacks it on the device;
- in ``data.tar.xz`` too, ``devfonts/``: the faces the shards of ``RENDER_TASKS`` are drawn
  with, each cut down to the characters it covers (``kit.py fonts``), and ``faces.json``: from
  them ``run.sh``'s render stage draws those tasks' shards at gpu.yaml's full size on the
  device's cores, the workflow's images byte for byte, for the full-size reader and expr runs;
- ``wheels/``: the packages the training, evaluation and export code imports that the device's
  image lacks (``WHEELS``), at the versions installed here, built for CPython 3.12 on
  manylinux x86-64 (the device's python3);
- ``MANIFEST.json``: what was built, from which commit, and the sizes.

    .venv/bin/python bench/device_check/prepare.py            # about 3-5 min on 2 cores
    .venv/bin/python bench/device_check/prepare.py --cores 8 --skip-wheels

The folder must stay under the ``run`` tool's 64 MiB (with the ~1 MiB tracked tree): the script
stops with an error above ``--max-mib``.
"""

from __future__ import annotations

import argparse
import copy
import datetime
import hashlib
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import yaml

from synth.atomic import write_text_atomic

ROOT = Path(__file__).resolve().parents[2]
KIT = ROOT / ".devcheck"
BUILD = ROOT / "bench" / "out" / "device_check"
BASE_CONFIG = ROOT / "configs" / "gpu.yaml"
TASKS = ("hanzi", "expr", "line", "short")
SPLITS = ("train", "val", "test_heldout")  # test_seen is not used on the device

# Shards per split: (shards, samples per shard). Training resamples its shards, so 1500 images
# measure throughput as well as the full set would. The full-size runs (run.sh's reader and expr
# stages) train on shards the device draws itself from the carried faces (``RENDER_TASKS``):
# the first kit carried 20,000 of the reader's images, the second 120,000, where gpu.yaml draws
# 320,000 (BENCHMARKS.md, "Device check").
SAMPLES = {
    "hanzi": {"train": (1, 1500), "val": (1, 512), "test_heldout": (1, 512)},
    "expr": {"train": (1, 1500), "val": (1, 256), "test_heldout": (1, 256)},
    "line": {"train": (1, 1500), "val": (1, 256), "test_heldout": (1, 256)},
    "short": {"train": (1, 1500), "val": (1, 1000), "test_heldout": (1, 2000)},
}
# Tasks whose faces travel (cut down to their few characters, 7.7 MiB for both, 1.8 after xz)
# so that the device draws their shards at full size: hanzi and line faces hold thousands of
# glyphs each, too many for the run call's 64 MiB.
RENDER_TASKS = ("expr", "short")
FONTS = "devfonts"  # in BUILD, and in data.tar.xz

# What models.train, models.evaluate, models.export, models.data and bench/bench_train.py import
# that the device's image (KINDS.md's package list) does not hold, with the dependencies of
# each that it lacks too (jsonschema's; webdataset's numpy and pyyaml, and the attrs and
# typing-extensions of jsonschema and referencing, are there). jieba is imported only where a
# line charset is built from its dictionary (synth.charset.jieba_dict_path, the charset job):
# the charsets travel built, so nothing on the device imports it.
WHEELS = (
    "webdataset",
    "braceexpand",
    "jsonschema",
    "jsonschema-specifications",
    "referencing",
    "rpds-py",
    "rapidfuzz",
)
# pip download's platform tags for the device's CPython 3.12 on x86-64 (the device README's)
PLATFORMS = (
    "manylinux_2_28_x86_64",
    "manylinux_2_27_x86_64",
    "manylinux_2_17_x86_64",
    "manylinux2014_x86_64",
    "manylinux1_x86_64",
)


def derived_config() -> dict:
    """gpu.yaml with ``SAMPLES``'s splits (test_seen one small shard, never built)."""
    config = yaml.safe_load(BASE_CONFIG.read_text(encoding="utf-8"))
    out = copy.deepcopy(config)
    for task in TASKS:
        splits = out["tasks"][task]["splits"]
        for split in splits:
            shards, samples = SAMPLES[task].get(split, (1, 16))
            splits[split]["shards"], splits[split]["samples"] = shards, samples
    return out


def targets() -> list[str]:
    """The workflow's outputs the device needs: charsets and the shards of ``SPLITS``."""
    paths = [f"results/charsets/{task}.txt" for task in TASKS]
    for task in TASKS:
        for split in SPLITS:
            shards, _ = SAMPLES[task][split]
            paths += [f"results/shards/{task}/{split}-{i:06d}.tar" for i in range(shards)]
    return paths


def build(config_path: Path, cores: int) -> None:
    """Render the targets with Snakemake in ``BUILD`` (reruns only what changed)."""
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    )
    cmd = [
        sys.executable, "-m", "snakemake", *targets(),
        "--snakefile", str(ROOT / "Snakefile"),
        "--configfile", str(config_path),
        "--directory", str(BUILD),
        "--cores", str(cores),
        "--rerun-incomplete",
        "--quiet", "rules",
    ]  # fmt: skip
    BUILD.mkdir(parents=True, exist_ok=True)
    subprocess.run(cmd, check=True, cwd=ROOT, env=env)


def cut_fonts(config_path: Path) -> None:
    """``FONTS`` in ``BUILD``: the faces of ``RENDER_TASKS``, cut down (``kit.py fonts``)."""
    shutil.rmtree(BUILD / FONTS, ignore_errors=True)
    cmd = [
        sys.executable, str(ROOT / "bench" / "device_check" / "kit.py"), "fonts",
        "--results", str(BUILD / "results"), "--config", str(config_path),
        "--dest", str(BUILD / FONTS), "--tasks", *RENDER_TASKS,
    ]  # fmt: skip
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    subprocess.run(cmd, check=True, cwd=ROOT, env=env)


def pack(path: Path) -> None:
    """``targets()`` and ``FONTS`` into an xz tarball (multi-threaded xz when the command
    exists)."""
    tmp = path.with_suffix(".tmp")
    names = [*targets(), FONTS]
    try:
        proc = subprocess.run(
            f"tar --sort=name --mtime=@0 --owner=0 --group=0 -cf - {' '.join(names)} "
            f"| xz -T0 -6 > {tmp}",
            shell=True,
            cwd=BUILD,
            check=False,
        )
        if proc.returncode != 0:
            raise OSError(f"tar | xz exited {proc.returncode}")
    except OSError:
        with tarfile.open(tmp, "w:xz", preset=6) as tar:
            for name in names:
                tar.add(BUILD / name, arcname=name)
    tmp.replace(path)


def download_wheels(folder: Path) -> list[str]:
    """The ``WHEELS`` at this environment's versions, for cp312 manylinux x86-64."""
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.whl"):
        old.unlink()
    pins = [f"{name}=={importlib.metadata.version(name)}" for name in WHEELS]
    cmd = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
        "--python-version", "3.12", "--implementation", "cp",
        *[arg for p in PLATFORMS for arg in ("--platform", p)],
        "-d", str(folder), "-q", *pins,
    ]  # fmt: skip
    subprocess.run(cmd, check=True)
    return sorted(p.name for p in folder.glob("*.whl"))


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cores", type=int, default=os.cpu_count() or 1, help="Snakemake cores")
    parser.add_argument("--skip-wheels", action="store_true", help="keep .devcheck/wheels as is")
    parser.add_argument("--max-mib", type=float, default=60.0, help="size limit of .devcheck/")
    args = parser.parse_args()
    KIT.mkdir(exist_ok=True)
    config = derived_config()
    config_path = KIT / "config.yaml"
    header = (
        "# configs/gpu.yaml with small splits, written by bench/device_check/prepare.py for the\n"
        "# device check (bench/device_check/run.sh); do not edit: rerun prepare.py.\n"
    )
    write_text_atomic(
        config_path, header + yaml.safe_dump(config, sort_keys=False, allow_unicode=True)
    )
    build(config_path, args.cores)
    cut_fonts(config_path)
    pack(KIT / "data.tar.xz")
    wheels = (
        sorted(p.name for p in (KIT / "wheels").glob("*.whl"))
        if args.skip_wheels
        else download_wheels(KIT / "wheels")
    )
    commit = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=False
    ).stdout.strip()
    shard_bytes = {
        name: (BUILD / name).stat().st_size for name in targets() if name.endswith(".tar")
    }
    manifest = {
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "commit": commit,
        "base_config": str(BASE_CONFIG.relative_to(ROOT)),
        "samples": {t: {s: list(v) for s, v in SAMPLES[t].items()} for t in TASKS},
        "shards_bytes": sum(shard_bytes.values()),
        "fonts": {
            "tasks": list(RENDER_TASKS),
            "bytes": sum(p.stat().st_size for p in (BUILD / FONTS).rglob("*") if p.is_file()),
        },
        "data_tar_xz": {
            "bytes": (KIT / "data.tar.xz").stat().st_size,
            "sha256": sha256(KIT / "data.tar.xz"),
        },
        "wheels": wheels,
        "python_here": sys.version.split()[0],
    }
    write_text_atomic(KIT / "MANIFEST.json", json.dumps(manifest, indent=2) + "\n")
    total = folder_bytes(KIT)
    print(
        f"{KIT}: {total / 2**20:.1f} MiB (shards {manifest['shards_bytes'] / 2**20:.1f} MiB "
        f"uncompressed, data.tar.xz {manifest['data_tar_xz']['bytes'] / 2**20:.1f} MiB, "
        f"{len(wheels)} wheels)"
    )
    if total > args.max_mib * 2**20:
        sys.exit(f"error: {KIT} is {total / 2**20:.1f} MiB, over --max-mib {args.max_mib}")


if __name__ == "__main__":
    main()
