"""The training loop: one for every model, readable top to bottom (after nanoGPT's ``train.py``).

    seed -> data stream -> model (from init_from's weights?), AdamW, weight average? -> resume?
    -> for each step: lr(step), forward (bf16 autocast on GPU), family loss (fp32), plus the
    alignment loss?, finite check, backward, clip, step, average -> log, validate, early stop,
    checkpoint -> model.pt, history.csv, train.json

With ``align_weight`` set (line models), each character's frame is also trained to read it, where
the line shard says it is drawn (`models.families.CTCFamily.align_loss`), weighted by
`align_weight_at` (a pure function of the step); ``train_loss`` stays the CTC loss and
``align_loss`` is logged beside it.

With ``ema_decay`` set, an exponential moving average of the weights (and batch-norm statistics)
follows the trained ones (`torch.optim.swa_utils.AveragedModel`); it is the model that is
validated and written to ``model.pt``.

Resuming: a checkpoint holding the weights, optimizer, RNG state, history and early-stopping
state is written atomically every ``checkpoint_every`` steps under
``{out_dir}/resume/{run_hash}/last.pt``, with the history so far beside it (``history.csv``).
A rerun (after SIGKILL, a crash, a pre-empted node) continues from it, and on CPU ends with
the same weights as an uninterrupted run: the data stream and the dropout RNG are functions of
``(seed, rank, step)`` (`models.data.TrainStream`; the global torch RNG is reseeded every
step), and the learning rate is a pure function of step.
SIGTERM (a cluster's time limit, pre-emption, ``kill``) stops the run after the step under way
with its state at that step written (`TrainingStopped`, exit status 143): no step is lost.

Several GPUs or nodes: run this module under ``torchrun`` (it reads RANK, WORLD_SIZE and
LOCAL_RANK); every rank trains on its own resampled stream, gradients are averaged by DDP,
and rank 0 validates and writes every file::

    # one machine, 4 GPUs (shards and charset already built by snakemake under results/)
    torchrun --standalone --nproc_per_node 4 -m models.train \\
        --config configs/config.yaml --experiment line_crnn_vgg
    # two nodes (run on each; results/ on a shared file system)
    torchrun --nnodes 2 --nproc_per_node 4 --rdzv_backend c10d --rdzv_endpoint HOST:29500 \\
        -m models.train --config configs/config.yaml --experiment line_crnn_vgg

``--config`` takes several files, merged in order as ``snakemake --configfile a.yaml b.yaml``
merges them. ``batch_size`` is per process. The outputs are the ones the ``train`` rule
declares. A run's resume state is keyed by its hash, which counts the processes (they split
the data stream, and each takes ``batch_size``), and records the one-process hash beside it
(``run.json``): should Snakemake rerun the rule later (one process), it finds the finished
torchrun run of the same job and only rewrites its outputs from it. An unfinished run of the
same job on another number of processes is neither continued (the batches would differ) nor
deleted: the training stops with `ResumeConflictError`, saying how to go on.

One training per output folder: the writer (rank 0) holds an exclusive ``flock`` on
``{out_dir}/train.lock`` from start to end (`output_lock`), and a second training of the same
folder (a Snakemake rerun after ``--unlock`` while an orphaned run goes on, a hand-started one)
stops at once with `OutputLockedError` instead of writing the same checkpoints. When its
settings are not the running one's, it leaves its run key (``wanted.json``), and the running
one, finishing, writes no outputs (the config changed under it).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import logging
import math
import os
import shutil
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel

from models import locks
from models.checkpoint import (
    CheckpointError,
    ModelMeta,
    load_checkpoint,
    make_checkpoint,
    save_atomic,
    save_model,
    unwrap,
)
from models.cli import stops_on_interrupt, thread_count
from models.data import (
    Batch,
    DataError,
    TrainStream,
    check_labels,
    close_loader,
    eval_batches,
    train_loader,
)
from models.devices import (
    DeviceError,
    DistEnv,
    autocast,
    dist_env,
    init_distributed,
    memory_format,
    resolve_device,
    shutdown_distributed,
)
from models.families import Family, make_family
from models.progress import progress_bar
from models.registry import build_model, experiment_problems, input_spec
from models.specs import TrainJob, TrainSpec, recorded_settings, run_hashes
from models.transfer import TransferError, init_from
from synth.atomic import output_folder_why, write_bytes_atomic, write_text_atomic
from synth.charset import CharsetError, read_charset
from synth.schema import (
    check_schema,
    config_with_origins,
    named_with_file,
    problems_error,
    with_config_file,
)

try:
    import fcntl
except ImportError:  # Windows: no flock; trainings there are not guarded against each other
    fcntl = None

log = logging.getLogger(__name__)
T = TypeVar("T")

LOCK_FILE = "train.lock"
# Left by a training refused while another held the lock: the refused job's run key (for one
# process). The holder, finishing, leaves its outputs unwritten when that key is not its own:
# the config changed while it ran (a killed Snakemake's orphan), and the rerun that follows
# must train the new settings, not find the old run's model newer than its inputs.
WANTED_FILE = "wanted.json"
RUN_INFO = "run.json"  # beside a run's last.pt: its hashes, processes and step

HISTORY_COLUMNS = (
    "step",
    "lr",
    "train_loss",
    "val_loss",
    "val_acc",
    "grad_norm",
    "images_per_s",
    "elapsed_s",
    "align_loss",
)


class NonFiniteLossError(FloatingPointError):
    """The loss (or the gradient norm) became NaN or infinite; training stopped."""


class ResumeConflictError(RuntimeError):
    """An unfinished run of the same job on another number of processes holds resume state:
    not continued (its batches would differ), not deleted (hours of GPU time, perhaps)."""


class RankStoppedError(RuntimeError):
    """Under ``torchrun``, rank 0 failed at what it does alone (reading the validation shards,
    validating, writing): the other ranks stop with it (its own error names the cause)."""


class TrainingStopped(RuntimeError):
    """SIGTERM (a cluster's time limit or pre-emption, ``kill``) stopped the run after the step
    under way: its state at that step is saved, and a rerun resumes from it."""


STOPPED = 128 + signal.SIGTERM  # the exit status of a command SIGTERM stopped (143)


@contextmanager
def _stop_on_sigterm() -> Iterator[Callable[[], bool]]:
    """Yield whether SIGTERM has come since: the training then stops after the step under way
    and saves its state there (`TrainingStopped`), rather than lose the steps since its last
    checkpoint. SLURM sends SIGTERM at a job's time limit and SIGKILL ``KillWait`` seconds
    later (30 by default): a step and a checkpoint fit. Another SIGTERM changes nothing (SLURM
    may send one from the step daemon and one through ``srun``): SIGKILL or Ctrl-C stops at once.
    Outside the main thread (where no handler can be set) nothing is asked, and SIGTERM kills.
    DataLoader workers ignore it (`models.data.train_loader`): SLURM and ``torchrun`` signal a
    rank's whole process group, and a worker it ended would stop the step with an error."""
    if threading.current_thread() is not threading.main_thread():
        yield lambda: False
        return
    asked: list[int] = []

    def handler(signum: int, frame: Any) -> None:
        if not asked:
            log.warning(
                "SIGTERM: stopping after the step under way (the next one, before the "
                "first), its state saved"
            )
        asked.append(signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield lambda: bool(asked)
    finally:
        signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)


class OutputPathError(RuntimeError):
    """A file the training writes cannot be written where it goes (names the path), found
    before it trains: the final write failed after the whole run."""


class OutputLockedError(RuntimeError):
    """Another training holds the output folder's lock (names the folder and, if known, the
    holder's pid); nothing of the run was trained or written but its wish (``wanted.json``)."""


@dataclass(frozen=True)
class TrainResult:
    """What a finished run reports (also written to ``train.json``)."""

    steps: int
    stopped_early: bool
    resumed_from: int
    best_val_loss: float | None
    best_step: int | None
    final_val_loss: float | None
    final_val_acc: float | None
    wall_s: float
    images_per_s: float
    params: int
    device: str
    world_size: int
    run_hash: str


def lr_at(step: int, spec: TrainSpec) -> float:
    """Learning rate of optimizer step ``step`` (0-based): a pure function of the step.

    Linear warm-up over ``warmup_steps``, then ``cosine`` (to ``lr * min_lr_ratio`` at the last
    step), ``onecycle`` (linear down to ``lr * min_lr_ratio``; warm-up defaults to 30% of the
    steps when ``warmup_steps`` is 0), ``constant``, or ``wsd`` (warm-up, stable, decay: ``lr``
    held until the last ``decay_fraction`` of the steps, then linear down to ``lr *
    min_lr_ratio`` at the last step; Hu et al. 2024, Hägele et al. 2024).
    """
    peak, low = spec.lr, spec.lr * spec.min_lr_ratio
    warmup = spec.warmup_steps
    if spec.schedule == "onecycle" and warmup == 0:
        warmup = max(1, round(0.3 * spec.steps))
    if step < warmup:
        return peak * (step + 1) / warmup
    if spec.schedule == "constant":
        return peak
    fall = warmup  # the step the fall from the peak starts at
    if spec.schedule == "wsd":
        # at least two steps: the decay's first is at the peak, and a decay of one would hold
        # it to the end, never reaching lr * min_lr_ratio
        fall = max(warmup, spec.steps - max(2, round(spec.decay_fraction * spec.steps)))
        if step < fall:
            return peak
    span = max(1, spec.steps - 1 - fall)
    progress = min(1.0, (step - fall) / span)
    if spec.schedule == "cosine":
        return low + 0.5 * (1.0 + math.cos(math.pi * progress)) * (peak - low)
    return peak - progress * (peak - low)  # onecycle and wsd's decay: linear down


def align_weight_at(step: int, spec: TrainSpec) -> float:
    """Weight of the alignment loss (`CTCFamily.align_loss`) at optimizer step ``step``, a pure
    function of the step: ``align_weight``, falling linearly to 0 at step ``align_steps`` (0:
    held for every step)."""
    if spec.align_weight <= 0:
        return 0.0
    if spec.align_steps == 0:
        return spec.align_weight
    return spec.align_weight * max(0.0, 1.0 - step / spec.align_steps)


def ema_update(decay: float) -> Any:
    """`AveragedModel`'s update for an exponential moving average with a warm-up: after ``n``
    updates the average moves ``1 - min(decay, (1 + n) / (10 + n))`` of the way to the weights
    (as TensorFlow's ``ExponentialMovingAverage`` with ``num_updates``), so the random initial
    weights are soon forgotten instead of weighing ``decay ** steps`` at the end."""

    @torch.no_grad()
    def update(averaged: list[torch.Tensor], current: list[torch.Tensor], n: torch.Tensor) -> None:
        n_updates = float(n)
        weight = 1 - min(decay, (1 + n_updates) / (10 + n_updates))
        for avg, cur in zip(averaged, current, strict=True):
            if avg.is_floating_point():
                avg.lerp_(cur, weight)
            else:  # counters such as batch norm's num_batches_tracked
                avg.copy_(cur)

    return update


def training_objective(
    family: Family,
    outputs: Any,
    targets: Any,
    batch: Any,
    label_smoothing: float,
    align_weight: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A training step's losses: the family's loss with ``label_smoothing``, the alignment loss
    (0 unless ``align_weight`` > 0: each character's frame told what it reads,
    `models.families.CTCFamily.align_loss`) and what is minimised, the first plus
    ``align_weight`` times the second. ``batch`` gives ``widths`` and ``centers``."""
    loss = family.loss(outputs, targets, batch.widths, label_smoothing=label_smoothing)
    if align_weight <= 0:
        return loss, torch.zeros((), device=loss.device), loss
    aligned = family.align_loss(outputs, targets, batch.centers, batch.widths)
    return loss, aligned, loss + align_weight * aligned


def clip_gradients(model: nn.Module, clip_grad: float) -> torch.Tensor:
    """Scale ``model``'s gradients down to a total norm of ``clip_grad`` (0: no clipping); returns
    the norm before clipping."""
    max_norm = clip_grad if clip_grad > 0 else math.inf
    return nn.utils.clip_grad_norm_(model.parameters(), max_norm)


def step_seed(seed: int, rank: int, step: int) -> int:
    """Seed of the global torch RNG (dropout) at ``step`` on ``rank``."""
    ss = np.random.SeedSequence([seed, rank, step, 0x7EED])
    return int(ss.generate_state(1, dtype=np.uint64)[0] >> 1)


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups: weight decay on weight matrices and kernels, none on biases and norms."""
    decay, no_decay = [], []
    for _, p in sorted(model.named_parameters()):
        if p.requires_grad:
            (decay if p.dim() >= 2 else no_decay).append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def _rng_state(device: torch.device) -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: Mapping[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def _write_history(path: Path, rows: Sequence[Mapping[str, Any]]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=HISTORY_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _fmt(row.get(k)) for k in HISTORY_COLUMNS})
    write_text_atomic(path, buf.getvalue())


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


@torch.no_grad()
def validate(
    model: nn.Module,
    family: Family,
    batches: Sequence[Batch],
    device: torch.device,
    amp: bool,
) -> tuple[float, float]:
    """Mean loss and exact-match accuracy (greedy decoding) over ``batches``."""
    was_training = model.training
    model.eval()
    total_loss, correct, count = 0.0, 0, 0
    for batch in batches:
        images = batch.images.to(device, non_blocking=True, memory_format=memory_format(device))
        with autocast(device, amp):
            outputs = model(images)
        targets = family.encode(batch.texts)
        loss = float(family.loss(outputs, targets, batch.widths))
        if not math.isfinite(loss):  # outputs of NaN or inf: the loop stops, naming the step
            model.train(was_training)
            return loss, 0.0
        total_loss += loss * len(batch.texts)
        preds = family.decode(outputs, batch.widths)
        correct += sum(p.text == t for p, t in zip(preds, batch.texts, strict=True))
        count += len(batch.texts)
    model.train(was_training)
    return total_loss / max(1, count), correct / max(1, count)


def _broadcast_floats(values: Sequence[float], env: DistEnv, device: torch.device) -> list[float]:
    """Rank 0's values on every rank (validation results drive early stopping everywhere)."""
    if not env.distributed:
        return list(values)
    t = torch.tensor(list(values), dtype=torch.float64, device=device)
    torch.distributed.broadcast(t, src=0)
    return t.tolist()


def _on_main(fn: Callable[[], T], what: str, env: DistEnv, device: torch.device) -> T | None:
    """``fn()`` on rank 0 alone (None elsewhere). Under ``torchrun`` every rank learns whether it
    raised, and the others stop with `RankStoppedError` rather than waiting for rank 0 in the
    next collective (on several nodes, until the backend's timeout: torchrun stops the workers
    of rank 0's node only)."""
    result, error = _run_on_main(fn, env)
    _shared_outcome(error, [], what, env, device)
    return result


def _main_floats(
    fn: Callable[[], Sequence[float]], n: int, what: str, env: DistEnv, device: torch.device
) -> list[float]:
    """As `_on_main`, for an ``fn`` that returns ``n`` floats: every rank gets rank 0's, in the
    one broadcast that also says whether ``fn`` raised."""
    values, error = _run_on_main(lambda: [float(v) for v in fn()], env)
    return _shared_outcome(error, values or [0.0] * n, what, env, device)


def _run_on_main(fn: Callable[[], T], env: DistEnv) -> tuple[T | None, Exception | None]:
    """``fn()`` and None on rank 0, or None and what it raised (for `_shared_outcome` to raise
    once every rank knows); None and None on the other ranks."""
    if not env.is_main:
        return None, None
    try:
        return fn(), None
    except Exception as e:
        return None, e


def _shared_outcome(
    error: Exception | None, values: list[float], what: str, env: DistEnv, device: torch.device
) -> list[float]:
    """Rank 0's ``error`` (None: none) and ``values`` on every rank, in one broadcast; ``error``
    raised on rank 0, `RankStoppedError` on the others."""
    if env.distributed:
        failed, *values = _broadcast_floats([float(error is not None), *values], env, device)
        if failed:  # every rank has the word before rank 0 leaves the group (gloo aborts else)
            torch.distributed.barrier()
        if failed and error is None:
            raise RankStoppedError(
                f"rank 0 stopped while {what} (its error says why); rank {env.rank} stops with it"
            )
    if error is not None:
        raise error
    return values


def _kept(resume_path: Path) -> str:
    """The last good checkpoint, for an error that stops training."""
    if not resume_path.exists():
        return "none"
    return f"{resume_path} (step {_saved_step(resume_path)})"


TB_RUN = "run_hash"  # in the tb/ folder: the key of the run whose curves its logs hold


def _tensorboard(
    enabled: bool, folder: Path, step: int, history: list[dict[str, Any]], key: str
) -> Any:
    """A SummaryWriter when asked for and installed (``pip install '.[tensorboard]'``), for the
    run keyed ``key`` at ``step``, whose rows so far are ``history``.

    Its ``purge_step``, ``step + 1``, hides what an interrupted run logged after the checkpoint
    it resumes from, not the rows of the checkpoint's own step, which its history holds and
    the run does not log again. The folder's ``run_hash`` file names the run its logs are of:
    logs of another run (another config trained into this folder, one found finished while
    ``train.tensorboard`` was off in between) or of none named are removed, and the run's
    history logged first, so the logs always hold this whole run and no other's.
    """
    if not enabled:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        log.warning("train.tensorboard is on but tensorboard is not installed; skipping its logs")
        return None
    marker = folder / TB_RUN
    ours = marker.is_file() and marker.read_text(encoding="utf-8").strip() == key
    events = sorted(folder.glob("events.out.tfevents.*"))
    if not ours:
        for old in events:
            old.unlink()
        folder.mkdir(parents=True, exist_ok=True)
        write_text_atomic(marker, key + "\n")
    writer = SummaryWriter(log_dir=str(folder), purge_step=step + 1)
    if not (ours and events):
        for row in history:
            _log_scalars(writer, row)
    return writer


def _log_scalars(writer: Any, row: Mapping[str, Any]) -> None:
    """One row of the history (`HISTORY_COLUMNS`) as TensorBoard scalars at its step."""
    for k, v in row.items():
        if k != "step" and v is not None:
            writer.add_scalar(k, v, row["step"])


@contextmanager
def output_lock(out_dir: str | os.PathLike) -> Iterator[Path | None]:
    """Hold an exclusive lock on a training's output folder while the block runs.

    Two trainings of one folder would write the same ``last.pt`` and ``model.pt``, and one with
    another config would delete the other's resume state as stale, so a second one is refused at
    once. The lock is an advisory, non-blocking ``flock`` on ``{out_dir}/train.lock``. The kernel
    drops it when the holder exits, however it exits (a forked child, such as a DataLoader
    worker, closes its copy as it starts: `models.locks`), so a SIGKILLed run leaves the file
    behind but never a held lock: no pid file to go stale. The file holds the holder's pid and
    host, for the refusal's message. It stays, emptied, after the run: were it removed, a process
    that had opened it just before could lock the removed file while a later one locks a new
    one, and both would train.

    Args:
        out_dir: The output folder (created if need be). It is not a declared output of the
            workflow, nor is the lock file, so Snakemake never removes or checks either.

    Yields:
        The lock file; None where there is no ``flock`` (Windows, silently) or the file system
        refuses it (with a warning): trainings there are not guarded against each other.

    Raises:
        OutputLockedError: Another process holds the lock.
    """
    folder = Path(out_dir)
    if fcntl is None:
        yield None
        return
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_FILE
    # no O_TRUNC: the pid in the file is the holder's until this process holds the lock
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            held = True
        except BlockingIOError:
            # empty while the holder is between its lock and its write
            pid, _, host = os.pread(fd, 256, 0).decode("utf-8", errors="replace").partition(" ")
            who = f"pid {pid} on {host.strip()}" if pid else "pid unknown"
            stop = f" (kill {pid})" if pid else ""
            raise OutputLockedError(
                f"{folder} is being trained by another process ({who}; lock {path}): wait for "
                f"it to finish, or stop it{stop} and rerun, which resumes from its last checkpoint"
            ) from None
        except OSError as e:  # ENOLCK, EOPNOTSUPP: an NFS without lockd, some cluster mounts
            log.warning(
                "cannot lock %s (%s): a second training of %s would not be stopped",
                path,
                e.strerror,
                folder,
            )
            held = False
        if held:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()} {socket.gethostname()}\n".encode(), 0)
            locks.hold(fd)
        try:
            yield path if held else None
        finally:
            if held:  # so a refusal just after the next holder's lock names no finished pid
                os.ftruncate(fd, 0)
    finally:
        locks.release(fd)
        os.close(fd)  # releases the lock


# What a run writes into its output folder when it ends (the resume state as it goes).
FINAL_OUTPUTS = ("model.pt", "history.csv", "train.json")


def output_path_problem(out_dir: str | os.PathLike) -> str | None:
    """Why a training's outputs cannot be written in ``out_dir``, or None: a file where the
    folder goes, a folder where one of `FINAL_OUTPUTS` goes, or a place no file can be made
    (`synth.atomic.output_folder_why`, which makes no folder)."""
    why = output_folder_why(out_dir, FINAL_OUTPUTS)
    return None if why is None else f"{out_dir}: {why}"


@contextmanager
def _writer_lock(out_dir: Path, env: DistEnv, device: torch.device) -> Iterator[None]:
    """`output_lock`, taken by the writer (rank 0) alone, so the ranks of one run never lock
    each other out, once its outputs are found writable (`output_path_problem`); under
    ``torchrun`` every rank learns whether rank 0 got it (`_on_main`), and all of them stop
    together rather than waiting for rank 0 in the next collective."""

    def lock() -> None:
        if problem := output_path_problem(out_dir):
            raise OutputPathError(problem)
        held.enter_context(output_lock(out_dir))

    with ExitStack() as held:
        _on_main(lock, f"locking {out_dir}", env, device)
        yield


def train(job: TrainJob, command_line: bool = False) -> TrainResult:
    """Train one experiment; write ``model.pt``, ``history.csv`` and ``train.json``.

    ``command_line`` (``python -m models.train``, under ``torchrun`` or not) is recorded in
    ``train.json``: Snakemake keeps no record of such a run, so the workflow compares its
    settings with the config's itself, and warns when an edit would leave it stale.

    Resumes from ``{out_dir}/resume/{run_hash}/last.pt`` when it exists. Under ``torchrun`` every
    rank runs this function; rank 0 writes the files, and holds `output_lock` on ``out_dir``
    throughout.

    Raises:
        OutputLockedError: Another training of ``out_dir`` is running: nothing is trained, and
            this run's key (read as any start reads it, the shards' digests among it) is left
            in ``wanted.json`` for that one (`_want_outputs`).
        OutputPathError: An output cannot be written where it goes (`output_path_problem`):
            nothing is trained, and the folder is left as it was.
        NonFiniteLossError: The loss or gradient norm became NaN/inf (the last good checkpoint
            is kept, so a fixed rerun can resume from it).
        models.data.DataError: A shard, image or label that cannot be used (named).
    """
    spec = job.train
    env = dist_env()
    # A job outside torchrun takes a GPU no other job holds (Snakemake runs several at once).
    device = resolve_device(job.device, env.local_rank, claim=not env.distributed)
    init_distributed(env, device)
    try:
        try:
            with (
                _writer_lock(Path(job.out_dir), env, device),
                _stop_on_sigterm() as asked,
                ExitStack() as cleanup,
            ):
                return _train(job, spec, env, device, command_line, asked, cleanup)
        except OutputLockedError:
            if env.is_main:
                _want_outputs(job)
            raise
    finally:
        shutdown_distributed()


def _want_outputs(job: TrainJob) -> None:
    """Tell the training that holds ``job``'s folder which run its outputs are now wanted of
    (`WANTED_FILE`, this job's run key for one process; None where it cannot be computed, which
    no run matches)."""
    try:
        key = run_hashes(job, read_charset(job.charset))[1]
    except Exception as e:  # a refusal is said whatever its key: the holder then writes nothing
        log.warning("cannot compute this job's run key (%s): %s", type(e).__name__, e)
        key = None
    try:
        write_bytes_atomic(
            Path(job.out_dir) / WANTED_FILE, json.dumps({"run": key}).encode() + b"\n"
        )
    except OSError as e:
        log.warning("cannot write %s: %s", Path(job.out_dir) / WANTED_FILE, e)


def _wanted_elsewhere(out_dir: Path, one_process_key: str) -> bool:
    """Whether a training refused while this one ran asked for another run's outputs
    (`WANTED_FILE`)."""
    try:
        wanted = json.loads((out_dir / WANTED_FILE).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return False
    except (OSError, ValueError):
        return True
    return not isinstance(wanted, dict) or wanted.get("run") != one_process_key


def _train(
    job: TrainJob,
    spec: TrainSpec,
    env: DistEnv,
    device: torch.device,
    command_line: bool,
    stop_asked: Callable[[], bool],
    cleanup: ExitStack,
) -> TrainResult:
    t_start = time.perf_counter()
    out_dir = Path(job.out_dir)
    if env.is_main:  # a wish left for the run before this one, which has ended
        (out_dir / WANTED_FILE).unlink(missing_ok=True)
    charset = read_charset(job.charset)
    family = make_family(job.model, charset, job.model_kwargs)
    geometry = input_spec(job.model, **job.model_kwargs)
    amp = spec.amp and device.type == "cuda"

    # Model: the same initial weights on every rank (DDP also broadcasts rank 0's); fine-tuning
    # starts from another checkpoint's, and a resumed run then loads its own.
    torch.manual_seed(job.seed)
    layout = memory_format(device)
    model = build_model(job.model, family.num_classes, **job.model_kwargs)
    transfer = None
    if spec.init_from is not None:
        if Path(spec.init_from).resolve() == (out_dir / "model.pt").resolve():
            raise TransferError(
                f"train.init_from: {spec.init_from} is this run's own model.pt; copy it "
                "elsewhere to start from it (each rerun would start from the last one's end)"
            )
        transfer = init_from(model, job.model, job.model_kwargs, charset, spec.init_from)
    model = model.to(device, memory_format=layout)
    own_key, one_process_key = run_hashes(job, charset, env.world_size)
    key, trained_world_size = own_key, env.world_size
    elsewhere = _run_on_other_process_count(out_dir / "resume", one_process_key, own_key)
    if elsewhere is not None:
        other, info = elsewhere
        size = info.get("world_size")
        if not info.get("finished"):
            how = (
                f"torchrun --nproc_per_node {size} -m models.train"
                if size != 1
                else "one process (snakemake, or python -m models.train without torchrun)"
            )
            raise ResumeConflictError(
                f"{out_dir / 'resume' / other} holds an unfinished run of this job on {size} "
                f"process{'es' if size != 1 else ''} (step {info.get('step')} of "
                f"{info.get('steps')}), and this run has {env.world_size}: continue it with "
                f"{how} (same config), or delete that folder to train afresh on this number "
                "of processes"
            )
        if env.world_size == 1:
            # The train rule's rerun (one process) of a job torchrun finished: its outputs.
            # A torchrun run asked for on another count trains (the finished state is stale).
            log.info(
                "run %s, this job on %s processes, finished at step %s: its weights are this "
                "run's outputs",
                other,
                size,
                info.get("step"),
            )
            key, trained_world_size = other, int(size or env.world_size)
    resume_dir = out_dir / "resume" / key
    resume_path = resume_dir / "last.pt"
    log.info(
        "experiment %s: model %s on %s (rank %d/%d), run %s",
        job.experiment,
        job.model,
        device,
        env.rank,
        env.world_size,
        key,
    )
    n_params = sum(p.numel() for p in model.parameters())
    optimizer = torch.optim.AdamW(
        param_groups(model, spec.weight_decay), lr=lr_at(0, spec), betas=(0.9, 0.999)
    )
    # The weight average, when set, is what is validated and shipped.
    ema = (
        AveragedModel(model, multi_avg_fn=ema_update(spec.ema_decay), use_buffers=True)
        if spec.ema_decay > 0
        else None
    )
    shipped = ema.module if ema is not None else model
    # The settings as run: the threads it trains with, not the scheduling hints it was given.
    recorded = recorded_settings(spec, torch.get_num_threads())
    meta = ModelMeta(
        model=job.model,
        model_kwargs=dict(job.model_kwargs),
        charset=list(charset),
        task=job.task,
        input=geometry,
        train=recorded,
    )

    # Resume state.
    step, history = 0, []
    best_loss, best_step, bad_vals, elapsed_before = math.inf, None, 0, 0.0
    stopped_early = False
    last_val: tuple[float, float] | None = None
    # The log window (sums since the last history row), so rows match an uninterrupted run's
    # when log_every does not divide checkpoint_every.
    loss_sum, norm_sum, n_logged, images_seen, busy = 0.0, 0.0, 0, 0, 0.0
    align_sum, n_aligned = 0.0, 0
    ckpt = _load_resume(resume_path, model)
    if ckpt is None and key != own_key:
        # The adopted state no longer fits the model: this run trains, under its own key.
        key, trained_world_size = own_key, env.world_size
        resume_dir = out_dir / "resume" / key
        resume_path = resume_dir / "last.pt"
    if ckpt is not None:
        state = ckpt["resume"]
        optimizer.load_state_dict(state["optimizer"])
        if ema is not None:
            ema.load_state_dict(state["ema"])
        _set_rng_state(state["rng"], device)
        step, history = int(state["step"]), list(state["history"])
        best_loss = float(state["best_val_loss"])
        best_step = state["best_step"]
        bad_vals = int(state["bad_validations"])
        stopped_early = bool(state["stopped_early"])
        elapsed_before = float(state["elapsed_s"])
        last_val = tuple(state["last_val"]) if state["last_val"] is not None else None
        if "log_window" in state:  # the alignment loss's sums since it exists
            window = list(state["log_window"])
            loss_sum, norm_sum, n_logged, images_seen, busy = window[:5]
            align_sum, n_aligned = window[5:] or (0.0, 0)
        log.info("resuming run %s from step %d (%s)", key, step, resume_path)
        threads = state.get("threads")
        finished = step >= spec.steps or stopped_early
        if finished and threads:
            # A finished run taken over (torchrun's, say): the threads it trained with, not
            # this process's, which trains nothing.
            recorded = recorded_settings(spec, int(threads))
            meta = replace(meta, train=recorded)
        elif device.type == "cpu" and threads and threads != torch.get_num_threads():
            log.warning(
                "run %s started with %d CPU threads and resumes with %d: its weights will "
                "differ from an uninterrupted run's (CPU kernels sum in another order)",
                key,
                threads,
                torch.get_num_threads(),
            )
    resumed_from = step
    if env.distributed:
        _check_same_step(step, env, device, resume_path)

    ddp_model: nn.Module = model
    if env.distributed:
        ddp_model = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )

    # Data: a deterministic function of (seed, rank, step); validation batches held in memory.
    stream = TrainStream(
        job.read_train_shards,
        geometry,
        family,
        batch_size=spec.batch_size,
        seed=job.seed,
        steps=spec.steps,
        start_step=step,
        segment_steps=spec.checkpoint_every,
        lanes=max(1, spec.num_workers),
        shuffle_buffer=spec.shuffle_buffer,
        rank=env.rank,
        world_size=env.world_size,
        curriculum_steps=spec.curriculum_steps,
        labels_checked=env.distributed,
        need_centers=spec.align_weight > 0,
    )
    if env.distributed:  # every label before the first step, read once (rank 0) for all
        _on_main(
            lambda: check_labels(stream.indexes, family, need_centers=spec.align_weight > 0),
            "reading the training labels",
            env,
            device,
        )
    val_set: list[Batch] = (
        _on_main(
            lambda: list(
                eval_batches(job.val_shards, geometry, spec.batch_size, family, spec.val_batches)
            ),
            "reading the validation shards",
            env,
            device,
        )
        or []
    )

    def save_resume() -> None:
        resume = {
            "step": step,
            "optimizer": optimizer.state_dict(),
            "ema": ema.state_dict() if ema is not None else None,
            # The schedule is a pure function of the step: its state is the step and the spec.
            "scheduler": {
                "schedule": spec.schedule,
                "next_lr": lr_at(min(step, spec.steps - 1), spec),
            },
            "rng": _rng_state(device),
            "history": history,
            "best_val_loss": best_loss,
            "best_step": best_step,
            "bad_validations": bad_vals,
            "stopped_early": stopped_early,
            "elapsed_s": elapsed_before + time.perf_counter() - t_start,
            "last_val": list(last_val) if last_val is not None else None,
            "log_window": [loss_sum, norm_sum, n_logged, images_seen, busy, align_sum, n_aligned],
            "threads": torch.get_num_threads(),
            "run_hash": key,
            # run.json's fields, for a kill between this file and run.json: a run on another
            # process count reads them here (`_run_info`), and does not take it for stale
            "run_info": run_info(),
        }
        ckpt = make_checkpoint(model, _with_step(meta, step), resume)
        save_atomic(ckpt, resume_path)
        # the curves so far, to follow a long run by (or to read a stopped one): the final
        # history.csv is written only when training ends
        _write_history(resume_dir / "history.csv", history)
        write_run_info()
        forget_stale_runs()

    def run_info() -> dict[str, Any]:
        return {
            "run_hash": key,
            "one_process_hash": one_process_key,
            "world_size": env.world_size,
            "step": step,
            "steps": spec.steps,
            "finished": step >= spec.steps or stopped_early,
        }

    def write_run_info() -> None:
        write_bytes_atomic(resume_dir / RUN_INFO, (json.dumps(run_info()) + "\n").encode())

    stale_removed = False

    def forget_stale_runs() -> None:
        # Other runs' state goes once this run's own is on disk, never before: a run that
        # fails to start (a damaged shard, whose bytes change the key) removes nothing, and
        # the run that holds the state resumes from it once the shard is put right.
        nonlocal stale_removed
        if not stale_removed:
            _remove_stale_runs(out_dir / "resume", keep=key)
            stale_removed = True

    if env.is_main and ckpt is not None:  # resumed: its state is on disk, and its data read
        forget_stale_runs()
        # Its history.csv is written after last.pt too: a kill between the two left it a
        # checkpoint behind, and a finished run writes no checkpoint again to put it right.
        _write_history(resume_dir / "history.csv", history)
        if key == own_key:
            # The state is written before its run.json, which a kill between the two left a
            # step behind (saying unfinished, another process count would refuse to go on).
            write_run_info()

    # closed however the run ends (a stop by SIGTERM, an error); closing twice does nothing
    bar = cleanup.enter_context(progress_bar(spec.steps, "step", step, env.is_main))
    writer = _tensorboard(spec.tensorboard and env.is_main, out_dir / "tb", step, history, key)
    if writer is not None:
        cleanup.callback(writer.close)
    # Throughput counts the steps (data wait included), not validation or checkpoint writing.
    ddp_model.train()
    loader = train_loader(stream, spec.num_workers, device)
    batches: Iterator[Batch] = iter(loader)
    # Its workers told to stop however the run ends: a traceback kept (a caller's, a test
    # runner's) would keep the iterator, and its workers, till the interpreter's exit.
    cleanup.callback(close_loader, batches)
    while step < spec.steps and not stopped_early:
        t_step = time.perf_counter()
        batch = next(batches)
        lr = lr_at(step, spec)
        for group in optimizer.param_groups:
            group["lr"] = lr
        torch.manual_seed(step_seed(job.seed, env.rank, step))  # dropout: a function of step

        images = batch.images.to(device, non_blocking=True, memory_format=layout)
        targets = family.encode(batch.texts)
        with autocast(device, amp):
            outputs = ddp_model(images)
        # the reader's masks, which the plots and export need; a CTC model's frame count
        family.check_output(outputs, images)
        # fp32 inside the family; validation losses (eval_batches) are never smoothed
        weight = align_weight_at(step, spec)
        loss, aligned, objective = training_objective(
            family, outputs, targets, batch, spec.label_smoothing, weight
        )
        optimizer.zero_grad(set_to_none=True)
        objective.backward()
        grad_norm = clip_gradients(model, spec.clip_grad)
        # SIGTERM on any rank stops every rank after this step (torchrun passes it to each, not
        # necessarily within one step): told in the all-reduce every step makes anyway.
        asked = torch.full((), float(stop_asked()), device=loss.device)
        stats = torch.stack(
            [loss.detach().float(), grad_norm.detach().float(), aligned.detach().float(), asked]
        )
        if env.distributed:
            torch.distributed.all_reduce(stats)  # a NaN on any rank stops every rank
            stats /= env.world_size
        loss_value, norm_value, align_value, stop_value = stats.tolist()
        if not math.isfinite(align_value):
            loss_value = align_value  # stops as a non-finite loss does
        if not (math.isfinite(loss_value) and math.isfinite(norm_value)):
            if step == 0:
                advice = (
                    "At the first step: the model's forward gives NaN or inf from the start "
                    "(check it with synthocr-check-model), or train.lr is far too high."
                )
            else:
                advice = "Lower train.lr, raise warmup_steps" + (
                    " or lower clip_grad" if spec.clip_grad > 0 else " or set clip_grad"
                )
                advice += ", then rerun."
            raise NonFiniteLossError(
                f"{job.experiment}: loss {loss_value} / gradient norm {norm_value} at step "
                f"{step} (lr {lr:.3g}; batch keys {batch.keys[:4]}...): training stopped. "
                f"Last good checkpoint: {_kept(resume_path)}. {advice}"
            )
        optimizer.step()
        if ema is not None:
            ema.update_parameters(model)
        step += 1
        loss_sum, norm_sum, n_logged = loss_sum + loss_value, norm_sum + norm_value, n_logged + 1
        align_sum, n_aligned = align_sum + align_value, n_aligned + (weight > 0)
        images_seen += len(batch.texts) * env.world_size
        busy += time.perf_counter() - t_step
        bar.set_postfix(loss=f"{loss_value:.4f}", lr=f"{lr:.2e}", refresh=False)
        bar.update(1)

        row: dict[str, Any] = {}
        last = step == spec.steps
        if step % spec.log_every == 0 or last:
            row.update(
                train_loss=loss_sum / n_logged,
                grad_norm=norm_sum / n_logged,
                images_per_s=images_seen / max(1e-9, busy),
            )
            if n_aligned:
                row.update(align_loss=align_sum / n_aligned)
            loss_sum, norm_sum, n_logged, images_seen, busy = 0.0, 0.0, 0, 0, 0.0
            align_sum, n_aligned = 0.0, 0
        if step % spec.val_every == 0 or last:
            val_loss, val_acc = _main_floats(
                lambda: validate(shipped, family, val_set, device, amp),
                2,
                "validating",
                env,
                device,
            )
            if not math.isfinite(val_loss):
                raise NonFiniteLossError(
                    f"{job.experiment}: validation loss {val_loss} at step {step}: the model's "
                    "outputs in eval mode are not finite (batch norm's running statistics, or a "
                    "forward that differs in eval mode): training stopped. Last good "
                    f"checkpoint: {_kept(resume_path)}."
                )
            last_val = (val_loss, val_acc)
            row.update(val_loss=val_loss, val_acc=val_acc)
            if val_loss < best_loss:
                best_loss, best_step, bad_vals = val_loss, step, 0
            else:
                bad_vals += 1
                if spec.early_stop_patience and bad_vals >= spec.early_stop_patience:
                    stopped_early = True
                    # every rank stops; rank 0 says so (others' lines print over its bar)
                    if env.is_main:
                        log.info("early stop at step %d: best val loss at step %s", step, best_step)
        if row:
            row.update(
                step=step,
                lr=lr,
                elapsed_s=elapsed_before + time.perf_counter() - t_start,
            )
            history.append(row)
            if env.is_main:
                log.info(
                    "step %d/%d %s",
                    step,
                    spec.steps,
                    " ".join(f"{k}={_fmt(v)}" for k, v in row.items() if k != "step"),
                )
                if writer is not None:
                    _log_scalars(writer, row)
        if step % spec.checkpoint_every == 0 or last or stopped_early or stop_value > 0:
            _on_main(save_resume, f"writing {resume_path}", env, device)
        if stop_value > 0 and not (last or stopped_early):
            if env.distributed:  # no rank leaves the group while another still receives
                torch.distributed.barrier()
            raise TrainingStopped(
                f"{job.experiment}: stopped by SIGTERM at step {step} of {spec.steps}; its "
                f"state is saved in {resume_path}, and a rerun resumes from it"
            )
    bar.close()
    if writer is not None:
        writer.close()

    # a run found finished (a rerun that only rewrites its outputs) adds no training time
    wall = elapsed_before + (time.perf_counter() - t_start if step > resumed_from else 0.0)
    train_rows = [r for r in history if r.get("images_per_s")]
    result = TrainResult(
        steps=step,
        stopped_early=stopped_early,
        resumed_from=resumed_from,
        best_val_loss=best_loss if math.isfinite(best_loss) else None,
        best_step=best_step,
        final_val_loss=last_val[0] if last_val else None,
        final_val_acc=last_val[1] if last_val else None,
        wall_s=wall,
        images_per_s=float(np.median([r["images_per_s"] for r in train_rows]))
        if train_rows
        else 0.0,
        params=n_params,
        device=str(device),
        world_size=trained_world_size,
        run_hash=key,
    )

    def write_outputs() -> None:
        if _wanted_elsewhere(out_dir, one_process_key):
            log.warning(
                "%s: a training of other settings (or of settings it could not read) was "
                "started and refused while this run went on (%s: the config was edited, say), "
                "so this run's outputs are not written, and the next run trains the config's "
                "settings; this finished run stays in %s, which a run of these settings takes "
                "over at once",
                out_dir,
                out_dir / WANTED_FILE,
                resume_dir,
            )
            return
        save_model(out_dir / "model.pt", shipped, _with_step(meta, step))
        _write_history(out_dir / "history.csv", history)
        info = {
            "experiment": job.experiment,
            "task": job.task,
            "model": job.model,
            "model_kwargs": dict(job.model_kwargs),
            "params": n_params,
            "seed": job.seed,
            "train": recorded,
            "init_from": transfer.to_dict() if transfer is not None else None,
            "train_shards": len(job.read_train_shards),
            "command_line": command_line,
            **result.__dict__,
        }
        write_bytes_atomic(
            out_dir / "train.json", (json.dumps(info, indent=2, sort_keys=True) + "\n").encode()
        )
        log.info("wrote %s (%d steps, %.1f s)", out_dir / "model.pt", step, wall)

    _on_main(write_outputs, f"writing {out_dir}", env, device)  # every rank waits for it
    if env.distributed:
        # and none leaves the group before every rank has rank 0's word (gloo aborts a rank
        # whose broadcast is still being received when rank 0 destroys the group)
        torch.distributed.barrier()
    return result


def _load_resume(path: Path, model: nn.Module) -> dict[str, Any] | None:
    """The resume checkpoint, its weights loaded into ``model``; None when there is none.

    The file is read onto the CPU whatever device the run trains on: ``load_state_dict`` (the
    model's, the optimizer's, the weight average's) copies each tensor to its parameter's device,
    and the RNG states must stay CPU byte tensors (read onto a GPU, ``torch.set_rng_state``
    refuses them, so every resume on CUDA failed).

    State whose weights do not fit the model (the model's code changed under an unchanged
    config) is stale: it is ignored with a warning, the run starts afresh from the model's fresh
    weights, and its first checkpoint replaces the file (every rank decides alike, from the same
    file, and none deletes anything another may still be reading).
    """
    if not path.exists():
        return None
    try:
        ckpt = load_checkpoint(path, map_location="cpu")
    except CheckpointError as e:
        raise CheckpointError(f"{e}; delete {path.parent} to train this run afresh") from e
    target = unwrap(model).state_dict()
    saved = ckpt["state_dict"]
    misfits = sorted(set(target) ^ set(saved)) or [
        k for k in target if tuple(target[k].shape) != tuple(saved[k].shape)
    ]
    if misfits:
        log.warning(
            "%s does not fit the model (%d tensors differ, e.g. %s): starting afresh",
            path,
            len(misfits),
            ", ".join(misfits[:3]),
        )
        return None
    unwrap(model).load_state_dict(saved)
    return ckpt


def _with_step(meta: ModelMeta, step: int) -> ModelMeta:
    return ModelMeta(
        meta.model, meta.model_kwargs, meta.charset, meta.task, meta.input, meta.train, step
    )


def _saved_step(path: Path) -> int | None:
    try:
        return int(load_checkpoint(path)["resume"]["step"])
    except (ValueError, KeyError):
        return None


def _check_same_step(step: int, env: DistEnv, device: torch.device, path: Path) -> None:
    """Every rank must resume from the same step (the resume folder must be shared by all
    nodes); otherwise each rank raises, rather than hanging in a collective."""
    t = torch.tensor([step, -step], dtype=torch.int64, device=device)
    torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
    high, low = int(t[0]), -int(t[1])
    if high != low:
        raise RuntimeError(
            f"ranks found different resume states in {path.parent} (steps {low} to {high}): "
            "put results/ on a file system every node shares, or remove the resume folder"
        )


def _run_on_other_process_count(
    folder: Path, one_process_key: str, key: str
) -> tuple[str, dict[str, Any]] | None:
    """The resume state (its key and ``run.json``) of this job run on another number of
    processes, if there is one: the same one-process hash under another key."""
    if not folder.is_dir():
        return None
    for state in sorted(p for p in folder.iterdir() if p.is_dir() and p.name != key):
        info = _run_info(state)
        if info is not None and info.get("one_process_hash") == one_process_key:
            return state.name, info
    return None


def _run_info(state: Path) -> dict[str, Any] | None:
    """A run's ``run.json`` beside its ``last.pt``; where a kill came between the two (at the
    run's first checkpoint, the file is missing), the copy ``last.pt`` holds. None when there is
    no ``last.pt``, or neither says (state from before the copy was kept)."""
    if not (state / "last.pt").exists():
        return None
    try:
        info = json.loads((state / RUN_INFO).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        try:
            resume = load_checkpoint(state / "last.pt").get("resume")
        except CheckpointError:
            return None
        info = resume.get("run_info") if isinstance(resume, dict) else None
    return info if isinstance(info, dict) else None


def _remove_stale_runs(folder: Path, keep: str) -> None:
    """Delete resume state of runs with another hash, never resumed: another config, other
    shards or charset (new fonts, say), another init_from, or another number of processes.

    Called once the run keyed ``keep`` has its own state on disk (its first checkpoint, or the
    state it resumed from, after its data were read), so a run that stops before then (a
    damaged shard, a missing one) leaves every other run's state as it was."""
    if not folder.is_dir():
        return
    for child in sorted(folder.iterdir()):
        if child.is_dir() and child.name != keep:
            log.info(
                "removing stale resume state %s (a run of other settings, data or process count)",
                child,
            )
            shutil.rmtree(child)


# ---------------------------------------------------------------- command line


def job_from_config(
    config: Mapping[str, Any],
    experiment: str,
    results: str | os.PathLike = "results",
    device: str | None = None,
) -> TrainJob:
    """A `TrainJob` from a whole config file (the CLI): the same paths the workflow uses."""
    try:
        exp = config["experiments"][experiment]
    except KeyError:
        names = ", ".join(sorted(config.get("experiments") or {}))
        raise ValueError(f"unknown experiment {experiment!r}; the config has: {names}") from None
    task = exp["task"]
    splits = config["tasks"][task].get("splits", {})
    results = Path(results)

    def shards(split: str) -> tuple[str, ...]:
        n = int(splits.get(split, {}).get("shards", 1))
        return tuple(str(results / "shards" / task / f"{split}-{i:06d}.tar") for i in range(n))

    return TrainJob(
        experiment=experiment,
        task=task,
        model=exp["model"],
        model_kwargs=dict(exp.get("model_kwargs") or {}),
        train=TrainSpec.from_config(exp.get("train"), where=f"experiments.{experiment}.train"),
        seed=int(exp.get("seed", config.get("seed", 20171204))),
        device=device or config.get("device", "auto"),
        charset=str(results / "charsets" / f"{task}.txt"),
        train_shards=shards("train"),
        val_shards=shards("val"),
        out_dir=str(results / "models" / experiment),
    )


def _build_hint(args: argparse.Namespace, job: TrainJob) -> str:
    """The Snakemake command that builds a task's charset and shards, for the CLI's error."""
    results = Path(args.results)
    if not args.config or results.name != "results":
        return "; build them with the workflow first (rule shard)"
    where = "" if results.parent == Path() else f" --directory {results.parent}"
    # Outside the repository (a run folder of its own), Snakemake needs its Snakefile named.
    snakefile = Path(__file__).resolve().parents[1] / "Snakefile"
    if not Path("Snakefile").is_file():
        where = f" -s {snakefile}{where}"
    # The target before --configfile, which takes every word after it as a config file
    return (
        f"; build them first: snakemake results/shards/{job.task}/manifest.tsv --cores all"
        f"{where} --configfile {' '.join(args.config)}"
    )


def _names_file(text: str) -> bool:
    """Whether ``text`` (a --spec given without its ``@``) is the path of a file."""
    try:
        return not text.startswith("@") and Path(text).is_file()
    except (OSError, ValueError):  # a name too long, a NUL: the JSON itself
        return False


@stops_on_interrupt(
    "models.train", "its resume state is kept: the same command continues from its last checkpoint"
)
def main(argv: Sequence[str] | None = None) -> None:
    """``python -m models.train --config C --experiment E`` or ``--spec JSON`` (also under
    ``torchrun``)."""
    parser = argparse.ArgumentParser(
        prog="python -m models.train", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--config",
        nargs="+",
        metavar="FILE",
        help="config YAML (configs/*.yaml), with --experiment; several merge in order, as "
        "Snakemake's --configfile merges them",
    )
    parser.add_argument("--experiment", help="experiment name in the config")
    parser.add_argument("--results", help="results folder (default: results)")
    parser.add_argument("--spec", help="a TrainJob as JSON (a string, or @file.json)")
    parser.add_argument("--device", help="override the config's device (auto, cpu, cuda, mps)")
    parser.add_argument(
        "--threads",
        type=thread_count,
        help="torch CPU threads, 0 = one per core (default: the config's train.threads)",
    )
    parser.add_argument(
        "--init-from",
        metavar="CHECKPOINT",
        help="start from this model.pt's weights (fine-tuning; overrides train.init_from)",
    )
    args = parser.parse_args(argv)
    if args.spec is not None:  # the spec names the job and its files: these would be ignored
        for option in ("config", "experiment", "results"):
            if getattr(args, option) is not None:
                parser.error(f"argument --spec: not allowed with argument --{option}")
    args.results = args.results or "results"  # unset above only to tell it from --spec's
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if args.spec:
        try:
            # JSON is UTF-8 (RFC 8259), whatever the locale: its paths may hold any character
            spec = args.spec
            text = Path(spec[1:]).read_text(encoding="utf-8") if spec.startswith("@") else spec
            job = TrainJob.from_dict(json.loads(text))
        except (OSError, ValueError, TypeError, KeyError) as e:
            hint = f" (a file: give it as --spec @{args.spec})" if _names_file(args.spec) else ""
            parser.exit(1, f"{parser.prog}: error: --spec {args.spec[:60]}: {e}{hint}\n")
        if args.device:
            job = replace(job, device=args.device)
    elif args.config and args.experiment:
        origins = None
        try:
            # Each with the config it extends, if any, then in order: the workflow's merge, so
            # the job (and its output hash) is the one `snakemake --configfile` would train.
            config, origins = config_with_origins(args.config)
            # The workflow's schema (a typo never trains a wrong model), its defaults, and its
            # parse-time checks of the experiment (a CTC output too short for the task's labels),
            # every problem in one list, as the workflow gives them.
            checked = check_schema(config, origins=origins)
            problems = [*checked.problems, *experiment_problems(checked, args.experiment, origins)]
            if problems:  # each line names its key's file already
                message = with_config_file(str(problems_error(problems)), args.config)
                parser.exit(1, f"{parser.prog}: error: {message}\n")
            job = job_from_config(checked.config, args.experiment, args.results, args.device)
        except (OSError, ValueError) as e:
            lines = [named_with_file(line, origins) for line in str(e).split("\n")]
            message = with_config_file("\n  ".join(lines), args.config)
            parser.exit(1, f"{parser.prog}: error: {message}\n")
    else:
        parser.error("give --config and --experiment, or --spec")
    if args.init_from:
        job = replace(job, train=replace(job.train, init_from=args.init_from))
    missing = [
        f for f in (job.charset, *job.read_train_shards, *job.val_shards) if not Path(f).is_file()
    ]
    if missing:
        listed = ", ".join(missing[:3]) + (
            f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        )
        parser.exit(
            1, f"{parser.prog}: error: {job.experiment} needs {listed}{_build_hint(args, job)}\n"
        )
    # --threads 0, as the config's 0, is torch's default (a thread per core), not the config's
    threads = job.train.threads if args.threads is None else args.threads
    if threads:
        torch.set_num_threads(threads)
    try:
        train(job, command_line=True)
    # Not bugs: the message says it all (the checkpoint, tensor, shard or sample at fault),
    # without a traceback.
    except (
        OutputLockedError,
        OutputPathError,
        ResumeConflictError,
        RankStoppedError,
        NonFiniteLossError,
        CheckpointError,  # TransferError too (train.init_from)
        CharsetError,
        DataError,
        DeviceError,  # --device cuda:7 on a machine without it
    ) as e:
        parser.exit(1, f"{parser.prog}: error: {e}\n")
    except TrainingStopped as e:
        parser.exit(STOPPED, f"{parser.prog}: {e}\n")


if __name__ == "__main__":
    sys.exit(main())
