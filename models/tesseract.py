"""Tesseract 5 as the peer baseline, on the same test shards as our models.

The ``tesseract`` command line is run through `subprocess` (argument lists, no shell) on the
samples of a split in shard order: every one, as the models read, or the first ``max_samples``.
Several images go to one call: they are written as PNG files (padded with their own background,
which Tesseract's layout analysis needs) and named in a list file, and the ``tsv`` output, one page
per image, gives each image's words and their confidences. Calls run in parallel, one thread each
(``OMP_THREAD_LIMIT=1``).

Small images are scaled up first (``scale``, bicubic): Tesseract reads text best with capitals
at least 20 px high, and the short task's 40x40 images draw them 7-10 px high.

Readings are normalised as our labels are: NFKC (Tesseract's chi_sim model emits full-width
punctuation), and the spaces it puts next to hanzi (or any wide character) are removed, as the
line labels have none there; when the task's charset has no space (every task but a line task
with ``charset.space``), every space goes.

Without the ``tesseract`` binary (or its language data) the files are still written, with
``n = 0``, empty metrics and a ``status`` saying why, so the reports say so and the DAG completes.
``metrics.json`` and ``predictions.csv`` have the layout of `models.evaluate`.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import tempfile
import time
import unicodedata
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from models.cli import stops_on_interrupt
from models.evaluate import (
    Reading,
    Sample,
    iter_samples,
    out_folder_problem,
    prediction_rows,
    sample_metrics,
    shard_arguments_problem,
    write_metrics,
    write_predictions,
)
from models.progress import progress_bar
from synth.atomic import sha256_file
from synth.charset import SPACE, label_spaces

log = logging.getLogger(__name__)
# The folder of a call's images: hidden, and named so that a rerun finds a killed call's.
SCRATCH_PREFIX = ".tesseract-scratch-"

# The tasks Tesseract has settings for (config tesseract.<task>), with the schema's defaults.
# whitelist True: the task's charset; False: any character of the language model.
TASK_DEFAULTS: dict[str, dict[str, Any]] = {
    "hanzi": {"lang": "chi_sim", "psm": 10, "whitelist": False, "scale": 1.0},
    "expr": {"lang": "eng", "psm": 7, "whitelist": True, "scale": 1.5},
    "line": {"lang": "chi_sim", "psm": 7, "whitelist": False, "scale": 1.0},
    "short": {"lang": "eng", "psm": 7, "whitelist": True, "scale": 2.0},
}
TASKS = tuple(TASK_DEFAULTS)
TSV_COLUMNS = (
    "level",
    "page_num",
    "block_num",
    "par_num",
    "line_num",
    "word_num",
    "left",
    "top",
    "width",
    "height",
    "conf",
    "text",
)
WORD_LEVEL = 5


class TesseractError(RuntimeError):
    """A tesseract call that failed (names the command and its stderr)."""


@dataclass(frozen=True)
class TesseractSpec:
    """How Tesseract reads one task's split.

    Attributes:
        task: ``hanzi``, ``expr``, ``line`` or ``short``.
        split: The test split.
        lang: Language model (``chi_sim``, ``eng``).
        psm: Page segmentation mode (10 single character, 7 single line).
        whitelist: Characters Tesseract may output (empty: all).
        scale: Factor images are resized by (bicubic) before they are padded and read.
        max_samples: Samples read from the start of the split (None: every one).
        enabled: False writes the "disabled" files without running anything.
        executable: The ``tesseract`` command.
        images_per_call: Images per tesseract process.
        threads: Tesseract processes at once.
        pad: Border in px added around each image.
        timeout_s: Limit per call.
    """

    task: str
    split: str
    lang: str
    psm: int
    whitelist: str = ""
    scale: float = 1.0
    max_samples: int | None = None
    enabled: bool = True
    executable: str = "tesseract"
    images_per_call: int = 25
    threads: int = 1
    pad: int = 10
    timeout_s: float = 600.0

    @classmethod
    def from_config(
        cls,
        task: str,
        split: str,
        cfg: Mapping[str, Any],
        threads: int = 1,
        charset: Sequence[str] | None = None,
    ) -> TesseractSpec:
        """Build from the validated ``tesseract`` config section.

        Args:
            charset: The task's charset, which ``whitelist: true`` restricts readings to.

        Raises:
            ValueError: ``task`` has no ``tesseract.<task>`` settings, or ``whitelist`` is true
                and no charset is given.
        """
        if task not in TASKS:
            raise ValueError(f"tesseract: no settings for task {task!r}; valid: {', '.join(TASKS)}")
        task_cfg = {**TASK_DEFAULTS[task], **(cfg.get(task) or {})}
        whitelist = task_cfg["whitelist"]
        if whitelist is True:
            if charset is None:
                raise ValueError(
                    f"tesseract.{task}.whitelist is true (the task's charset), "
                    "but no charset was given"
                )
            whitelist = "".join(charset)
        elif whitelist is False or whitelist is None:
            whitelist = ""
        return cls(
            task=task,
            split=split,
            lang=str(task_cfg["lang"]),
            psm=int(task_cfg["psm"]),
            whitelist=str(whitelist),
            scale=float(task_cfg["scale"]),
            max_samples=None if cfg.get("max_samples") is None else int(cfg["max_samples"]),
            images_per_call=int(cfg.get("images_per_call", 25)),
            enabled=bool(cfg.get("enabled", True)),
            threads=max(1, int(threads)),
        )


def tesseract_version(executable: str = "tesseract") -> str | None:
    """``"5.3.0"`` (the first line of ``tesseract --version``), or None when it is not installed."""
    path = shutil.which(executable)
    if path is None:
        return None
    proc = subprocess.run(
        [path, "--version"], capture_output=True, text=True, check=False, timeout=60
    )
    text = (proc.stdout or proc.stderr).strip()
    m = re.search(r"tesseract\s+v?(\S+)", text)
    return m.group(1) if m else (text.splitlines()[0] if text else "unknown")


def _list_langs(executable: str) -> str | None:
    """What ``tesseract --list-langs`` prints (its folder, then a language a line), or None
    when Tesseract is not installed."""
    path = shutil.which(executable)
    if path is None:
        return None
    proc = subprocess.run(
        [path, "--list-langs"], capture_output=True, text=True, check=False, timeout=60
    )
    return proc.stdout + "\n" + proc.stderr


def available_languages(executable: str = "tesseract") -> set[str]:
    """The language models Tesseract has (``tesseract --list-langs``); empty if not installed."""
    lines = (_list_langs(executable) or "").splitlines()
    return {ln.strip() for ln in lines if ln.strip() and " " not in ln.strip()}


def traineddata(lang: str, executable: str = "tesseract") -> dict[str, str]:
    """The sha256 of each language model ``lang`` names (``chi_sim+eng``: both), in the folder
    ``tesseract --list-langs`` names: which ``fast`` or ``best`` model, of which release, read
    the images. A model not found there is left out."""
    try:
        listed = _list_langs(executable)
    except (OSError, subprocess.TimeoutExpired):
        return {}
    folder = re.search(r'"([^"]+)"', listed or "")
    if folder is None:
        return {}
    out = {}
    for name in lang.split("+"):
        model = Path(folder.group(1)) / f"{name}.traineddata"
        if model.is_file():
            out[name] = sha256_file(model)
    return out


def normalize_reading(text: str, keep_spaces: bool = False) -> str:
    """A Tesseract reading normalised like our labels.

    NFKC; whitespace next to a wide (CJK) character removed (chi_sim separates hanzi with
    spaces); then every other whitespace run removed, or with ``keep_spaces`` collapsed to one
    space. Leading and trailing whitespace goes.

    Examples:
        ``"中 国 ， 你好"`` -> ``"中国,你好"``; ``"１２ + 3\\n"`` -> ``"12+3"``.
    """
    text = label_spaces(unicodedata.normalize("NFKC", text))
    return text if keep_spaces else text.replace(SPACE, "")


def _prepared(image: Image.Image, scale: float, pad: int) -> Image.Image:
    """The image in grey, resized by ``scale`` (bicubic), with a border of ``pad`` px of its own
    background level (median of its border pixels)."""
    image = image.convert("L")
    if scale != 1.0:
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        image = image.resize(size, Image.Resampling.BICUBIC)
    if pad <= 0:
        return image
    arr = np.asarray(image)
    border = np.concatenate([arr[0], arr[-1], arr[:, 0], arr[:, -1]])
    level = int(np.median(border)) if border.size else 255
    canvas = Image.new("L", (image.width + 2 * pad, image.height + 2 * pad), level)
    canvas.paste(image, (pad, pad))
    return canvas


def parse_tsv(tsv: str, pages: int) -> list[tuple[str, float | None]]:
    """Tesseract ``tsv`` output -> ``(raw text, confidence in [0, 1])`` per page.

    Words of a page are joined by spaces in output order (reading order); a page without words
    reads ``""`` with confidence None.
    """
    words: list[list[tuple[str, float]]] = [[] for _ in range(pages)]
    for line in tsv.splitlines():
        cols = line.split("\t")
        if len(cols) < len(TSV_COLUMNS) or not cols[0].isdigit():
            continue  # the header, or a stray line
        if int(cols[0]) != WORD_LEVEL:
            continue
        text = "\t".join(cols[len(TSV_COLUMNS) - 1 :]).strip()
        if not text:
            continue
        page = int(cols[1]) - 1
        if not 0 <= page < pages:
            raise TesseractError(f"tesseract tsv names page {page + 1} of {pages}")
        words[page].append((text, float(cols[10])))
    out: list[tuple[str, float | None]] = []
    for ws in words:
        if not ws:
            out.append(("", None))
            continue
        conf = sum(max(c, 0.0) for _, c in ws) / len(ws) / 100.0
        out.append((" ".join(t for t, _ in ws), conf))
    return out


def _command(spec: TesseractSpec, executable: str, list_file: str) -> list[str]:
    cmd = [executable, list_file, "stdout", "--psm", str(spec.psm), "-l", spec.lang]
    if spec.whitelist:
        cmd += ["-c", f"tessedit_char_whitelist={spec.whitelist}"]
    return [*cmd, "tsv"]


def read_images(
    images: Sequence[Image.Image],
    spec: TesseractSpec,
    keep_spaces: bool = False,
    crashed: list[int] | None = None,
    scratch: str | os.PathLike | None = None,
) -> list[Reading]:
    """Run Tesseract on images (several per call, calls in parallel).

    Tesseract 5.3 dies of a signal on some images (SIGFPE at some scales): a call that does, or
    that hangs past ``spec.timeout_s``, is made again one image at a time, and an image whose
    own call dies or hangs too reads as nothing, a miss like any other (its index goes to
    ``crashed``, or a warning names it when ``crashed`` is None).

    The images go to a scratch folder (``.tesseract-scratch-*``) made in ``scratch`` (the system's
    temporary folder when None), removed when the call ends, however it ends but SIGKILL.

    Returns:
        One normalised `models.evaluate.Reading` per image (confidence: mean word confidence).

    Raises:
        TesseractError: A call exited with a status (not a signal's), naming the command and
            its stderr.
    """
    executable = shutil.which(spec.executable)
    if executable is None:
        raise TesseractError(f"{spec.executable!r} is not installed")
    env = {**os.environ, "OMP_THREAD_LIMIT": "1"}
    step = max(1, spec.images_per_call)
    # a call made again image by image gives each image its share of the call's limit
    image_timeout = max(min(30.0, spec.timeout_s), spec.timeout_s / step)
    chunks = [list(range(i, min(i + step, len(images)))) for i in range(0, len(images), step)]

    with tempfile.TemporaryDirectory(prefix=SCRATCH_PREFIX, dir=scratch) as tmp:

        def call(name: str, paths: list[str], timeout: float) -> subprocess.CompletedProcess | str:
            """One tesseract call on ``paths``; why not, when it died of a signal (or exited
            128 + a signal's number, as a wrapper script reports one) or hung."""
            list_file = os.path.join(tmp, f"{name}.txt")
            Path(list_file).write_text("\n".join(paths) + "\n", encoding="utf-8")
            cmd = _command(spec, executable, list_file)
            try:
                # Tesseract writes UTF-8 whatever the locale: decoded as the locale's encoding,
                # a Latin-1 locale would read each hanzi as three other characters
                proc = subprocess.run(
                    cmd, capture_output=True, encoding="utf-8", env=env, timeout=timeout
                )
            except subprocess.TimeoutExpired:
                return f"timed out after {timeout:g} s"
            if proc.returncode < 0 or proc.returncode > 128:
                signal_number = -proc.returncode if proc.returncode < 0 else proc.returncode - 128
                return f"died of signal {signal_number}"
            if proc.returncode != 0:
                raise TesseractError(
                    f"{' '.join(cmd)} exited with {proc.returncode}: {proc.stderr.strip()[-2000:]}"
                )
            return proc

        def run(chunk_id: int) -> list[tuple[str, float | None]]:
            names = []
            for i in chunks[chunk_id]:
                name = os.path.join(tmp, f"{i:06d}.png")
                _prepared(images[i], spec.scale, spec.pad).save(name)
                names.append(name)
            proc = call(f"chunk-{chunk_id:06d}", names, spec.timeout_s)
            if not isinstance(proc, str):
                return parse_tsv(proc.stdout, len(names))
            out: list[tuple[str, float | None]] = []
            for i, name in zip(chunks[chunk_id], names, strict=True):
                alone = call(f"image-{i:06d}", [name], image_timeout)
                if isinstance(alone, str):
                    if crashed is None:  # the caller names the sample
                        log.warning(
                            "tesseract %s reading image %d (at scale %g): read as nothing",
                            alone,
                            i,
                            spec.scale,
                        )
                    else:
                        crashed.append(i)
                    out.append(("", None))
                else:
                    out += parse_tsv(alone.stdout, 1)
            return out

        results = []
        desc = f"tesseract {spec.task} {spec.split}"
        with (
            progress_bar(len(images), " images", desc=desc) as bar,
            ThreadPoolExecutor(max_workers=spec.threads) as pool,
        ):
            for chunk_id, chunk_result in enumerate(pool.map(run, range(len(chunks)))):
                results.append(chunk_result)
                bar.update(len(chunks[chunk_id]))
    readings = []
    for chunk_result in results:
        for raw, conf in chunk_result:
            readings.append(Reading(normalize_reading(raw, keep_spaces), conf, []))
    return readings


def _base_record(spec: TesseractSpec, model: str, status: str) -> dict[str, Any]:
    return {
        "experiment": "tesseract",
        "model": model,
        "backbone": "lstm",
        "family": "tesseract",
        "task": spec.task,
        "split": spec.split,
        "status": status,
        "lang": spec.lang,
        "psm": spec.psm,
        "whitelist": spec.whitelist,
        "scale": spec.scale,
    }


def evaluate_tesseract(
    shards: Sequence[str | os.PathLike],
    metrics_path: str | os.PathLike,
    predictions_path: str | os.PathLike,
    spec: TesseractSpec,
    charset: Sequence[str] | None = None,
    longest: int = 0,
    placeholder: bool = True,
) -> dict[str, Any]:
    """Read a split's samples (the first ``spec.max_samples``, if set) with Tesseract; write
    ``metrics.json`` and ``predictions.csv`` like `models.evaluate.evaluate`.

    Args:
        shards: The split's shards, in order.
        metrics_path: Where ``metrics.json`` goes.
        predictions_path: Where ``predictions.csv`` goes.
        spec: Language, page segmentation, whitelist, sample count.
        charset: The task's charset: spaces in readings are kept only if it has a space, and a
            label outside it is an error. None checks no label, and keeps spaces when a label
            holds one.
        longest: The longest label the compared model reads (0: no bound); longer is an error.
        placeholder: When Tesseract cannot run (disabled, not installed, no language data),
            write an empty ``predictions.csv`` and a ``metrics.json`` that says why (the
            workflow's reports show the row); without, write nothing.

    Returns:
        The ``metrics.json`` record (``status`` is ``ok``, or says why nothing ran).
    """
    version = tesseract_version(spec.executable) if spec.enabled else None
    status = "ok"
    if not spec.enabled:
        status = "disabled in the config (tesseract.enabled: false)"
    elif version is None:
        status = f"not installed ({spec.executable!r} is not on PATH)"
    elif spec.lang not in available_languages(spec.executable):
        status = f"language data {spec.lang!r} not installed"
    if status != "ok":
        log.warning("tesseract %s/%s: %s", spec.task, spec.split, status)
        label = "tesseract (disabled)" if not spec.enabled else "tesseract (not installed)"
        record = _base_record(spec, label, status)
        record.update({"n": 0, "device": "cpu", "eval_img_per_s": None, "per_font": {}})
        if placeholder:  # the workflow's rows that say so; the command writes nothing
            write_predictions(predictions_path, [], spec.task)
            write_metrics(metrics_path, record)
        return record

    # With the charset, a label outside it stops the run naming its shard and sample, as a
    # model's evaluation does: a shard of another task is not scored as misreadings.
    samples: list[Sample] = list(
        iter_samples(
            shards, limit=spec.max_samples, task=spec.task, charset=charset, longest=longest
        )
    )
    if not samples:
        raise ValueError(f"no samples in the shards of {spec.task}/{spec.split}")
    # Spaces are kept where a reading may hold them: a charset with the space, or without a
    # charset (the command line's, without --charset) labels that hold one.
    keep_spaces = " " in charset if charset is not None else any(" " in s.label for s in samples)
    start = time.perf_counter()
    crashed: list[int] = []
    # The scratch images beside the outputs, not in /tmp: a killed job's are removed by its rerun
    # (one job writes a split's outputs at a time).
    scratch = Path(metrics_path).parent
    scratch.mkdir(parents=True, exist_ok=True)
    for stale in scratch.glob(f"{SCRATCH_PREFIX}*"):
        shutil.rmtree(stale, ignore_errors=True)
    readings = read_images([s.image for s in samples], spec, keep_spaces, crashed, scratch)
    wall = time.perf_counter() - start
    for i in sorted(crashed):
        log.warning(
            "tesseract %s/%s: sample %r read as nothing (tesseract died or hung on it)",
            spec.task,
            spec.split,
            samples[i].key,
        )

    record = _base_record(spec, f"tesseract {version}", status)
    record["traineddata"] = traineddata(spec.lang, spec.executable)
    scores = sample_metrics(samples, readings, spec.task, with_topk=spec.task == "hanzi")
    per_font = scores.pop("per_font")
    per_file = scores.pop("per_font_file", None)
    if spec.task == "hanzi":
        # One reading per image: a top-5 figure would only repeat top-1.
        scores["top5"] = None
        for font_scores in [*per_font.values(), *(per_file or {}).values()]:
            font_scores["top5"] = None
    record.update(scores)
    record.update(
        {
            "per_font": per_font,
            **({} if per_file is None else {"per_font_file": per_file}),
            "crashed": len(crashed),
            "eval_img_per_s": len(samples) / wall if wall > 0 else None,
            "eval_wall_s": wall,
            "device": "cpu",
            "threads": spec.threads,
            "params_m": None,
            # no training run, and no decoder of ours: Tesseract's reading is its own (lang, psm)
            "seed": None,
            "decoder": None,
            "train_shards": None,
            "budget_steps": None,
            "train_steps": None,
            "train_wall_s": None,
        }
    )
    write_predictions(predictions_path, prediction_rows(samples, readings, spec.task), spec.task)
    write_metrics(metrics_path, record)
    log.info(
        "tesseract %s/%s: n=%d seq_acc=%.4f (%.1f img/s)",
        spec.task,
        spec.split,
        record["n"],
        record["seq_acc"],
        record["eval_img_per_s"] or 0.0,
    )
    return record


@stops_on_interrupt("models.tesseract")
def main(argv: Sequence[str] | None = None) -> int:
    """``python -m models.tesseract SHARD... --out DIR (--checkpoint M | --task T)``: Tesseract
    on shards (the workflow's, or a user's from `models.pack`), scored as `models.evaluate`
    scores a model, so the two can be set side by side. Returns the exit status."""
    import argparse
    import sys

    from models.checkpoint import CheckpointError
    from models.cli import (
        non_negative_int,
        page_segmentation_mode,
        positive_scale,
        process_count,
    )
    from models.export import ExportError

    parser = argparse.ArgumentParser(
        prog="python -m models.tesseract",
        description="Read shards with Tesseract, with the settings the workflow uses for their "
        "task (tesseract.<task>): writes metrics.json and predictions.csv as models.evaluate does.",
    )
    parser.add_argument("shards", nargs="+", help="shard files (.tar), read in the order given")
    parser.add_argument("--out", required=True, help="folder for metrics.json and predictions.csv")
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument(
        "--checkpoint",
        help="the model to compare with (model.pt or an .onnx export): its task and charset "
        "(the whitelist)",
    )
    which.add_argument("--task", choices=TASKS, help="the shards' task")
    parser.add_argument(
        "--charset",
        help="with --task: charset file (the whitelist, when on; a label outside it is an "
        "error; spaces are kept in readings when it holds one; without it, when a label does)",
    )
    parser.add_argument("--lang", help="language model (default: the task's)")
    parser.add_argument(
        "--psm", type=page_segmentation_mode, help="page segmentation mode (0 to 13)"
    )
    parser.add_argument(
        "--scale", type=positive_scale, help="resize factor before reading (above 0, at most 16)"
    )
    parser.add_argument(
        "--no-whitelist", action="store_true", help="let Tesseract output any character"
    )
    parser.add_argument(
        "--max-samples", type=non_negative_int, default=0, help="read the first N (0: all)"
    )
    parser.add_argument("--threads", type=process_count, default=1, help="tesseract processes")
    parser.add_argument(
        "--split", help="name recorded in metrics.json (default: the first shard's)"
    )
    args = parser.parse_args(argv)
    if args.checkpoint and args.charset:  # the model's charset is the whitelist
        parser.error("argument --charset: not allowed with argument --checkpoint")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    split = args.split or Path(args.shards[0]).name.rsplit("-", 1)[0]
    try:
        if args.checkpoint:
            from models.export import read_model_meta
            from models.families import make_family

            meta = read_model_meta(args.checkpoint)
            task, charset = meta.task, list(meta.charset)
            longest = make_family(meta.model, meta.charset, meta.model_kwargs).longest_label
        else:
            from synth.charset import read_charset

            task, longest = args.task, 0
            charset = read_charset(args.charset) if args.charset else None
        overrides = {"lang": args.lang, "psm": args.psm, "scale": args.scale}
        task_cfg = {k: v for k, v in overrides.items() if v is not None}
        if args.no_whitelist:
            task_cfg["whitelist"] = False
        elif TASK_DEFAULTS[task]["whitelist"] is True and charset is None:
            raise ValueError(
                f"Tesseract reads {task} with the task's charset as whitelist: give --charset "
                "or --checkpoint, or --no-whitelist"
            )
        cfg = {task: task_cfg, "max_samples": args.max_samples or None}
        spec = TesseractSpec.from_config(task, split, cfg, args.threads, charset)
        problem = shard_arguments_problem(args.shards) or out_folder_problem(args.out)
        if problem:
            raise ValueError(problem)
        out = Path(args.out)
        record = evaluate_tesseract(
            args.shards,
            out / "metrics.json",
            out / "predictions.csv",
            spec,
            charset,
            longest,
            placeholder=False,  # a failed run leaves --out as it was
        )
    except (CheckpointError, ExportError, ValueError, OSError, TesseractError) as e:
        print(f"{parser.prog}: error: {e}", file=sys.stderr)
        return 1
    if record["status"] != "ok":
        print(f"{parser.prog}: error: tesseract {record['status']}", file=sys.stderr)
        return 1
    shown = ("n", "seq_acc", "cer", "top1", "value_acc")  # as models.evaluate prints them
    print(" ".join(f"{k}={record[k]:.4g}" for k in shown if record.get(k) is not None))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
