"""Where tensors live: device choice, the one autocast path, and the process's place in a
distributed (``torchrun``) run.

Nothing here is global state but the GPU a process claims (`resolve_device`'s ``claim``): a
lock file it holds until it ends.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch

from models import locks

try:
    import fcntl
except ImportError:  # Windows: no flock; jobs there share cuda:0 as before
    fcntl = None

log = logging.getLogger(__name__)

DEVICES = ("auto", "cpu", "cuda", "mps")
# Where the GPU locks live: one file per GPU (by its UUID), machine-wide, so that jobs which
# Snakemake runs side by side (`--resources gpu=N`) each take a GPU of their own.
GPU_LOCK_DIR = Path(tempfile.gettempdir())
_CLAIMED: dict[str, int] = {}  # the GPU locks this process holds (file descriptors), by path


class DeviceError(ValueError):
    """A device name that is unknown, or names a device this machine does not have."""


def _unknown_device(name: str) -> DeviceError:
    return DeviceError(f"unknown device {name!r}; valid: {', '.join(DEVICES)} (or cuda:N)")


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def resolve_device(
    name: str | torch.device | None = "auto", local_rank: int = 0, *, claim: bool = False
) -> torch.device:
    """The device to run on.

    Args:
        name: ``auto`` (cuda, then mps, then cpu), ``cpu``, ``cuda``, ``cuda:N`` or ``mps``;
            a `torch.device` is returned as is.
        local_rank: Under ``torchrun``, this process's GPU index on its node (``auto`` and
            ``cuda`` pick ``cuda:local_rank``).
        claim: A job outside ``torchrun`` on a machine with several GPUs: ``auto`` and ``cuda``
            pick the first GPU no other claiming process holds (`claim_gpu`), so jobs that
            Snakemake runs side by side train on GPUs of their own, not all on ``cuda:0``.

    Raises:
        DeviceError: An unknown name, or a device that is not available here (naming it): no
            CUDA, a ``cuda:N`` past the GPUs there are, or a ``torchrun`` local rank past them
            (more processes on a node than GPUs).
    """
    if isinstance(name, torch.device):
        return name
    name = "auto" if name is None else name.strip().lower()
    base = name.split(":")[0]
    if base not in DEVICES:
        raise _unknown_device(name)
    if base == "auto" and not torch.cuda.is_available():
        return torch.device("mps" if _mps_available() else "cpu")
    if base in ("auto", "cuda"):
        if not torch.cuda.is_available():
            raise DeviceError(
                f"device {name!r} asked for, but CUDA is not available "
                f"(torch {torch.__version__}); use auto or cpu instead"
            )
        count = torch.cuda.device_count()
        if ":" in name:
            try:
                device = torch.device(name)
            except RuntimeError:  # torch's own words for "cuda:x" name no valid form
                raise _unknown_device(name) from None
            if device.index is not None and device.index >= count:
                raise DeviceError(
                    f"device {name!r} asked for, but this machine shows {count} GPU(s) "
                    f"(cuda:0 to cuda:{count - 1}; CUDA_VISIBLE_DEVICES="
                    f"{os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')})"
                )
            return device
        if local_rank >= count:
            raise DeviceError(
                f"local rank {local_rank} has no GPU of its own: this node shows {count} GPU(s); "
                f"start at most {count} processes per node (torchrun --nproc_per_node {count})"
            )
        if claim and count > 1:
            return torch.device("cuda", claim_gpu(count))
        return torch.device("cuda", local_rank)
    if base == "mps" and not _mps_available():
        raise DeviceError(
            "device 'mps' asked for, but MPS is not available; use auto or cpu instead"
        )
    try:
        return torch.device(name)
    except RuntimeError:  # "cpu:x": torch's own words name no valid form
        raise _unknown_device(name) from None


def _gpu_id(index: int) -> str:
    """A GPU's name for its lock: its UUID, the same whatever CUDA_VISIBLE_DEVICES numbers it."""
    uuid = getattr(torch.cuda.get_device_properties(index), "uuid", None)
    if uuid is not None:
        return str(uuid)
    return f"{os.environ.get('CUDA_VISIBLE_DEVICES', '')}-{index}"


