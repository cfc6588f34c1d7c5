"""The reader's ONNX export against PyTorch on real images, step by step: onnxruntime with every
graph optimisation and with none, PyTorch in float32, each also against PyTorch in float64.

    python bench/bench_reader_parity.py CHECKPOINT SHARD... [--images 500] [--batch 50]

The reader feeds each step's mask back into the next (it multiplies the image), so a difference
at one step can grow at the next; issue #6 asks of the export that the decoded texts match
PyTorch's on the same images and the logits agree within 1e-4. The checkpoint (a reader's
``model.pt``) is exported as ``python -m models.export`` exports it (`models.export.export_onnx`,
its own check on random batches included) to a temporary file; the first ``--images`` samples
of the shards are read as evaluation reads them and run, in batches of ``--batch`` on one
thread, by each engine. Float64 PyTorch is the nearest to exact arithmetic at hand, so it says
which float32 engine is the closer. Prints the machine, the whole-word accuracy of each engine,
and a markdown row per pair of engines: the largest absolute difference of the logits and of the
masks at each step, how many images have a logit more than 1e-4 apart, how many texts are
decoded differently (greedy) and the largest relative difference of their confidences.
"""

from __future__ import annotations

import argparse
import copy
import platform
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import onnxruntime as ort
import torch

from models.checkpoint import CheckpointError, load_model
from models.cli import positive_int
from models.evaluate import iter_samples, shard_arguments_problem
from models.export import ExportError, export_onnx
from models.families import make_family
from models.preprocess import to_tensor_batch
from models.registry import family_of

TOLERANCE = 1e-4  # issue #6's bound on the logits
PAIRS = [
    ("onnx_all", "torch32"),
    ("onnx_none", "torch32"),
    ("onnx_all", "onnx_none"),
    ("torch32", "torch64"),
    ("onnx_all", "torch64"),
    ("onnx_none", "torch64"),
]


def _onnx_engine(path: Path, level: ort.GraphOptimizationLevel):
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.graph_optimization_level = level
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def run(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits, _, masks = session.run(None, {"image": x.numpy()})
        return torch.from_numpy(logits), torch.from_numpy(masks)

    return run


def _torch_engine(model: torch.nn.Module, dtype: torch.dtype):
    model = model.to(dtype)

    def run(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.inference_mode():
            out = model(x.to(dtype))
        return out.logits, out.masks

    return run


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", help="a reader's model.pt")
    parser.add_argument("shards", nargs="+", help="shards of the reader's task (test_heldout)")
    parser.add_argument("--images", type=positive_int, default=500, help="images read, at most")
    parser.add_argument("--batch", type=positive_int, default=50, help="images per batch")
    args = parser.parse_args(argv)
    if problem := shard_arguments_problem(args.shards):
        sys.exit(f"error: {problem}")
    torch.set_num_threads(1)
    try:
        model, meta = load_model(args.checkpoint)
    except CheckpointError as e:
        sys.exit(f"error: {e}")
    if family_of(meta.model) != "attention":
        sys.exit(
            f"error: {args.checkpoint}: model {meta.model!r} is no attention reader (the "
            "steps compared are a reader's)"
        )
    family = make_family(meta.model, meta.charset, meta.model_kwargs)
    try:
        samples = list(iter_samples(args.shards, limit=args.images, charset=meta.charset))
    except ValueError as e:  # names the shard and the key
        sys.exit(f"error: {e}")
    if not samples:
        sys.exit(f"error: {' '.join(args.shards)}: no samples to read")
    x, _ = to_tensor_batch([s.image for s in samples], meta.input)
    with tempfile.TemporaryDirectory(prefix="bench-reader-parity-") as work:
        try:
            path = export_onnx(args.checkpoint, Path(work) / "reader.onnx")
        except ExportError as e:
            sys.exit(f"error: {e}")
        engines = {
            "torch32": _torch_engine(model, torch.float32),
            "torch64": _torch_engine(copy.deepcopy(model), torch.float64),
            "onnx_all": _onnx_engine(path, ort.GraphOptimizationLevel.ORT_ENABLE_ALL),
            "onnx_none": _onnx_engine(path, ort.GraphOptimizationLevel.ORT_DISABLE_ALL),
        }
        outputs = {}
        for name, run in engines.items():
            parts = [run(x[i : i + args.batch]) for i in range(0, len(x), args.batch)]
            outputs[name] = tuple(torch.cat([p[k] for p in parts]).double() for k in (0, 1))
    readings = {
        name: family.decode((out[0].float(), out[1].float())) for name, out in outputs.items()
    }
    print(
        f"{platform.processor() or platform.machine()}, PyTorch {torch.__version__}, "
        f"onnxruntime {ort.__version__}, one thread"
    )
    print(f"{args.checkpoint}: {meta.model}, step {meta.step}; {len(samples)} images")
    for name, preds in readings.items():
        right = sum(p.text == s.label for p, s in zip(preds, samples, strict=True))
        print(f"{name}: {right / len(samples):.4f} whole words")
    steps = outputs["torch32"][0].shape[1]
    print(
        f"| engines | largest logit difference, step 0..{steps - 1} | largest mask difference, "
        f"step 0..{steps - 1} | images > {TOLERANCE:.0e} | texts differ | confidence, rel. |"
    )
    print("|---|---|---|---:|---:|---:|")
    for a, b in PAIRS:
        (logits_a, masks_a), (logits_b, masks_b) = outputs[a], outputs[b]
        logit_diff = (logits_a - logits_b).abs()
        per_step = logit_diff.amax(dim=(0, 2)).tolist()
        mask_step = (masks_a - masks_b).abs().amax(dim=(0, 2, 3)).tolist()
        over = int((logit_diff.amax(dim=(1, 2)) > TOLERANCE).sum())
        texts = sum(p.text != q.text for p, q in zip(readings[a], readings[b], strict=True))
        confidence = max(
            abs(p.confidence - q.confidence) / max(q.confidence, sys.float_info.min)
            for p, q in zip(readings[a], readings[b], strict=True)
        )
        print(
            f"| {a} vs {b} | {' '.join(f'{v:.1e}' for v in per_step)} | "
            f"{' '.join(f'{v:.1e}' for v in mask_step)} | {over} | {texts} | {confidence:.1e} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
