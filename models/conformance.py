"""Does a registered model keep the registry's contract? The checks the tests run on every built-in
model, for a model of one's own (README.md, "Adding an architecture" and "A model in your own
package"), on a small instance, in seconds, on the CPU::

    synthocr-check-model tiny_ctc                       # its entry's `tiny` kwargs
    synthocr-check-model tiny_ctc --kwargs '{"hidden": 32}' --skip onnx   # tiny, hidden 32

    from models.conformance import check_model
    for result in check_model("tiny_ctc"):
        print(result.check, result.ok, result.detail)

The checks (`CHECKS`), each run even when one before it failed (after a failed ``signature``,
the others build no model and say "not run"):

- ``signature``: the factory takes ``num_classes`` first, then keyword-only arguments whose
  defaults are the entry's ``kwargs``, ``width`` among them;
- ``outputs``: the forward's output has its family's layout (`models.families`) at batch 3, and
  a CTC model gives the frames its ``output_length`` counts at several widths; each image's
  output is the one it gives read alone (no statistic over the batch);
- ``loss``: a loss and its gradients, finite, reaching every parameter, in fp32 and under the
  CPU's bf16 autocast, and a decoding. Training on a GPU runs CUDA's bf16 autocast, which casts
  some layers otherwise (a cuDNN LSTM or GRU to fp16, so the shipped CTC models run theirs in
  fp32, `models.crnn.recurrent`): the CPU's autocast checks the forward copes with bf16 tensors,
  not CUDA's kernels;
- ``channels_last``: the same outputs in the channels-last layout that CPU training uses;
- ``classes``: the layers that grow with the charset have the classes on their first axis
  (fine-tuning carries their rows over, `models.transfer`);
- ``onnx``: a checkpoint of it exports to ONNX with onnxruntime agreeing with PyTorch at batch 3
  and, for line models, several widths (`models.export.check_parity`).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from models.cli import stops_on_interrupt
from models.registry import (
    build_model,
    check_kwargs,
    entry_source,
    factory_problem,
    family_of,
    get_entry,
    input_spec,
    output_length,
    signature_problem,
)

CHECKS = ("signature", "outputs", "loss", "channels_last", "classes", "onnx")
# A charset every family can be shown, and labels of each family within it.
CHARSET = tuple("0123456789+-*()")
LABELS = {"classification": ["7", "("], "ctc": ["12+3", "4"], "attention": ["12", "3+45"]}
# The task a checkpoint of each family is saved under (only its input geometry matters here).
TASK = {"classification": "hanzi", "ctc": "line", "attention": "short"}
CTC_WIDTHS = (16, 61, 100, 183)


class ConformanceError(AssertionError):
    """A model breaking the registry's contract: the message says what it did and what it
    should."""


@dataclass(frozen=True)
class Result:
    """One check of one model: ``ok``, or ``detail`` says what failed."""

    check: str
    ok: bool
    detail: str = ""


def images(name: str, kwargs: Mapping[str, Any], batch: int, width: int = 72) -> torch.Tensor:
    """A random batch of the model's input geometry (lines ``width`` px wide)."""
    spec = input_spec(name, **kwargs)
    g = torch.Generator().manual_seed(0)
    if spec["kind"] == "square":
        return torch.rand(batch, 1, spec["size"], spec["size"], generator=g)
    return torch.rand(batch, 1, spec["height"], width, generator=g)


def labels(name: str, kwargs: Mapping[str, Any]) -> list[str]:
    """Two labels over `CHARSET` the model can be trained on (cut to an attention model's
    ``max_len``)."""
    family = family_of(name)
    out = LABELS[family]
    if family == "attention":
        max_len = {**get_entry(name).kwargs, **kwargs}["max_len"]
        out = [t[:max_len] for t in out]
    return out


def _family(name: str, kwargs: Mapping[str, Any]) -> Any:
    from models.families import make_family

    return make_family(name, list(CHARSET), kwargs)