def claim_gpu(count: int, lock_dir: Path | None = None) -> int:
    """The index of the first of ``count`` GPUs that no other process holds, now held by this
    one until it ends (a non-blocking ``flock`` on ``synthocr-gpu-{uuid}.lock`` in
    `GPU_LOCK_DIR`, which the kernel releases however the process ends); the one it holds
    already, if it does. When every GPU is held (more jobs than GPUs), GPU 0, with a warning:
    the jobs then share it.
    """
    if fcntl is None:
        return 0
    folder = GPU_LOCK_DIR if lock_dir is None else lock_dir
    paths = [folder / f"synthocr-gpu-{_gpu_id(index)}.lock" for index in range(count)]
    for index, path in enumerate(paths):
        if str(path) in _CLAIMED:
            return index
    for index, path in enumerate(paths):
        try:
            # read-only, and created only when missing: another user's lock file (mode 0644,
            # in a sticky /tmp where O_CREAT of another's file is refused) opens as well
            try:
                fd = os.open(path, os.O_RDONLY)
            except FileNotFoundError:
                fd = os.open(path, os.O_RDONLY | os.O_CREAT, 0o666)
        except OSError as e:
            log.warning("GPU %d: cannot open its lock %s (%s); trying the next", index, path, e)
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                log.warning("GPU %d: cannot lock %s (%s); trying the next", index, path, e)
            continue
        _CLAIMED[str(path)] = fd
        locks.hold(fd)  # this process's alone: not its DataLoader workers' after it is killed
        log.info("GPU %d of %d is this process's (%s)", index, count, path)
        return index
    log.warning(
        "all %d GPUs are held by other synthocr jobs (locks in %s): sharing cuda:0; give "
        "Snakemake --resources gpu=%d at most",
        count,
        folder,
        count,
    )
    return 0


def memory_format(device: torch.device) -> torch.memory_format:
    """The layout training keeps images and convolution weights in on ``device``.

    channels_last (NHWC) on the CPU, where oneDNN's convolutions run faster in it (1.09-1.24x per
    model on 2 cores; ``bench/bench_cpu.py``, BENCHMARKS.md); the default layout elsewhere, where
    it has not been measured. Only the speed depends on it: a checkpoint's weights load into a
    model of either layout.
    """
    return torch.channels_last if device.type == "cpu" else torch.contiguous_format


def autocast(device: torch.device, enabled: bool = True) -> contextlib.AbstractContextManager:
    """The one mixed-precision path: bf16 autocast on CUDA, nothing elsewhere.

    On CPU, autocast would change numerics and rarely speeds up small convnets, and CPU runs
    must be bit-reproducible; MPS bf16 support varies by OS version. Losses that need fp32 (CTC)
    cast their inputs themselves.
    """
    if enabled and device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@dataclass(frozen=True)
class DistEnv:
    """This process's place in a run: ``world_size`` 1 outside ``torchrun``.

    Attributes:
        rank: Global rank (0 writes files).
        world_size: Number of processes.
        local_rank: Rank on this node (picks the GPU).
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def dist_env(environ: Mapping[str, str] | None = None) -> DistEnv:
    """Read ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` (set by ``torchrun``)."""
    env = os.environ if environ is None else environ
    try:
        return DistEnv(
            rank=int(env.get("RANK", "0")),
            world_size=int(env.get("WORLD_SIZE", "1")),
            local_rank=int(env.get("LOCAL_RANK", "0")),
        )
    except ValueError as e:
        raise ValueError(f"bad torchrun environment (RANK/WORLD_SIZE/LOCAL_RANK): {e}") from None


def init_distributed(env: DistEnv, device: torch.device) -> None:
    """Join the process group when running under ``torchrun`` (nccl on CUDA, gloo otherwise)."""
    if not env.distributed or torch.distributed.is_initialized():
        return
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    torch.distributed.init_process_group(backend=backend)
    log.info("rank %d/%d joined the %s process group", env.rank, env.world_size, backend)


def shutdown_distributed() -> None:
    """Leave the process group if this process joined one."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
