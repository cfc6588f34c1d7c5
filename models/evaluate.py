"""Evaluation: a checkpoint and a task's test shards -> ``predictions.csv`` and ``metrics.json``.

The workflow's ``evaluate`` rule calls `evaluate`; so does the command line, for a checkpoint on
any shards of its task (your own fonts' shards, say)::

    python -m models.evaluate results/models/expr_crnn/model.pt my/test-*.tar --out my/eval

The shards are streamed in order (no shuffling), so row ``i`` of ``predictions.csv`` is sample
``i`` of the split, and Tesseract (`models.tesseract`) reads the same samples in the same order.

``metrics.json`` (every report is built from these files, never from logs)::

    {"experiment": "line_crnn_vgg", "model": "crnn_vgg", "backbone": "vgg", "family": "ctc",
     "task": "line", "split": "test_heldout", "n": 1000,
     "seq_acc": 0.91, "cer": 0.012, "ned": 0.011,        # every family
     "top1": ..., "top5": ...,                           # classification
     "value_acc": ...,                                   # expr
     "per_font": {"WenQuanYi Zen Hei": {"n": 500, "seq_acc": ..., ...}, ...},
     "per_font_file": {"wqy-zenhei.ttc": {"n": 600, ...}, ...},  # the font files' (not own tests)
     "eval_img_per_s": 812.0, "eval_wall_s": 1.2, "device": "cuda", "decoder": "greedy",
     "batch_size": 128, "params_m": 4.2, "seed": 20171204, "train_shards": 8,
     "budget_steps": 3000, "train_steps": 3000, "train_wall_s": 610.0,
     "train_settings": {"batch_size": 32, "lr": 0.002}}

``seed`` is the run's training seed (its ``train.json``; null without one): seed copies of an
experiment differ by it alone. ``train_shards`` is how many training shards the run read (its
``train.json``'s: ``train.shards``, or all of the split's; null without it). ``budget_steps`` is
the steps the run was configured for (its ``train.steps``), ``train_steps`` those it ran: fewer
when early stopping ended it.
``train_settings`` holds the run's other training settings that differ from their defaults
(`models.specs.distinct_settings`). ``decoder`` is the one the readings were decoded with (the
classifier's, an argmax over its classes, always ``greedy``).

With ``"decoder": "grammar"`` also ``"grammar"``: what the readings were held to, ``"evaluates"``
(any expression that parses) or the task's settings (``{"operand_counts": [2, 3, 4],
"max_digits": 2, "operators": "+-*"}``, `synth.text.DrawnExpressionGrammar`).

Undefined numbers (a metric of zero samples, a training time the checkpoint does not record)
are ``null``. ``predictions.csv`` has one row per sample: ``index, key, font, label, reading,
confidence, correct, edit_distance, top_k`` (JSON ``[[text, probability], ...]``), and for
``expr`` also ``value, reading_value, value_correct``.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
import sys
import tarfile
import time
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from models import metrics
from models.cli import stops_on_interrupt, thread_count
from models.images import ImageLoadError, decode_png, label_proportion_problem
from models.progress import progress_bar
from models.registry import DECODERS
from synth.atomic import output_folder_why, write_text_atomic
from synth.charset import SPACE, SPACE_HINT
from synth.shards import iter_records, json_kind, record_json, record_text
from synth.text import ExpressionError, Value, expression_value, value_json
from synth.text import evaluate as evaluate_expression

log = logging.getLogger(__name__)

PREDICTION_COLUMNS = (
    "index",
    "key",
    "font",
    "label",
    "reading",
    "confidence",
    "correct",
    "edit_distance",
    "top_k",
)
EXPR_COLUMNS = ("value", "reading_value", "value_correct")


@dataclass(frozen=True)
class Sample:
    """One test sample read back from a shard.

    Attributes:
        key: The sample's key in its shard.
        image: The grayscale image (mode ``L``).
        label: Its text (NFKC, as written).
        font: The face it was rendered with (``""`` when the shard does not say).
        value: For expressions, the label's value (computed from the label, and checked against
            the shard's ``value`` when it has one).
        meta: The whole JSON record.
    """

    key: str
    image: Image.Image
    label: str
    font: str
    value: Value | None = None
    meta: Mapping[str, Any] = field(default_factory=dict)


def iter_samples(
    shards: Sequence[str | os.PathLike],
    limit: int | None = None,
    task: str | None = None,
    charset: Collection[str] | None = None,
    longest: int = 0,
    values: bool = True,
) -> Iterator[Sample]:
    """Stream a split's samples in shard order, then in order within each shard.

    Args:
        shards: Shard paths (WebDataset tars of ``{key}.png`` + ``{key}.json``, the JSON with
            ``text``, ``font`` and for expressions ``value``; see `synth.shards`).
        limit: Stop after this many samples (None: all).
        task: ``expr`` fills in `Sample.value`, the label's value.
        charset: When given, a label with a character outside it is an error: a model cannot
            read what it has no class for, and scoring it as a miss would hide a wrong shard.
        longest: When not 0, a label longer than this is an error too, for the same reason (the
            hanzi classifier reads one character, the reader ``max_len``).
        values: False leaves an ``expr`` label's value unread (None), for a reader of the images
            alone (int8 calibration): the other task's label then stops nothing.

    Raises:
        ValueError: A record without an image or a ``text``, an image or JSON that cannot be
            decoded, an image far longer than its label (`label_proportion_problem`), a label
            outside ``charset``; for ``expr``, a label that does not evaluate
            (malformed, or dividing by zero) or whose value differs from the record's ``value``
            (each naming the shard and key). `synth.shards.ShardReadError` (a ValueError): a
            shard that is not a readable tar.
    """
    if limit is not None and limit <= 0:
        return
    known = set(charset) if charset is not None else None
    count = 0
    warned: set[str] = set()
    for shard in shards:
        for record in iter_records(shard):
            key = record["__key__"]
            where = f"shard {shard}: sample {key!r}"
            lacking = [f".{part}" for part in ("png", "json") if part not in record]
            if lacking:
                has = ", ".join(f".{ext}" for ext in sorted(record) if ext != "__key__")
                raise ValueError(
                    f"{where} lacks its {' and '.join(lacking)} member"
                    f"{'s' if len(lacking) > 1 else ''} (it has {has or 'none'})"
                )
            meta = record_json(record["json"], where)
            label = record_text(meta, where)
            font = meta.get("font", "")
            if not isinstance(font, str):  # the per-font figures' key: a list read as "['a']"
                raise ValueError(f"{where}: 'font' in its .json is {json_kind(font)}, not a string")
            if meta.get("source"):  # packed from a user's file (models.pack)
                where += f" (image {meta['source']})"
            try:
                image = decode_png(record["png"], where)
            except ImageLoadError as e:
                # not an ImageLoadError: the recognizer skips those as a user's unreadable file
                raise ValueError(str(e)) from None
            if why := label_proportion_problem(image.size, label):  # scaled, it fills memory
                raise ValueError(f"{where}: {why}: a damaged or foreign image")
            if image.mode != "L":
                image = image.convert("L")
            problem = label_problem(label, known, longest)
            if problem:
                raise ValueError(f"{where}: {_other_task(task, meta)}{problem}")
            if _other_task(task, meta) and str(shard) not in warned:
                # labels the model can read, of another task: likely the wrong folder's shards
                # (a line model's charset holds every expression's characters)
                warned.add(str(shard))
                log.warning("shard %s: %s read anyway", shard, _other_task(task, meta).rstrip(": "))
            value = (
                _label_value(shard, key, label, meta.get("value"))
                if task == "expr" and values
                else None
            )
            yield Sample(
                key=key,
                image=image,
                label=label,
                font=font,
                value=value,
                meta=meta,
            )
            count += 1
            if limit is not None and count >= limit:
                return


def _other_task(task: str | None, meta: Mapping[str, Any]) -> str:
    """``"a hanzi model on expr shards: "`` when the record names a task other than ``task``
    (the reason its label does not fit), else nothing."""
    recorded = meta.get("task")
    if task and isinstance(recorded, str) and recorded and recorded != task:
        return f"a {task} model on {recorded} shards (the sample's JSON says task {recorded!r}): "
    return ""


def shard_arguments_problem(shards: Sequence[str | os.PathLike]) -> str | None:
    """Why shard arguments of a command line cannot be read (a folder given for its shards, a
    path that does not exist, one file given twice however spelt), or None."""
    folders = [str(s) for s in shards if Path(s).is_dir()]
    if folders:
        what = "is a folder" if len(folders) == 1 else "are folders"
        hint = shard_folder_hint(folders[0]) or "; it holds no .tar file"
        return f"{', '.join(folders)} {what}: shards are .tar files{hint}"
    missing = [str(s) for s in shards if not Path(s).is_file()]
    if missing:
        return f"no such shard: {', '.join(missing)}"
    # The same file however it is spelt (./a.tar, a link to it): its samples would count twice.
    first: dict[tuple[int, int], str] = {}
    for s in shards:
        st = os.stat(s)
        if (st.st_dev, st.st_ino) in first:
            given = first[st.st_dev, st.st_ino]
            same = f"{s} is the same file as {given}" if str(s) != given else f"{s} is given twice"
            return f"{same}: give each shard once (its samples would be counted twice)"
        first[st.st_dev, st.st_ino] = str(s)
    # A file of another kind (an image, a labels file) given for a shard: said so, rather than
    # the damaged shard's advice to delete it. A .tar that does not read is a damaged shard.
    others = [str(s) for s in shards if Path(s).suffix.lower() != ".tar" and not _is_tar(s)]
    if others:
        return (
            f"{', '.join(others)}: not a shard (a .tar file of samples, as the workflow or "
            "models.pack writes); models.pack makes one of your images and labels, and "
            "models.recognize reads images without labels"
        )
    return None


def shard_folder_hint(
    folder: str | os.PathLike, prefer: Sequence[str] = ("test_heldout",), only: bool = False
) -> str:
    """``"; give its shards, e.g. FOLDER/SPLIT-*.tar"`` for a folder of shards given where its
    shards were meant, naming every split it holds (the name before a shard's last ``-``; a
    shard without one is given by its own name); the example is the first split of ``prefer``
    the folder holds, else (unless ``only``) its first. With ``only`` and none of ``prefer``,
    says the folder holds none of them. Empty for a folder without shards."""
    folder = Path(folder)
    splits = sorted(
        {p.name.rsplit("-", 1)[0] if "-" in p.name else p.name for p in folder.glob("*.tar")}
    )
    if not splits:
        return ""
    held = f" (it holds {', '.join(splits)})" if len(splits) > 1 else ""
    split = next((s for s in prefer if s in splits), None if only else splits[0])
    if split is None:
        return f"; it holds {', '.join(splits)}, and no {' or '.join(prefer)} split"
    example = folder / (split if split.endswith(".tar") else f"{split}-*.tar")
    if len(splits) == 1:
        return f"; give its shards, e.g. {example}"
    return f"; give one split's shards, e.g. {example}{held}"


def _is_tar(path: str | os.PathLike) -> bool:
    try:
        return tarfile.is_tarfile(path)
    except OSError:
        return False


def label_problem(label: str, charset: Collection[str] | None, longest: int = 0) -> str | None:
    """Why a model cannot read ``label`` (a character outside ``charset``, or more than
    ``longest`` characters; None and 0 check nothing), or None."""
    unknown = sorted(c for c in set(label) if c not in charset) if charset is not None else []
    if unknown:
        chars = ", ".join(f"{c!r} (U+{ord(c):04X})" for c in unknown)
        hint = f" ({SPACE_HINT})" if SPACE in unknown else ""
        return f"label {label!r} has {chars}, not in the charset{hint}"
    if longest and len(label) > longest:
        return f"label {label!r} has {len(label)} characters; the model reads {longest}"
    return None


def _label_value(shard: str, key: str, label: str, recorded: Any) -> Value:
    """The value of an expression label, checked against the one its record holds (if any)."""
    try:
        value = evaluate_expression(label)
    except ExpressionError as e:
        raise ValueError(f"shard {shard}: sample {key!r}: label {label!r}: {e}") from None
    if recorded is not None and value_json(value) != recorded:
        raise ValueError(
            f"shard {shard}: sample {key!r}: label {label!r} evaluates to {value_json(value)!r},"
            f" its record says {recorded!r}"
        )
    return value


@dataclass
class Reading:
    """What a recognizer (ours or Tesseract) made of one sample."""

    text: str
    confidence: float | None = None
    top_k: list[tuple[str, float]] = field(default_factory=list)
    # False for the grammar decoder's fallback prefix (`models.families.Prediction`): no value
    grammatical: bool = True


def sample_metrics(
    samples: Sequence[Sample],
    readings: Sequence[Reading],
    task: str,
    with_topk: bool,
) -> dict[str, Any]:
    """Metrics of one set of readings, overall and per font.

    Args:
        samples: The samples, in order.
        readings: One reading per sample.
        task: The data task (``expr`` adds ``value_acc``).
        with_topk: Add ``top1``/``top5`` from the readings' candidate lists (classification).

    Returns:
        ``{"n", "seq_acc", "cer", "ned"[, "top1", "top5"][, "value_acc"], "per_font": {...}}``,
        and ``"per_font_file"`` (by the samples' ``font_file``) when every sample names its
        font's file, as rendered samples do (a collection's faces share one file).
    """
    if len(samples) != len(readings):
        raise ValueError(f"{len(samples)} samples but {len(readings)} readings")

    def compute(idx: Sequence[int]) -> dict[str, Any]:
        texts = [readings[i].text for i in idx]
        refs = [samples[i].label for i in idx]
        cands = None
        if with_topk:
            cands = [[t for t, _ in readings[i].top_k] or [readings[i].text] for i in idx]
        values = valued = None
        if task == "expr":
            values = [samples[i].value for i in idx]
            valued = [readings[i].text if readings[i].grammatical else None for i in idx]
        return metrics.text_metrics(
            texts, refs, candidates=cands, values=values, value_readings=valued
        )

    out = compute(range(len(samples)))
    out["per_font"] = metrics.grouped_metrics((s.font for s in samples), compute)
    files = [str(s.meta.get("font_file") or "") for s in samples]
    if files and all(files):
        out["per_font_file"] = metrics.grouped_metrics(files, compute)
    return out


def prediction_rows(
    samples: Sequence[Sample], readings: Sequence[Reading], task: str
) -> list[dict[str, Any]]:
    """The rows of ``predictions.csv`` (see the module docstring)."""
    rows = []
    for i, (s, r) in enumerate(zip(samples, readings, strict=True)):
        row: dict[str, Any] = {
            "index": i,
            "key": s.key,
            "font": s.font,
            "label": s.label,
            "reading": r.text,
            "confidence": "" if r.confidence is None else f"{r.confidence:.6g}",
            "correct": int(r.text == s.label),
            "edit_distance": metrics.edit_distance(r.text, s.label),
            # six significant digits, as the confidence: a long line's 1e-104 is not 0.0
            "top_k": json.dumps(
                [[t, float(f"{float(p):.6g}")] for t, p in r.top_k], ensure_ascii=False
            ),
        }
        if task == "expr":
            got = expression_value(r.text) if r.grammatical else None
            row["value"] = "" if s.value is None else s.value
            row["reading_value"] = "" if got is None else got
            row["value_correct"] = int(got is not None and got == s.value)
        rows.append(row)
    return rows


def _clean(obj: Any) -> Any:
    """NaN -> None (JSON has no NaN), recursively."""
    if isinstance(obj, float) and math.isnan(obj):
        return None
    if isinstance(obj, Mapping):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean(v) for v in obj]
    return obj


def write_metrics(path: str | os.PathLike, record: Mapping[str, Any]) -> None:
    """Write ``metrics.json`` atomically (NaN written as null, keys in insertion order). A name
    taken from a path of other bytes than UTF-8 (Python holds them as surrogates, which UTF-8
    text cannot hold) makes the whole file ASCII, every other character written as JSON's
    ``\\uXXXX`` escape too: each reads back as it was."""
    record = _clean(dict(record))
    text = json.dumps(record, indent=2, ensure_ascii=False)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = json.dumps(record, indent=2, ensure_ascii=True)
    write_text_atomic(path, text + "\n")


def read_metrics(path: str | os.PathLike) -> dict[str, Any]:
    """Read a ``metrics.json``, naming the file when it is not valid JSON or not a record of
    an evaluation (a JSON object with its ``experiment``, ``task`` and ``split``)."""
    path = Path(path)
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"metrics file {path} is not valid JSON: {e}") from None
    if not isinstance(record, dict):
        raise ValueError(
            f"metrics file {path} holds a JSON {type(record).__name__}, not an evaluation's "
            "record (an object)"
        )
    missing = [k for k in ("experiment", "task", "split") if not isinstance(record.get(k), str)]
    if missing:
        raise ValueError(f"metrics file {path} lacks {', '.join(missing)} (as text)")
    return record


def write_predictions(
    path: str | os.PathLike, rows: Iterable[Mapping[str, Any]], task: str
) -> None:
    """Write ``predictions.csv`` atomically."""
    columns = list(PREDICTION_COLUMNS) + (list(EXPR_COLUMNS) if task == "expr" else [])
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_text_atomic(path, buf.getvalue())


def read_predictions(path: str | os.PathLike) -> list[dict[str, str]]:
    """Rows of a ``predictions.csv`` as strings."""
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


@dataclass(frozen=True)
class EvalSpec:
    """How to evaluate one experiment on one split (from the experiment's ``eval`` slice).

    Attributes:
        experiment: The experiment's name (recorded in ``metrics.json``).
        split: ``test_seen`` or ``test_heldout``.
        batch_size: Images per forward pass.
        decoder: CTC decoder, ``greedy``, ``beam`` or ``grammar`` (`models.predict.predict`);
            the reader reads its most likely text with ``beam``, its greedy one otherwise.
        beam_width: Beam width when ``decoder`` is ``beam`` or ``grammar``.
        task_settings: With ``grammar``, the task's settings whose texts the readings are held
            to (`synth.text.GRAMMAR_SETTINGS` of ``tasks.<task>``: the workflow passes them);
            None: any text the task's grammar reads.
        device: ``auto``, ``cpu``, ``cuda`` or ``mps``.
        chunk: Samples read ahead per `models.predict.predict` call (lines are grouped by width
            within a chunk).
    """

    experiment: str
    split: str
    batch_size: int = 128
    decoder: str = "greedy"
    beam_width: int = 5
    task_settings: dict[str, Any] | None = None
    device: str = "auto"
    chunk: int = 1024

    @classmethod
    def from_config(
        cls, experiment: str, split: str, eval_cfg: Mapping[str, Any] | None, device: str
    ) -> EvalSpec:
        """Build from an experiment's validated ``eval`` slice, less ``threads`` (the cores the
        job takes, which the workflow keeps out of the settings), with the ``task_settings`` the
        workflow adds for the ``grammar`` decoder, and the config's ``device``."""
        cfg = dict(eval_cfg or {})
        unknown = set(cfg) - {"batch_size", "decoder", "beam_width", "task_settings"}
        if unknown:
            raise ValueError(f"experiments.{experiment}.eval: unknown keys {sorted(unknown)}")
        spec = cls(experiment=experiment, split=split, device=device, **cfg)
        if spec.decoder not in DECODERS:
            raise ValueError(
                f"experiments.{experiment}.eval.decoder: {spec.decoder!r} is not one of "
                + ", ".join(DECODERS)
            )
        return spec