def _model(name: str, kwargs: Mapping[str, Any], seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_model(name, len(CHARSET), **kwargs)


def _outputs(out: Any) -> list[torch.Tensor]:
    return list(out) if isinstance(out, tuple | list) else [out]


def check_signature(name: str, kwargs: Mapping[str, Any]) -> None:
    """The factory's signature is the one its entry declares (`signature_problem`)."""
    entry = get_entry(name)
    if problem := signature_problem(entry, entry.factory):
        raise ConformanceError(problem)


def _check_alone(model: torch.nn.Module, x: torch.Tensor, out: Any, axis: int) -> None:
    """Each image's outputs in the batch ``x`` are those it gives read alone (the batch on
    ``axis`` of the outputs): recognition and evaluation promise that an image's reading does
    not depend on the other images read with it."""
    batch = _outputs(out)
    for i in range(x.shape[0]):
        for j, (a, b) in enumerate(zip(batch, _outputs(model(x[i : i + 1])), strict=True)):
            a = a.narrow(axis if j == 0 else 0, i, 1).float()
            if a.shape != b.shape:
                raise ConformanceError(
                    f"image {i}'s output {j} read alone has shape {tuple(b.shape)}, in a batch "
                    f"of {x.shape[0]} {tuple(a.shape)}"
                )
            if not torch.allclose(a, b.float(), rtol=1e-5, atol=1e-6):  # float noise: ~1e-7
                raise ConformanceError(
                    f"image {i}'s output {j} read in a batch of {x.shape[0]} differs from its "
                    f"output read alone (max abs difference {(a - b.float()).abs().max():.3g}): "
                    "an image's reading must not depend on the other images read with it; a "
                    "statistic over the whole batch (x.mean(), x.std() of the input) mixes "
                    "them: take it per image, over dims 1 to 3"
                )


def check_outputs(name: str, kwargs: Mapping[str, Any]) -> None:
    """Its family's layout at batch 3; a CTC model's frames at several widths; each image's
    outputs the same read in a batch as alone."""
    model = _model(name, kwargs).eval()
    family = _family(name, kwargs)
    with torch.no_grad():
        if family.kind != "ctc":
            x = images(name, kwargs, 3)
            out = model(x)
            family.check_output(out)
            logits = family.logits(out, batch=3)
            if family.kind == "attention":
                masks = out[1]
                size = input_spec(name, **kwargs)["size"]
                steps = family.steps
                if logits.shape[1] != steps or tuple(masks.shape) != (3, steps, size, size):
                    raise ConformanceError(
                        f"logits {tuple(logits.shape)} and masks {tuple(masks.shape)}: an "
                        f"attention model with max_len {family.max_len} gives {steps} steps, "
                        f"logits 3, {steps}, C + 1 and masks 3, {steps}, {size}, {size}"
                    )
            _check_alone(model, x, out, axis=0)
            return
        for width in CTC_WIDTHS:
            x = images(name, kwargs, 2, width)
            out = model(x)
            family.logits(out, batch=2)
            family.check_output(out, x)  # the frames output_length counts, as training checks
            _check_alone(model, x, out, axis=1)  # CTC logits are T, N, C + 1
        # As the loss gives them: a tensor of several widths (output_length checks the counts
        # are whole numbers, one per width); as an int, as the config check and export do.
        on_tensor = output_length(name, torch.tensor(CTC_WIDTHS), **kwargs).tolist()
        for width, counted in zip(CTC_WIDTHS, on_tensor, strict=True):
            on_int = int(output_length(name, width, **kwargs))
            if counted != on_int:
                raise ConformanceError(
                    f"output_length counts {on_int} frames for a width of {width} given as an "
                    f"int, {counted} for one in a tensor of widths (as the loss gives them)"
                )


def _precision(dtype: torch.dtype) -> contextlib.AbstractContextManager:
    if dtype == torch.bfloat16:
        return torch.autocast(device_type="cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def check_loss(name: str, kwargs: Mapping[str, Any]) -> None:
    """A finite fp32 loss whose gradients reach every parameter, in fp32 and under bf16
    autocast; a decoding with a confidence in [0, 1]."""
    family = _family(name, kwargs)
    texts = labels(name, kwargs)
    for dtype in (torch.float32, torch.bfloat16):
        model = _model(name, kwargs)
        x = images(name, kwargs, len(texts))
        with _precision(dtype):
            out = model(x)
        where = "under bf16 autocast" if dtype == torch.bfloat16 else "in fp32"
        loss = family.loss(out, family.encode(texts))
        if not (loss.ndim == 0 and loss.dtype == torch.float32 and torch.isfinite(loss)):
            raise ConformanceError(f"{where}: the loss is {loss!r}, not a finite fp32 scalar")
        loss.backward()
        for pname, p in model.named_parameters():
            if p.dtype != torch.float32:
                raise ConformanceError(f"{where}: parameter {pname} is {p.dtype}, not float32")
            if p.grad is None:
                raise ConformanceError(f"{where}: parameter {pname} gets no gradient")
            if not torch.isfinite(p.grad).all():
                raise ConformanceError(f"{where}: parameter {pname} has a non-finite gradient")
        if not any(p.grad.abs().sum() > 0 for p in model.parameters()):
            raise ConformanceError(f"{where}: every gradient is zero")
        model.eval()
        with torch.no_grad(), _precision(dtype):
            preds = family.decode(model(x[:1]))
        if len(preds) != 1 or not 0.0 <= preds[0].confidence <= 1.0:
            raise ConformanceError(f"{where}: decoding one image gave {preds!r}")


def check_channels_last(name: str, kwargs: Mapping[str, Any]) -> None:
    """Channels-last weights and images give the outputs of the default layout."""
    from models.devices import memory_format

    layout = memory_format(torch.device("cpu"))  # as models.train lays out a CPU run
    model = _model(name, kwargs).eval()
    x = images(name, kwargs, 3)
    with torch.no_grad():
        ref = _outputs(model(x))
        model = model.to(memory_format=layout)
        out = _outputs(model(x.contiguous(memory_format=layout)))
    # a kernel of one input channel, or 1x1, is contiguous in either layout
    kernels = [
        p for p in model.parameters() if p.dim() == 4 and p.shape[1] > 1 and p[0, 0].numel() > 1
    ]
    if kernels and not any(p.is_contiguous(memory_format=layout) for p in kernels):
        raise ConformanceError(f"no convolution kernel is in {layout} after .to(memory_format)")
    for i, (a, b) in enumerate(zip(ref, out, strict=True)):
        try:
            torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5)
        except AssertionError as e:
            said = "; ".join(line.strip() for line in str(e).splitlines() if line.strip())
            raise ConformanceError(f"output {i} differs in channels_last: {said}") from None


def check_classes(name: str, kwargs: Mapping[str, Any]) -> None:
    """The tensors that grow with the charset grow on their first axis."""
    from models.transfer import class_tensors

    try:
        found = class_tensors(name, len(CHARSET), kwargs)
    except ValueError as e:
        raise ConformanceError(str(e)) from None
    if not found:
        raise ConformanceError("no tensor grows with the charset: the output ignores num_classes")


def check_onnx(name: str, kwargs: Mapping[str, Any]) -> None:
    """A checkpoint exports to ONNX, onnxruntime agreeing with PyTorch."""
    from models.checkpoint import ModelMeta, save_model
    from models.export import export_onnx

    task = TASK[family_of(name)]
    with tempfile.TemporaryDirectory(prefix="synthocr-check-") as tmp:
        meta = ModelMeta(name, dict(kwargs), list(CHARSET), task, train={}, step=0)
        model = _model(name, kwargs)
        save_model(Path(tmp) / "model.pt", model, meta)
        try:
            with _quiet():  # torch prints a failed graph, pages of it, on the process's stdout
                export_onnx(Path(tmp) / "model.pt", Path(tmp) / "model.onnx")  # parity checked
        except Exception as e:
            first = (str(e).replace(f"{tmp}/", "").strip().splitlines() or ["(no message)"])[0]
            torch_attention = any(isinstance(m, nn.MultiheadAttention) for m in model.modules())
            raise ConformanceError(
                f"{type(e).__name__}: {first} (the forward exports with the batch, and a "
                "line's width, left free: no size computed from the input at run time"
                + (
                    "; torch's nn.MultiheadAttention fixes the traced sequence length and "
                    "batch in the graph (so do nn.TransformerEncoder layers): write the "
                    "attention with unflatten and flatten, as the README shows"
                    if torch_attention
                    else ""
                )
                + "; README.md, 'Adding an architecture', step 1)"
            ) from None


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Send what this process writes to its stdout and stderr, C++ code's too, to /dev/null."""
    sys.stdout.flush()
    sys.stderr.flush()
    null = os.open(os.devnull, os.O_WRONLY)
    saved = [os.dup(1), os.dup(2)]
    try:
        os.dup2(null, 1)
        os.dup2(null, 2)
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, null):
            os.close(fd)


