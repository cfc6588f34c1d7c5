"""GPU claims of jobs side by side (`models.devices.claim_gpu`) where a lock cannot be had."""

from __future__ import annotations

import logging
import types

import pytest
import torch

import models.devices as devices


def test_a_lock_that_cannot_be_opened_passes_to_the_next_gpu(tmp_path, monkeypatch, caplog):
    # Another user's lock in a sticky /tmp, or anything else that will not open: that GPU is
    # passed over with a warning, never a traceback out of every training and evaluation job.
    monkeypatch.setattr(
        torch.cuda, "get_device_properties", lambda i: types.SimpleNamespace(uuid=f"GPU-{i}")
    )
    monkeypatch.setattr(devices, "_CLAIMED", {})
    loop = tmp_path / "synthocr-gpu-GPU-0.lock"
    loop.symlink_to(loop)  # opening it fails (too many levels of symbolic links)
    with caplog.at_level(logging.WARNING, logger="models.devices"):
        assert devices.claim_gpu(2, tmp_path) == 1
    assert f"GPU 0: cannot open its lock {loop}" in caplog.text
    assert (tmp_path / "synthocr-gpu-GPU-1.lock").is_file()


def test_the_config_takes_every_device_form_resolve_device_takes(repo_root):
    # The README's Scaling section: a config's device may name one GPU (cuda:2).
    from synth.schema import check_config, load_config_file

    config = load_config_file(repo_root / "configs" / "smoke.yaml")
    for name in ("auto", "cpu", "cuda", "mps", "cuda:0", "cuda:2", "cuda:15"):
        check_config({**config, "device": name})
    for name in ("gpu", "cuda:x", "CUDA", "cuda:", "cpu:0"):
        with pytest.raises(ValueError) as e:
            check_config({**config, "device": name})
        assert (
            f"device: {name!r} is not one of auto, cpu, cuda, cuda:N (N the GPU's index) or mps"
        ) in str(e.value)