def grammar_record(meta: Any, spec: EvalSpec) -> dict[str, Any]:
    """``{"grammar": ...}``, what the ``grammar`` decoder held the readings to (``expr`` with
    the task's settings: operand counts, digits, operators; ``"evaluates"`` without), or
    nothing for another decoder."""
    if spec.decoder != "grammar":
        return {}
    from models.registry import grammar_for

    return {"grammar": grammar_for(meta.model, meta.task, task_cfg=spec.task_settings).describe()}


def backbone_name(model: Any) -> str:
    """A short name of a model's feature extractor, from its class (``VGGBackbone`` -> ``vgg``,
    ``GRCNNBackbone`` -> ``grcnn``, ``ExprBody`` -> ``expr``); the model's class otherwise."""
    part = getattr(model, "backbone", None) or getattr(model, "body", None) or model
    name = type(part).__name__
    for suffix in ("Backbone", "Body"):
        if name.endswith(suffix) and name != suffix:
            name = name[: -len(suffix)]
    return name.lower()


def training_record(meta: Any, train_info: str | os.PathLike | None = None) -> dict[str, Any]:
    """``seed`` (the run's training seed, from its ``train.json``, `models.train`: what tells
    seed copies of one experiment apart; the checkpoint does not hold it, so None without the
    file), ``train_shards`` (how many training shards the run read, from ``train.json``: what
    tells apart the runs of a data-scaling study, as the settings leave ``train.shards`` out;
    None without it, or from a run that predates its record), ``train_steps`` (the steps it
    ran: ``train.json``'s, else the checkpoint's), ``train_wall_s`` (from ``train.json``;
    None without it), ``init_from``: the checkpoint the run started from
    (``train.init_from``, fine-tuning; None from random weights), whose own steps and time the
    other two leave out,
    ``budget_steps``: the steps the run was configured for (the checkpoint's recorded
    ``train.steps``), of which early stopping may have run fewer (``train_steps``), and
    ``train_settings``: the run's other training settings that differ from their defaults
    (`models.specs.distinct_settings`: what tells two experiments of one model apart when only
    their learning rate differs, say). The last two are None for a checkpoint without its
    settings.

    Args:
        meta: The checkpoint's `models.checkpoint.ModelMeta`.
        train_info: ``results/models/{experiment}/train.json``, if known.
    """
    steps = getattr(meta, "step", None)
    wall = seed = shards = None
    if train_info is not None:
        path = Path(train_info)
        try:
            info = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise ValueError(f"training record {path} is not valid JSON: {e}") from None
        if info.get("wall_s") is not None:
            wall = float(info["wall_s"])
        if info.get("steps") is not None:
            steps = int(info["steps"])
        if info.get("seed") is not None:
            seed = int(info["seed"])
        if info.get("train_shards") is not None:
            shards = int(info["train_shards"])
    # here, not at the top: models.specs reads the config schema (jsonschema), a fifth of a
    # second that every importer of this module (pack, plots, the reports) would pay
    from models.specs import distinct_settings

    train = getattr(meta, "train", None) or {}
    return {
        "seed": seed,
        "train_shards": shards,
        "budget_steps": train.get("steps"),
        "train_steps": steps,
        "train_wall_s": wall,
        "init_from": train.get("init_from"),
        "train_settings": distinct_settings(train) if train else None,
    }