CHECK_FUNCTIONS: dict[str, Callable[[str, Mapping[str, Any]], None]] = {
    "signature": check_signature,
    "outputs": check_outputs,
    "loss": check_loss,
    "channels_last": check_channels_last,
    "classes": check_classes,
    "onnx": check_onnx,
}


def check_model(
    name: str,
    kwargs: Mapping[str, Any] | None = None,
    checks: Sequence[str] = CHECKS,
    where: str = "kwargs",
) -> list[Result]:
    """Run ``checks`` on model ``name`` built with its entry's ``tiny`` kwargs, ``kwargs``
    laid over them, every one even after a failure (those that build the model are not run
    once the signature check fails: each would fail with its message).

    Raises:
        ValueError: An unknown model or check, a factory module that cannot be found, or
            kwargs the model does not take (named as ``where``).
    """
    unknown = sorted(set(checks) - set(CHECKS))
    if unknown:
        raise ValueError(f"unknown check(s) {', '.join(unknown)}; valid: {', '.join(CHECKS)}")
    entry = get_entry(name, described=False)  # checks a registered model's factory
    if problem := factory_problem(entry):
        raise ValueError(f"model {name!r} ({entry_source(name)}): {problem}")
    if kwargs is not None:
        check_kwargs(name, kwargs, where=where)
    return list(_run(name, {**entry.tiny, **(kwargs or {})}, checks))