def evaluate(
    model_path: str | os.PathLike,
    shards: Sequence[str | os.PathLike],
    metrics_path: str | os.PathLike,
    predictions_path: str | os.PathLike,
    spec: EvalSpec,
    train_info: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """Evaluate a checkpoint on a split and write ``metrics.json`` and ``predictions.csv``.

    Args:
        model_path: ``results/models/{experiment}/model.pt``, or an ``.onnx`` export of one
            (`models.export`, float or int8): read by onnxruntime on the CPU, with as many
            threads as torch has; the record then says ``"engine": "onnxruntime"`` and holds
            the file's ``quantization`` entry, if any.
        shards: The split's shards, in order.
        metrics_path: Where ``metrics.json`` goes.
        predictions_path: Where ``predictions.csv`` goes.
        spec: Batch size, decoder, device.
        train_info: The run's ``train.json`` (training seed, wall time and steps), if any.

    Returns:
        The ``metrics.json`` record.
    """
    import torch

    from models.checkpoint import load_model
    from models.devices import resolve_device
    from models.export import export_device, is_export, load_onnx
    from models.predict import predict

    export = is_export(model_path)
    if export:
        device = export_device(model_path, spec.device)
        model, meta = load_onnx(model_path, threads=torch.get_num_threads())
    else:
        device = resolve_device(spec.device, claim=True)  # a GPU no other job holds
        model, meta = load_model(model_path, device=device)
    network = _network_of(meta) if export else model
    family = _family_of(meta.model)
    with_topk = family == "classification"
    log.info(
        "evaluating %s (%s) on %s: %d shard(s), device %s",
        spec.experiment,
        meta.model,
        spec.split,
        len(shards),
        device,
    )

    samples: list[Sample] = []
    readings: list[Reading] = []
    predict_s = 0.0
    warm = False
    start = time.perf_counter()
    chunk: list[Sample] = []

    def flush() -> None:
        nonlocal predict_s, warm
        images = [s.image for s in chunk]
        if not warm:
            # The first call pays for kernel selection and allocator growth: keep it untimed.
            predict(model, meta, images[: spec.batch_size], batch_size=spec.batch_size)
            warm = True
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        preds = predict(
            model,
            meta,
            images,
            batch_size=spec.batch_size,
            decoder=spec.decoder,
            beam_width=spec.beam_width,
            task_settings=spec.task_settings,
        )
        predict_s += time.perf_counter() - t0
        for p in preds:
            readings.append(Reading(p.text, float(p.confidence), list(p.top_k), p.grammatical))
        samples.extend(chunk)
        bar.update(len(chunk))
        chunk.clear()

    from models.families import make_family

    longest = make_family(meta.model, meta.charset, meta.model_kwargs).longest_label
    with progress_bar(None, " images", desc=f"{spec.experiment} {spec.split}") as bar:
        for sample in iter_samples(shards, task=meta.task, charset=meta.charset, longest=longest):
            chunk.append(sample)
            if len(chunk) >= spec.chunk:
                flush()
        if chunk:
            flush()
    wall = time.perf_counter() - start
    if not samples:
        raise ValueError(f"no samples in the shards of {spec.split}: {', '.join(map(str, shards))}")

    record: dict[str, Any] = {
        "experiment": spec.experiment,
        "model": meta.model,
        "model_kwargs": dict(sorted(meta.model_kwargs.items())),
        "backbone": backbone_name(network) if network is not None else None,
        "family": family,
        "task": meta.task,
        "split": spec.split,
    }
    scores = sample_metrics(samples, readings, meta.task, with_topk)
    per_font = scores.pop("per_font")
    per_file = scores.pop("per_font_file", None)
    record.update(scores)
    training = training_record(meta, train_info)
    record.update(
        {
            "per_font": per_font,
            **({} if per_file is None else {"per_font_file": per_file}),
            "eval_img_per_s": len(samples) / predict_s if predict_s > 0 else None,
            "eval_wall_s": wall,
            "device": device.type,
            "decoder": spec.decoder if family in ("ctc", "attention") else "greedy",
            **grammar_record(meta, spec),
            "batch_size": spec.batch_size,
            "params_m": (
                sum(p.numel() for p in network.parameters()) / 1e6 if network is not None else None
            ),
            **training,
        }
    )
    if export:
        record["engine"] = "onnxruntime"
        if "quantization" in model.info:
            record["quantization"] = model.info["quantization"]
    write_predictions(predictions_path, prediction_rows(samples, readings, meta.task), meta.task)
    write_metrics(metrics_path, record)
    log.info(
        "%s %s: n=%d seq_acc=%.4f cer=%.4f (%.0f img/s)",
        spec.experiment,
        spec.split,
        record["n"],
        record["seq_acc"],
        record["cer"],
        record["eval_img_per_s"] or 0.0,
    )
    return record


def _network_of(meta: Any) -> Any:
    """The PyTorch network an export was made from, untrained (its backbone's name and its
    parameter count are the record's); None for a model not registered here."""
    from models.registry import build_model, is_registered

    if not is_registered(meta.model):
        return None
    return build_model(meta.model, len(meta.charset), **meta.model_kwargs)


def _family_of(model_name: str) -> str:
    from models.registry import family_of

    return family_of(model_name)


OUTPUT_FILES = ("metrics.json", "predictions.csv")


def out_folder_problem(out: str | os.PathLike) -> str | None:
    """Why ``--out`` cannot take an evaluation's `OUTPUT_FILES`, or None, found before any work
    and before either is written (the pair was left mismatched when the second could not be):
    `synth.atomic.output_folder_why`."""
    why = output_folder_why(out, OUTPUT_FILES)
    return None if why is None else f"--out {out}: {why}"


@stops_on_interrupt("models.evaluate")
def main(argv: Sequence[str] | None = None) -> int:
    """``python -m models.evaluate CHECKPOINT SHARD... --out DIR``: returns the exit status."""
    import argparse

    import torch

    from models.checkpoint import CheckpointError
    from models.cli import (
        TASK_CONFIG_HELP,
        positive_int,
        read_task_settings,
        task_settings_warnings,
    )
    from models.export import ExportError, is_export, read_model_meta

    parser = argparse.ArgumentParser(
        prog="python -m models.evaluate",
        description="Evaluate a synthocr checkpoint on WebDataset shards of its task: writes "
        "metrics.json and predictions.csv, prints the headline metrics.",
    )
    parser.add_argument(
        "checkpoint",
        help="model.pt written by training, or an .onnx export of one (float or int8: read by "
        "onnxruntime on the CPU)",
    )
    parser.add_argument("shards", nargs="+", help="shard files (.tar), read in the order given")
    parser.add_argument("--out", required=True, help="folder for metrics.json and predictions.csv")
    parser.add_argument("--decoder", choices=DECODERS, default="greedy")
    parser.add_argument("--task-config", metavar="CONFIG", help=TASK_CONFIG_HELP)
    parser.add_argument("--batch-size", type=positive_int, default=128)
    parser.add_argument("--device", default="auto", help="auto (default), cpu, cuda[:N] or mps")
    parser.add_argument("--threads", type=thread_count, default=0, help="CPU threads (0: all)")
    parser.add_argument(
        "--split", help="name recorded in metrics.json (default: the first shard's, test_heldout)"
    )
    args = parser.parse_args(argv)
    if args.task_config and args.decoder != "grammar":
        parser.error("--task-config holds the grammar decoder's readings: add --decoder grammar")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    checkpoint = Path(args.checkpoint)
    split = args.split or Path(args.shards[0]).name.rsplit("-", 1)[0]
    problem = shard_arguments_problem(args.shards)
    out = Path(args.out)
    try:
        if problem:
            raise ValueError(problem)
        if problem := out_folder_problem(out):  # before the work, which writes into it
            raise ValueError(problem)
        settings = None
        if args.task_config:
            meta = read_model_meta(checkpoint)
            settings = read_task_settings(args.task_config, meta.task)
            for warning in task_settings_warnings(
                args.task_config, meta.task, settings, meta.charset
            ):
                log.warning("%s", warning)
        spec = EvalSpec(
            experiment=(
                checkpoint.stem
                if is_export(checkpoint)
                else checkpoint.parent.name or checkpoint.stem
            ),
            split=split,
            batch_size=args.batch_size,
            decoder=args.decoder,
            task_settings=settings,
            device=args.device,
        )
        train_info = checkpoint.parent / "train.json"
        record = evaluate(
            checkpoint,
            args.shards,
            out / "metrics.json",
            out / "predictions.csv",
            spec,
            train_info=train_info if train_info.is_file() else None,
        )
    except (CheckpointError, ExportError, ValueError, OSError) as e:
        # OSError: an output that cannot be written (a folder in predictions.csv's place, a
        # full disk); its message names the file
        print(f"error: {e}", file=sys.stderr)
        return 1
    shown = ("n", "seq_acc", "cer", "top1", "top5", "value_acc")
    print(" ".join(f"{k}={record[k]:.4g}" for k in shown if record.get(k) is not None))
    return 0


if __name__ == "__main__":
    sys.exit(main())