def _run(name: str, kwargs: dict[str, Any], checks: Sequence[str]) -> Iterator[Result]:
    signature_failed = False
    for check in checks:
        if signature_failed:
            yield Result(check, False, "not run: the signature check failed")
            continue
        try:
            CHECK_FUNCTIONS[check](name, kwargs)
        except Exception as e:  # a model's own error is a failed check too: name it
            detail = str(e) if isinstance(e, ConformanceError) else f"{type(e).__name__}: {e}"
            yield Result(check, False, detail)
            signature_failed = check == "signature"
        else:
            yield Result(check, True)


@stops_on_interrupt(
    "models.conformance", "it writes no file (its checks write only to a temporary folder)"
)
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="synthocr-check-model",
        description="Check that a registered model (built in, or an installed package's) keeps "
        "the registry's contract: " + ", ".join(CHECKS) + ".",
    )
    parser.add_argument("model", help="registered model name")
    parser.add_argument(
        "--kwargs",
        default=None,
        help="keyword arguments as JSON, laid over the entry's tiny ones",
    )
    parser.add_argument(
        "--skip", action="append", default=[], choices=CHECKS, help="a check to skip (repeatable)"
    )
    args = parser.parse_args(argv)
    try:
        try:
            kwargs = json.loads(args.kwargs) if args.kwargs is not None else None
        except json.JSONDecodeError as e:  # its words alone name neither option nor text
            raise ValueError(f"--kwargs: a JSON object, got {args.kwargs!r} ({e})") from None
        if kwargs is not None and not isinstance(kwargs, dict):
            raise ValueError(f"--kwargs: a JSON object, got {args.kwargs!r}")
        checks = [c for c in CHECKS if c not in args.skip]
        if not checks:
            raise ValueError("--skip leaves no check to run")
        results = check_model(args.model, kwargs, checks, where="--kwargs")
    except ValueError as e:
        print(f"synthocr-check-model: {e}", file=sys.stderr)
        return 2
    for r in results:
        print(f"{'ok  ' if r.ok else 'FAIL'} {r.check}" + (f": {r.detail}" if r.detail else ""))
    failed = [r.check for r in results if not r.ok]
    print(
        f"model {args.model!r}: "
        + (f"{len(failed)} of {len(results)} checks failed" if failed else "every check passed")
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
